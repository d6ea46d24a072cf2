// Helpers for the interop suite: start the real `gatehouse` binary on a free loopback port with its own data
// directory, and act as a browser on its login page (cookie jar, form parsing, manual redirects).
//
// The binary is $GATEHOUSE_BIN, or target/debug/gatehouse (scripts/test.sh builds it first). Nothing here
// uses a fixed port or shared state, so test files can run in parallel and in any order.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CONFIG_PATH = path.join(REPO_ROOT, 'config', 'gatehouse.toml');

/** The demo data in config/gatehouse.toml that the suite relies on. */
export const DEMO = Object.freeze({
  bff: Object.freeze({
    clientId: 'gatehouse-bff',
    secret: 'demo-bff-secret-0123456789abcdefghijklmnopqrstuv',
    redirectUri: 'http://localhost:8080/bff/callback',
  }),
  m2m: Object.freeze({
    clientId: 'demo-m2m',
    secret: 'demo-m2m-secret-0123456789abcdefghijklmnopqrstuv',
  }),
  api: Object.freeze({ audience: 'http://localhost:8080/api', scope: 'api' }),
  alice: Object.freeze({
    username: 'alice',
    password: 'alice-password',
    name: 'Alice Liddell',
    email: 'alice@example.com',
  }),
  bob: Object.freeze({ username: 'bob', password: 'bob-password' }),
});

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const OUTPUT_LIMIT = 256 * 1024;

/**
 * Starts `gatehouse serve --config config/gatehouse.toml` on a free port of 127.0.0.1 with a fresh data
 * directory, and resolves once discovery answers 200. `env` adds or overrides environment variables.
 * Returns `{ issuer, port, dataDir, output(), stop() }`; call `stop()` in `after()`.
 */
