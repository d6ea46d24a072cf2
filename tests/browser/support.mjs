// Support for the browser tests: start the real `gatehouse` binary with the demo configuration on free ports,
// launch Debian's headless Chromium through playwright-core, sign in on the real login page, save screenshots,
// and look for anything token-shaped that page JavaScript could read.
//
// The binary is $GATEHOUSE_BIN, or target/debug/gatehouse (scripts/test.sh builds it first); Chromium is
// $CHROMIUM_PATH, or /usr/bin/chromium (scripts/ensure-tools.sh installs it). Screenshots go to
// target/browser-artifacts/ (or $GATEHOUSE_BROWSER_ARTIFACTS).
//
// Every origin is http://127.0.0.1:<port>. Headless Chromium treats both http://localhost and http://127.0.0.1
// as potentially trustworthy and keeps `__Host-` + Secure cookies on them (checked on Chromium 156); the IP
// literal is used because `localhost` may also resolve to ::1, where another process could hold the same port.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CONFIG_PATH = path.join(REPO_ROOT, 'config', 'gatehouse.toml');
export const ARTIFACTS_DIR =
  process.env.GATEHOUSE_BROWSER_ARTIFACTS || path.join(REPO_ROOT, 'target', 'browser-artifacts');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** The demo user of config/gatehouse.toml the tests sign in as. */
export const ALICE = Object.freeze({ username: 'alice', password: 'alice-password', name: 'Alice Liddell' });
/** The gateway's session cookie (bff.cookie.name in config/gatehouse.toml). */
export const SESSION_COOKIE = '__Host-gatehouse';

/** A compact JWS or JWE: base64url of `{"…` (eyJ), then dot-separated base64url parts. */
export const JWT_SHAPED = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/;

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
const OUTPUT_LIMIT = 256 * 1024;

/**
 * Starts `gatehouse serve --config config/gatehouse.toml` — token service, gateway serving examples/spa, demo
 * API behind /api/ — on free ports of 127.0.0.1 with a fresh data directory, and resolves once the gateway and
 * the token service answer. `env` adds GATEHOUSE_* overrides. Returns `{ gateway, issuer, output(), stop() }`;
 * `stop()` (SIGTERM, then SIGKILL) also runs when the test process exits, however it exits.
 */
