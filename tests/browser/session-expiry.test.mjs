// Real-browser end-to-end test of an expired gateway session: the real `gatehouse` binary with a short gateway
// session lifetime (GATEHOUSE_BFF__SESSION__ABSOLUTE_LIFETIME_SECONDS), the demo SPA in headless Chromium.
// Once the session has expired, the SPA shows the signed-out state — no error page, no redirect loop — and
// because the token service's own session is still alive, silent login brings alice back without a login page.
//
//   node --test tests/browser/      # after cargo build --bin gatehouse (scripts/test.sh does both)
//
// Screenshots: target/browser-artifacts/1N-step.png.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

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

/** The gateway session's absolute lifetime here: long enough to log in and look, short enough to wait for. */
const LIFETIME_SECONDS = 6;
/** How long the test watches the page after the 401 for a retry or redirect loop. */
const QUIET_MS = 2_000;
/** A hang fails the test instead of stalling the suite. */
const TEST_TIMEOUT_MS = 120_000;

let server;
let browser;

before(async () => {
  const [started, launched] = await Promise.allSettled([
    startGatehouse({ env: { GATEHOUSE_BFF__SESSION__ABSOLUTE_LIFETIME_SECONDS: String(LIFETIME_SECONDS) } }),
    launchChromium(),
  ]);
  server = started.value;
  browser = launched.value;
  if (started.status === 'rejected') throw started.reason;
  if (launched.status === 'rejected') throw launched.reason;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const EXPIRY =
  'an expired gateway session: the SPA shows the signed-out state (no error page, no loop); ' +
  "silent login restores it from the token service's session";
test(EXPIRY, { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gateway, issuer } = server;
  const { context, page, shot, run } = await openPage(t, browser, server, 'expiry');
  await run(async () => {
    // 10. Signed in; the session ends within LIFETIME_SECONDS.
    await page.goto(`${gateway}/`);
    await page.waitForSelector('body[data-session="anonymous"]');
    await logInThroughTheSpa(page, { issuer, gateway });
    const user = await fetchInPage(page, '/bff/user');
    const expiresIn = user.body.find((c) => c.type === 'bff:session_expires_in')?.value;
    assert.ok(expiresIn <= LIFETIME_SECONDS, `bff:session_expires_in ${expiresIn} ≤ ${LIFETIME_SECONDS}`);
    await page.click('#call-api');
    await page.waitForSelector('#api-proof:not([hidden])');
    const firstJkt = await page.textContent('#api-jkt');
    await shot('10-short-session-signed-in');

    // Wait until the gateway no longer accepts the browser's cookie (asked from outside the page, so the
    // browser's own state is untouched).
    const cookie = (await context.cookies(gateway)).find((c) => c.name === SESSION_COOKIE);
    const deadline = Date.now() + (LIFETIME_SECONDS + 5) * 1000;
    for (;;) {
      const probe = await fetch(`${gateway}/bff/user?slide=false`, {
        headers: { cookie: `${cookie.name}=${cookie.value}`, 'x-csrf': '1' },
      });
      await probe.arrayBuffer();
      if (probe.status === 401) break;
      assert.equal(probe.status, 200);
      assert.ok(Date.now() < deadline, `the session outlived ${LIFETIME_SECONDS} s`);
      await sleep(250);
    }

    // 11. The page still shows alice; "Call API" gets 401 and the SPA switches to the signed-out state.
    assert.equal(await page.textContent('#user-name'), ALICE.name);
    const traffic = recordGatewayTraffic(page, gateway);
    await page.click('#call-api');
    await page.waitForSelector('body[data-session="anonymous"]');
    await sleep(QUIET_MS);
    assert.equal(await page.textContent('#status'), 'Your session has ended. Log in again.');
    assert.ok(await page.isVisible('#login'), 'the "Log in" button is offered');
    assert.ok(await page.isHidden('#user'), "the last user's details are gone");
    assert.match(await page.textContent('#api-result'), /^401 /);
    assert.equal(await page.title(), 'Gatehouse example app', 'still the SPA, no error page');
    assert.deepEqual(traffic.navigations, [], 'no navigation');
    assert.deepEqual(traffic.paths(), ['/api/whoami'], 'one API call, no retry, no login redirect');
    await shot('11-expired-api-401');

    // 12. A reload asks /bff/user once, gets 401 and shows the signed-out state.
    const afterReload = recordGatewayTraffic(page, gateway);
    await page.reload();
    await page.waitForSelector('body[data-session="anonymous"]');
    await sleep(QUIET_MS);
    assert.equal(await page.textContent('#status'), 'Not signed in.');
    assert.ok(await page.isVisible('#login'));
    assert.deepEqual(afterReload.navigations, [`${gateway}/`], 'the reload only');
    assert.deepEqual(
      afterReload.paths().filter((p) => p.startsWith('/bff/')),
      ['/bff/user'],
      'one session check, no login redirect',
    );
    assert.equal(
      (await context.cookies(gateway)).find((c) => c.name === SESSION_COOKIE),
      undefined,
      'the gateway cleared the expired cookie',
    );
    await shot('12-expired-reloaded');

    // 13. The token service's session is still alive: silent login (hidden iframe) brings alice back without a
    //     login page, with a new session and a new DPoP key; the iframe's pages left nothing readable either.
    const toIssuer = recordIssuerTraffic(page, issuer);
    const readable = recordReadableResponses(page, gateway);
    await page.click('#silent-login');
    await page.waitForSelector('body[data-session="signed-in"]');
    toIssuer.assertSilent();
    assert.equal(page.url(), `${gateway}/`, 'no top-level navigation');
    assert.equal(await page.textContent('#user-name'), ALICE.name);
    await page.click('#call-api');
    await page.waitForSelector('#api-proof:not([hidden])');
    const api = await fetchInPage(page, '/api/whoami');
    assert.equal(api.status, 200);
    assert.equal(await page.textContent('#api-jkt'), api.body.jkt);
    assert.notEqual(api.body.jkt, firstJkt, 'the new session has its own DPoP key');
    const bodies = await assertNothingSecretReadable(page, context, readable);
    assert.ok(bodies.some((b) => b.url.includes('/bff/callback?')), "the silent login's callback page was checked");
    await shot('13-silent-login-restored');
  });
});

/**
 * Records, from now on, the page's main-frame navigations and the paths of the requests it sends to the gateway
 * (static files left out).
 */
function recordGatewayTraffic(page, gateway) {
  const navigations = [];
  const requests = [];
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations.push(frame.url());
  });
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin === gateway && !/\.(js|css|ico)$/.test(url.pathname)) requests.push(url.pathname);
  });
  return { navigations, paths: () => requests.filter((p) => p !== '/') };
}