export async function startServer({ env = {} } = {}) {
  const binary = process.env.GATEHOUSE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'gatehouse');
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: build it first (cargo build --bin gatehouse)`);
  }
  if (!existsSync(CONFIG_PATH)) {
    throw new Error(`${CONFIG_PATH} does not exist`);
  }
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-interop-'));

  const childEnv = {
    ...inheritedEnv(),
    GATEHOUSE_IDP__LISTEN: `127.0.0.1:${port}`,
    GATEHOUSE_IDP__ISSUER: issuer,
    GATEHOUSE_IDP__DATA_DIR: dataDir,
    ...otherListenersOff(readFileSync(CONFIG_PATH, 'utf8')),
    NO_COLOR: '1', // its log is shown when start-up fails: plain text
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

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = sleep(STOP_TIMEOUT_MS, 'timeout', { ref: false }); // must not keep the test process alive
      if ((await Promise.race([exited, timer])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(dataDir, { recursive: true, force: true });
  };

  try {
    await waitForDiscovery(issuer, exited);
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
  return { issuer, port, dataDir, output: () => output, stop };
}

/** A port that was free a moment ago on 127.0.0.1 (bind to 0, read it, close). */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The parent's environment without its own GATEHOUSE_* variables, so the child sees only ours. */
function inheritedEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_')));
}

/**
 * The gateway (8080), demo API (7001) and admin (9090) listeners would collide between parallel runs and with a running demo:
 * switch them off, but only when the config has those sections (an override for a missing one is an
 * unknown key).
 */
function otherListenersOff(configText) {
  const overrides = {};
  for (const section of ['bff', 'demo_api', 'admin']) {
    if (new RegExp(`^\\s*\\[\\s*${section}\\s*\\]`, 'm').test(configText)) {
      overrides[`GATEHOUSE_${section.toUpperCase()}__ENABLED`] = 'false';
    }
  }
  return overrides;
}

async function waitForDiscovery(issuer, exited) {
  const url = `${issuer}/.well-known/openid-configuration`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exit;
  exited.then((result) => {
    exit = result;
  });
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exit) {
      throw new Error(`the process exited early (code ${exit.code}, signal ${exit.signal})`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error.cause?.code ?? error.message;
    }
    await sleep(100);
  }
  throw new Error(`GET ${url} gave no 200 within ${READY_TIMEOUT_MS / 1000} s (last: ${last})`);
}

/** A minimal cookie jar for one host: keeps what `Set-Cookie` says, sends it back in `Cookie`. */
export class CookieJar {
  #cookies = new Map();

  /** Takes the `Set-Cookie` headers of a response; `Max-Age<=0` or a past `Expires` deletes. */
  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let expired = false;
      for (const attribute of attributes) {
        const [key, ...rest] = attribute.split('=');
        const attributeValue = rest.join('=').trim();
        const lower = key.trim().toLowerCase();
        if (lower === 'max-age' && Number(attributeValue) <= 0) expired = true;
        if (lower === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
      }
      if (expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  /** The `Cookie` header value, or undefined when the jar is empty. */
  header() {
    if (this.#cookies.size === 0) return undefined;
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  names() {
    return [...this.#cookies.keys()];
  }
}

/** fetch as a browser tab would, but without following redirects: sends and stores the jar's cookies. */
export async function browse(url, jar, init = {}) {
  const headers = new Headers(init.headers);
  const cookie = jar.header();
  if (cookie) headers.set('cookie', cookie);
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(response);
  return response;
}

/**
 * Opens the authorization URL and signs in through the HTML login form.
 * Resolves to `{ status, location, html }` of the answer to the form post: 303 with `location` on success.
 * Throws when the authorization endpoint does not show a login form.
 */
export async function login({ authorizationUrl, username, password, jar = new CookieJar() }) {
  const page = await browse(authorizationUrl, jar);
  const pageHtml = await page.text();
  if (page.status !== 200) {
    const where = page.headers.get('location');
    throw new Error(
      `GET /authorize answered ${page.status} instead of the login page` +
        (where ? ` (Location: ${where})` : `: ${pageHtml.slice(0, 500)}`),
    );
  }
  const form = parseLoginForm(pageHtml, new URL(authorizationUrl));
  const body = new URLSearchParams({ ...form.hidden, username, password });
  const response = await browse(form.action, jar, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  const html = await response.text();
  return { status: response.status, location: response.headers.get('location'), html, jar };
}

/**
 * The login form of a page: `{ action, method, hidden, inputs }`. Throws unless the page has a POST form with
 * username, password, csrf and request inputs.
 */
export function parseLoginForm(html, baseUrl) {
  const formMatch = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!formMatch) throw new Error(`no <form> on the page: ${html.slice(0, 500)}`);
  const formAttributes = attributesOf(formMatch[1]);
  const inputs = [...formMatch[2].matchAll(/<input\b([^>]*)>/gi)].map((m) => attributesOf(m[1]));
  const hidden = Object.fromEntries(
    inputs.filter((input) => input.type === 'hidden' && input.name).map((input) => [input.name, input.value ?? '']),
  );
  const names = inputs.map((input) => input.name);
  for (const required of ['username', 'password', 'csrf', 'request']) {
    if (!names.includes(required)) throw new Error(`the login form has no input named ${required}: ${formMatch[0]}`);
  }
  if ((formAttributes.method ?? '').toLowerCase() !== 'post') {
    throw new Error(`the login form's method is ${formAttributes.method}, not post`);
  }
  return {
    action: new URL(formAttributes.action ?? '', baseUrl),
    method: 'POST',
    hidden,
    inputs: names,
  };
}

function attributesOf(source) {
  const attributes = {};
  for (const m of source.matchAll(/([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    attributes[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attributes;
}

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, entity) => {
    const lower = entity.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(parseInt(lower.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[lower];
  });
}

/** A compact JWS's header and payload, decoded without verification (base64url JSON). */
export function decodeJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error(`not a compact JWS: ${parts.length} parts`);
  const json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  return { header: json(parts[0]), payload: json(parts[1]) };
}

/** Verifies an ES256 compact JWS against the issuer's JWK Set with WebCrypto (independent of the server). */
export async function verifyEs256(token, jwks) {
  const [headerPart, payloadPart, signaturePart] = token.split('.');
  const { header } = decodeJwt(token);
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  if (!jwk) throw new Error(`no key with kid ${header.kid} in the JWK Set`);
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  return crypto.subtle.verify(
    { name: 'ECDSA', hash: 'SHA-256' },
    key,
    Buffer.from(signaturePart, 'base64url'),
    Buffer.from(`${headerPart}.${payloadPart}`, 'ascii'),
  );
}