export async function startGatehouse({ env = {} } = {}) {
  const binary = process.env.GATEHOUSE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'gatehouse');
  if (!existsSync(binary)) throw new Error(`${binary} does not exist: build it first (cargo build --bin gatehouse)`);
  const [idpPort, gatewayPort, apiPort] = await freePorts(3);
  const issuer = `http://127.0.0.1:${idpPort}`;
  const gateway = `http://127.0.0.1:${gatewayPort}`;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-browser-'));
  const childEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_'))),
    GATEHOUSE_IDP__LISTEN: `127.0.0.1:${idpPort}`,
    GATEHOUSE_IDP__ISSUER: issuer,
    GATEHOUSE_IDP__DATA_DIR: dataDir,
    GATEHOUSE_IDP__CLIENTS__0__REDIRECT_URIS: JSON.stringify([`${gateway}/bff/callback`]),
    GATEHOUSE_IDP__CLIENTS__0__POST_LOGOUT_REDIRECT_URIS: JSON.stringify([`${gateway}/`]),
    GATEHOUSE_IDP__CLIENTS__0__BACKCHANNEL_LOGOUT_URI: JSON.stringify(`${gateway}/bff/backchannel`),
    GATEHOUSE_BFF__LISTEN: `127.0.0.1:${gatewayPort}`,
    GATEHOUSE_BFF__PUBLIC_ORIGIN: gateway,
    GATEHOUSE_BFF__ROUTES__0__UPSTREAMS: JSON.stringify([`http://127.0.0.1:${apiPort}`]),
    GATEHOUSE_BFF__ROUTES__0__PUBLIC_BASE: gateway,
    GATEHOUSE_DEMO_API__LISTEN: `127.0.0.1:${apiPort}`,
    GATEHOUSE_DEMO_API__PUBLIC_BASE: gateway,
    ...adminListenerOff(readFileSync(CONFIG_PATH, 'utf8')),
    NO_COLOR: '1',
    ...env,
  };
  const child = spawn(binary, ['serve', '--config', CONFIG_PATH], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let output = '';
  const collect = (chunk) => {
    output += chunk.toString('utf8');
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = sleep(STOP_TIMEOUT_MS, 'timeout', { ref: false });
      if ((await Promise.race([exited, timer])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(dataDir, { recursive: true, force: true });
  };

  try {
    await waitUntilUp([`${issuer}/.well-known/openid-configuration`, `${gateway}/`], exited);
  } catch (error) {
    await stop();
    const overrides = Object.entries(childEnv)
      .filter(([key]) => key.startsWith('GATEHOUSE_'))
      .map(([key, value]) => `${key}=${value}`)
      .join(' ');
    throw new Error(
      `gatehouse did not become ready: ${error.message}\n` +
        `command: ${overrides} ${binary} serve --config ${CONFIG_PATH}\n` +
        `--- gatehouse output ---\n${output}--- end of gatehouse output ---`,
    );
  }
  return { gateway, issuer, output: () => output, stop };
}

/**
 * `n` distinct ports that are free on 127.0.0.1 now, from below Linux's ephemeral range (32768–60999) so that no
 * `:0` bind elsewhere takes one before gatehouse binds it (the rule of tests/support/ports.rs).
 */
async function freePorts(n) {
  const ports = new Set();
  for (let attempt = 0; ports.size < n && attempt < 1000; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (!ports.has(port) && (await bindable(port))) ports.add(port);
  }
  if (ports.size < n) throw new Error('no free ports in 20000..32000');
  return [...ports];
}

function bindable(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** An admin listener would collide between runs: off, but only when the config has one (else: unknown key). */
function adminListenerOff(configText) {
  return /^\s*\[\s*admin\s*\]/m.test(configText) ? { GATEHOUSE_ADMIN__ENABLED: 'false' } : {};
}

async function waitUntilUp(urls, exited) {
  let exit;
  exited.then((result) => {
    exit = result;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exit) throw new Error(`the process exited early (code ${exit.code}, signal ${exit.signal})`);
    const statuses = await Promise.all(
      urls.map((url) =>
        fetch(url, { signal: AbortSignal.timeout(2_000) })
          .then(async (response) => {
            await response.arrayBuffer();
            return response.status;
          })
          .catch((error) => error.cause?.code ?? error.message),
      ),
    );
    if (statuses.every((status) => status === 200)) return;
    last = urls.map((url, i) => `${url}: ${statuses[i]}`).join(', ');
    await sleep(100);
  }
  throw new Error(`no 200 within ${READY_TIMEOUT_MS / 1000} s (last: ${last})`);
}

/** Headless Chromium from Debian (no browser download). Close it in `after()`. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} does not exist: run scripts/ensure-tools.sh (it installs Debian's chromium)`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true });
}

/**
 * A fresh browser context (its own cookie jar) and page for test `t`, closed when it ends. `shot(name)` saves a
 * screenshot and reports its path; `run(steps)` runs the test's steps and, when one fails, saves
 * `FAILED-<name>.png` and prints the end of gatehouse's log (standard error) before rethrowing.
 */
export async function openPage(t, browser, server, name) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const shot = async (step) => t.diagnostic(`screenshot: ${await screenshot(page, step)}`);
  const run = async (steps) => {
    try {
      await steps();
    } catch (error) {
      await shot(`FAILED-${name}`).catch(() => {});
      console.error(`--- gatehouse log (end) ---\n${server.output().slice(-6_000)}--- end of gatehouse log ---`);
      throw error;
    }
  };
  return { context, page, shot, run };
}

/** Saves `<ARTIFACTS_DIR>/<name>.png` (the full page) and returns its path. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Everything the gateway's origin sent to page JavaScript: the bodies of documents, scripts and fetch/XHR
 * answers (redirects have none the page can read). Call before the page navigates; `bodies()` waits for them.
 */
export function recordReadableResponses(page, origin) {
  const pending = [];
  page.on('response', (response) => {
    const type = response.request().resourceType();
    if (!['document', 'script', 'fetch', 'xhr'].includes(type)) return;
    if (new URL(response.url()).origin !== origin) return;
    if (response.status() >= 300 && response.status() < 400) return;
    pending.push(
      response
        .text()
        .then((body) => ({ url: response.url(), status: response.status(), body }))
        .catch(() => null), // the frame went away before the body was read (e.g. the silent-login iframe)
    );
  });
  return { bodies: async () => (await Promise.all(pending)).filter(Boolean) };
}

/**
 * Asserts that page JavaScript on `page` can read no token and no session secret: every cookie in the context's
 * jar is HttpOnly and SameSite; `document.cookie` is empty; Web Storage, IndexedDB and Cache Storage are empty;
 * the page's HTML, referrer, location and performance timeline, and every answer recorded by `readable`
 * (`recordReadableResponses`) hold nothing JWT-shaped, no `access_token`/`refresh_token`/`id_token` member and no
 * cookie value. Resolves to the recorded answers.
 */
export async function assertNothingSecretReadable(page, context, readable) {
  const jar = await context.cookies();
  for (const cookie of jar) {
    assert.ok(cookie.httpOnly, `cookie ${cookie.name} is HttpOnly`);
    assert.ok(['Strict', 'Lax'].includes(cookie.sameSite), `cookie ${cookie.name} is SameSite=${cookie.sameSite}`);
  }
  // Cookies are per host, not per port: the token service's cookies are in this jar too, and just as secret.
  const secrets = jar.map((c) => c.value).filter((value) => value.length >= 16);

  const seen = await readableByScript(page);
  assert.equal(seen.cookie, '', 'document.cookie is empty: every cookie is HttpOnly');
  assert.deepEqual(seen.localStorage, {}, 'localStorage is empty');
  assert.deepEqual(seen.sessionStorage, {}, 'sessionStorage is empty');
  assert.deepEqual(seen.indexedDb, [], 'no IndexedDB database');
  assert.deepEqual(seen.caches, [], 'no Cache Storage');
  for (const [where, text] of [
    ['the page HTML', seen.html],
    ['document.referrer', seen.referrer],
    ['location', seen.location],
    ['the performance timeline', seen.timeline.join('\n')],
  ]) {
    assertNoSecret(where, text, secrets);
  }
  const bodies = await readable.bodies();
  for (const { url, body } of bodies) assertNoSecret(`the answer to ${url}`, body, secrets);
  return bodies;
}

/** Fails when `text` holds something JWT-shaped, a token-named JSON member, or one of the `secrets`. */
function assertNoSecret(where, text, secrets) {
  const jwt = JWT_SHAPED.exec(text);
  assert.equal(jwt, null, `${where} holds something JWT-shaped: ${jwt?.[0].slice(0, 24)}…`);
  assert.doesNotMatch(text, /"(access|refresh|id)_token"\s*:/, `${where} holds a token member`);
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `${where} holds a cookie value`);
  }
}

