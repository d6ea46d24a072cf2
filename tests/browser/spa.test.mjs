// Real-browser end-to-end tests: the demo SPA (examples/spa) behind the real `gatehouse` binary (token service,
// gateway, demo API; config/gatehouse.toml on free ports), driven in Debian's headless Chromium by
// playwright-core. What a user does — log in through the real login page, see their name, call the API, reload,
// log out, try a silent login — and what page JavaScript can read on the way: no token, no session secret.
//
//   node --test tests/browser/      # after cargo build --bin gatehouse (scripts/test.sh does both)
//
// Screenshots of each step go to target/browser-artifacts/NN-step.png. Each test uses its own browser context
// (its own cookie jar) and signs in on its own, so none depends on another's order or outcome.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ALICE,
  SESSION_COOKIE,
  assertNothingSecretReadable,
  fetchInPage,
  launchChromium,
  logInThroughTheSpa,
  openPage,
  recordIssuerTraffic,
  recordReadableResponses,
  startGatehouse,
} from './support.mjs';

/** A hang fails the test instead of stalling the suite (a warm run takes a few seconds per test). */
const TEST_TIMEOUT_MS = 120_000;

let server;
let browser;

before(async () => {
  const [started, launched] = await Promise.allSettled([startGatehouse(), launchChromium()]);
  server = started.value;
  browser = launched.value;
  if (started.status === 'rejected') throw started.reason;
  if (launched.status === 'rejected') throw launched.reason;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const JOURNEY =
  'alice logs in on the real login page, sees her name, calls the API (verified jkt), reloads; ' +
  'page JavaScript can read no token or session secret';
test(JOURNEY, { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gateway, issuer } = server;
  const { context, page, shot, run } = await openPage(t, browser, server, 'journey');
  const readable = recordReadableResponses(page, gateway);
  await run(async () => {
    // 1. Anonymous: the SPA offers "Log in"; /bff/user is 401.
    await page.goto(`${gateway}/`);
    await page.waitForSelector('body[data-session="anonymous"]');
    assert.ok(await page.isVisible('#login'), 'the "Log in" button is shown');
    assert.ok(await page.isHidden('#logout'));
    assert.equal(await page.textContent('#status'), 'Not signed in.');
    assert.equal((await fetchInPage(page, '/bff/user')).status, 401);
    await shot('01-anonymous');

    // 2. Log in through the token service's real login form.
    await logInThroughTheSpa(page, {
      issuer,
      gateway,
      onLoginPage: async (loginPage) => {
        assert.equal(await loginPage.textContent('h1'), 'Sign in');
        await shot('02-login-page');
      },
    });

    // 3. The name shown is the `name` claim from /bff/user.
    const user = await fetchInPage(page, '/bff/user');
    assert.equal(user.status, 200);
    const claim = (type) => user.body.find((c) => c.type === type)?.value;
    assert.equal(claim('name'), ALICE.name);
    assert.equal(await page.textContent('#user-name'), claim('name'));
    assert.equal(await page.textContent('#status'), 'Signed in.');
    assert.ok(await page.isVisible('#logout'));
    assert.ok(await page.isHidden('#login'));
    await shot('03-signed-in');

    // 4. "Call API": the SPA shows the jkt the API verified, and it is the thumbprint the API reports.
    await page.click('#call-api');
    await page.waitForSelector('#api-proof:not([hidden])');
    const shownJkt = await page.textContent('#api-jkt');
    const api = await fetchInPage(page, '/api/whoami');
    assert.equal(api.status, 200, JSON.stringify(api.body));
    assert.match(api.body.jkt, /^[A-Za-z0-9_-]{43}$/, 'an RFC 7638 SHA-256 thumbprint, base64url');
    assert.equal(shownJkt, api.body.jkt, 'the SPA shows the thumbprint the API verified');
    assert.equal(api.body.sub, claim('sub'), 'the API saw alice');
    assert.equal(api.body.client_id, 'gatehouse-bff');
    assert.match(await page.textContent('#api-result'), /^200 /);
    await shot('04-api-jkt');

    // 5. Reload: the session survives, with the same DPoP key.
    const cookieBefore = await sessionCookie(context, gateway);
    assert.ok(cookieBefore, `the gateway set ${SESSION_COOKIE}`);
    await page.reload();
    await page.waitForSelector('body[data-session="signed-in"]');
    assert.equal(await page.textContent('#user-name'), ALICE.name);
    await page.click('#call-api');
    await page.waitForSelector('#api-proof:not([hidden])');
    assert.equal(await page.textContent('#api-jkt'), shownJkt, 'the same session, the same DPoP key');
    assert.equal((await sessionCookie(context, gateway))?.value, cookieBefore.value);
    await shot('05-reloaded');

    // 6. Nothing token-like or secret is readable by page JavaScript.
    const bodies = await assertNothingSecretReadable(page, context, readable);
    assert.ok(bodies.some((b) => b.url.endsWith('/bff/user')) && bodies.some((b) => b.url.endsWith('/api/whoami')));
    const session = (await context.cookies()).find((c) => c.name === SESSION_COOKIE);
    assert.ok(session.secure && session.path === '/', `${SESSION_COOKIE} is Secure with Path=/ (__Host- rules)`);
    await shot('06-nothing-readable');
  });
});

const LOGOUT =
  'logout: anonymous again, the session cookie replayed afterwards is dead, ' +
  'silent login finds no token-service session';
test(LOGOUT, { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gateway, issuer } = server;
  const { context, page, shot, run } = await openPage(t, browser, server, 'logout');
  await run(async () => {
    await page.goto(`${gateway}/`);
    await page.waitForSelector('body[data-session="anonymous"]');
    await logInThroughTheSpa(page, { issuer, gateway });
    const old = await sessionCookie(context, gateway);
    assert.ok(old, `signed in with ${SESSION_COOKIE}`);
    const withOldCookie = () =>
      fetch(`${gateway}/api/whoami`, { headers: { cookie: `${old.name}=${old.value}`, 'x-csrf': '1' } });
    assert.equal((await withOldCookie()).status, 200, 'before the logout, the cookie sent by hand works');

    // 7. Log out: the gateway ends the session, the token service its own, and the SPA is anonymous again.
    const backHome = page.waitForEvent('framenavigated', {
      predicate: (frame) => frame === page.mainFrame() && frame.url() === `${gateway}/`,
    });
    await page.click('#logout');
    await backHome;
    await page.waitForSelector('body[data-session="anonymous"]');
    assert.ok(await page.isVisible('#login'));
    assert.equal(await page.textContent('#status'), 'Not signed in.');
    assert.equal(await sessionCookie(context, gateway), undefined, 'logout cleared the session cookie');
    assert.equal((await fetchInPage(page, '/bff/user')).status, 401);
    await shot('07-logged-out');

    // 8. The cookie from before the logout, put back into the browser's jar and sent by hand, is dead.
    assert.equal((await withOldCookie()).status, 401, 'the old cookie opens no API call');
    await context.addCookies([old]);
    assert.equal((await sessionCookie(context, gateway))?.value, old.value, 'the old cookie is back in the jar');
    assert.equal((await fetchInPage(page, '/bff/user')).status, 401, 'the old cookie is anonymous at /bff/user');
    await context.addCookies([old]);
    await page.reload();
    await page.waitForSelector('body[data-session="anonymous"]');
    assert.ok(await page.isVisible('#login'));
    await shot('08-old-cookie-replayed');

    // 9. Logout also ended the token service's session: silent login comes back "not logged in", with no login
    //    page shown, and the SPA stays anonymous.
    const toIssuer = recordIssuerTraffic(page, issuer);
    await page.click('#silent-login');
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Silent login: no'));
    assert.equal(await page.getAttribute('body', 'data-session'), 'anonymous');
    assert.ok(await page.isVisible('#login'));
    assert.equal(await page.locator('iframe.silent-login').count(), 0, 'the iframe is gone');
    toIssuer.assertSilent();
    assert.equal(page.url(), `${gateway}/`, 'no top-level navigation');
    await shot('09-silent-login-after-logout');
  });
});

/** The gateway's session cookie in the context's jar, or undefined. */
async function sessionCookie(context, gateway) {
  return (await context.cookies(gateway)).find((c) => c.name === SESSION_COOKIE);
}