/**
 * What page JavaScript can read on the current page: `document.cookie`, Web Storage, IndexedDB and Cache
 * Storage names, the document's HTML, its referrer and the URLs of the performance timeline.
 */
function readableByScript(page) {
  return page.evaluate(async () => {
    const dump = (storage) => Object.fromEntries(Object.keys(storage).map((key) => [key, storage.getItem(key)]));
    return {
      cookie: document.cookie,
      localStorage: dump(localStorage),
      sessionStorage: dump(sessionStorage),
      indexedDb: (await indexedDB.databases()).map((db) => db.name),
      caches: await caches.keys(),
      html: document.documentElement.outerHTML,
      referrer: document.referrer,
      location: location.href,
      timeline: performance.getEntries().map((entry) => entry.name),
    };
  });
}

/**
 * Presses "Log in" in the SPA, signs in on the token service's login page as `user`, and waits until the SPA
 * shows the signed-in state. `onLoginPage(page)` runs while the login form is shown (e.g. for a screenshot).
 */
export async function logInThroughTheSpa(page, { issuer, gateway, user = ALICE, onLoginPage } = {}) {
  await page.click('#login');
  await page.waitForURL((url) => url.origin === issuer && url.pathname === '/authorize');
  await page.fill('#username', user.username);
  await page.fill('#password', user.password);
  if (onLoginPage) await onLoginPage(page);
  await Promise.all([page.waitForURL(`${gateway}/`), page.click('button[type=submit]')]);
  await page.waitForSelector('body[data-session="signed-in"]');
}

/** `fetch(path)` from inside the page, as the SPA does (same origin, X-CSRF: 1): `{ status, body }`. */
export function fetchInPage(page, path) {
  return page.evaluate(async (target) => {
    const response = await fetch(target, { headers: { 'X-CSRF': '1' }, cache: 'no-store' });
    const text = await response.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, body };
  }, path);
}

/**
 * Records the requests the page (all frames) sends to the token service. `assertSilent()` checks that an
 * authorization request went out from the iframe and that no page of the token service was shown (no document
 * answered 200 from it, no login form posted): the user saw no login page.
 */
export function recordIssuerTraffic(page, issuer) {
  const requests = [];
  const shown = [];
  page.on('request', (request) => {
    if (new URL(request.url()).origin === issuer) requests.push(request);
  });
  page.on('response', (response) => {
    const request = response.request();
    const fromIssuer = new URL(response.url()).origin === issuer;
    if (fromIssuer && request.resourceType() === 'document' && response.status() === 200) shown.push(response.url());
  });
  return {
    assertSilent() {
      const authorize = requests.filter((r) => new URL(r.url()).pathname === '/authorize');
      assert.ok(authorize.length >= 1, 'silent login sent an authorization request');
      for (const request of authorize) {
        assert.notEqual(request.frame(), page.mainFrame(), 'the authorization request ran in the iframe');
      }
      assert.deepEqual(shown, [], 'no page of the token service was shown');
      assert.ok(!requests.some((r) => new URL(r.url()).pathname === '/login'), 'no login form was posted');
    },
  };
}
