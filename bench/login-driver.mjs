// Drives the whole browser login of a backend-for-frontend against Gatehouse's token service, as a browser
// would, with node:http only (keep-alive connections, a cookie jar per login):
//   GET START (the BFF's login URL) → 302 to the token service's /authorize → 200 login form (its CSRF cookie
//   set) → POST the form (hidden csrf + request fields, the CSRF cookie, username, password) → 302 to the BFF's
//   callback → the BFF exchanges the code → 302 to DONE_PATH with the BFF's session cookie set.
// A login counts when that last redirect arrives and the session cookie COOKIE (or its chunks COOKIE.N) is in the
// jar; the page at DONE_PATH itself is not fetched.
//
//   node login-driver.mjs once     --start URL --done-path / --cookie NAME --username U --password P [--check URL]
//       prints the Cookie header value of the BFF's origin after one login (and checks that --check answers 200
//       with it).
//   node login-driver.mjs bench    ... --concurrency N --duration SECONDS [--sso]
//       N logins in flight at once for SECONDS; prints
//       RESULT rps=<logins/s> p50_ms= p99_ms= (of a whole login) requests=<logins> non2xx=<failed> socket_errors=
//       --sso: every login reuses one token-service session (made first, with the password, off the clock), so
//       the token service answers /authorize with a code at once: no login form, no password hash.
//   node login-driver.mjs sessions ... --count N --concurrency C [--sso] [--check URL]
//       creates N sessions. --sso logs in with the password once (that login makes the first session) and then
//       reuses that token-service session; --check fetches URL with each new session (so it is read back at
//       least once). Prints a RESULT line like `bench`: requests = the sessions made; exits 1 when any failed.
//
// The BFFs and the token service listen on 127.0.0.1; URLs may name `localhost` (connections go to 127.0.0.1,
// the Host header keeps the name).
import http from 'node:http';
import { parseArgs } from 'node:util';

const { positionals, values: options } = parseArgs({
  allowPositionals: true,
  options: {
    start: { type: 'string' },
    'done-path': { type: 'string', default: '/' },
    cookie: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    check: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    duration: { type: 'string', default: '10' },
    count: { type: 'string', default: '10000' },
    sso: { type: 'boolean', default: false },
  },
});
const mode = positionals[0];
for (const name of ['start', 'cookie', 'username', 'password']) {
  if (!options[name]) fail(`--${name} is required`);
}
const start = new URL(options.start);
const appOrigin = start.origin;
const concurrency = Number(options.concurrency);
const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(concurrency, 1) * 2 });
const MAX_HOPS = 12;

class LoginError extends Error {}

// ----------------------------------------------------------------------------------------------- cookies
/** Cookies by origin (scheme://host:port): a stricter scope than a browser's, enough for these flows. */
class Jar {
  constructor(parent) {
    this.byOrigin = new Map();
    this.parent = parent; // cookies shared by every login (a token-service session), overridden by this jar's
  }

  store(origin, setCookies) {
    if (!setCookies) return;
    let cookies = this.byOrigin.get(origin);
    if (!cookies) this.byOrigin.set(origin, (cookies = new Map()));
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => {
        const [key, v = ''] = a.split('=');
        const k = key.trim().toLowerCase();
        return (k === 'max-age' && Number(v) <= 0) || (k === 'expires' && Date.parse(v) <= Date.now());
      });
      if (expired || value === '') cookies.delete(name);
      else cookies.set(name, value);
    }
  }

  header(origin) {
    const cookies = new Map(this.parent?.byOrigin.get(origin) ?? []);
    for (const [name, value] of this.byOrigin.get(origin) ?? []) cookies.set(name, value);
    if (cookies.size === 0) return undefined;
    return [...cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }

  /** True when a cookie named `prefix` or `prefix.N` (a session cookie in chunks) is set for `origin`. */
  hasSession(origin, prefix) {
    return [...(this.byOrigin.get(origin)?.keys() ?? [])].some((n) => n === prefix || n.startsWith(`${prefix}.`));
  }
}

// -------------------------------------------------------------------------------------------------- http
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname === 'localhost' ? '127.0.0.1' : url.hostname,
        port: url.port || 80,
        path: url.pathname + url.search,
        method,
        agent,
        headers: { host: url.host, ...headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const entities = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", '#39': "'", '#x27': "'", '#x2F': '/', '#x2f': '/' };
const unescape = (s) => s.replace(/&(#x?[0-9a-fA-F]+|[a-z]+);/g, (m, e) => entities[e] ?? m);

/** The login form of a page: its action (absolute) and hidden fields, or null. */
function loginForm(page, pageUrl) {
  const form = /<form[^>]*method="post"[^>]*action="([^"]*)"/i.exec(page);
  if (!form) return null;
  const fields = new URLSearchParams();
  for (const [, name, value] of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields.set(unescape(name), unescape(value));
  }
  if (!fields.has('csrf')) return null;
  return { action: new URL(unescape(form[1]), pageUrl), fields };
}

// ------------------------------------------------------------------------------------------------- login
/** One whole login; resolves with the jar holding the BFF's session cookie, throws LoginError otherwise. */
async function login(idpJar) {
  const jar = new Jar(idpJar);
  let url = start;
  let method = 'GET';
  let body;
  let headers = {};
  for (let hop = 0; hop < MAX_HOPS; hop += 1) {
    const cookie = jar.header(url.origin);
    const response = await request(url, { method, body, headers: { ...headers, ...(cookie ? { cookie } : {}) } });
    jar.store(url.origin, response.headers['set-cookie']);
    method = 'GET';
    body = undefined;
    headers = {};
    if (response.status >= 300 && response.status < 400 && response.headers.location) {
      const next = new URL(response.headers.location, url);
      if (next.origin === appOrigin && next.pathname === options['done-path'] && url.origin === appOrigin) {
        if (!jar.hasSession(appOrigin, options.cookie)) throw new LoginError(`no ${options.cookie} cookie after ${url.pathname}`);
        return jar;
      }
      url = next;
      continue;
    }
    const form = response.status === 200 ? loginForm(response.body, url) : null;
    if (!form) throw new LoginError(`unexpected ${response.status} at ${url.origin}${url.pathname}: ${response.body.slice(0, 200)}`);
    form.fields.set('username', options.username);
    form.fields.set('password', options.password);
    url = form.action;
    method = 'POST';
    body = form.fields.toString();
    headers = { 'content-type': 'application/x-www-form-urlencoded' };
  }
  throw new LoginError('too many redirects');
}

async function check(jar) {
  if (!options.check) return;
  const url = new URL(options.check);
  const response = await request(url, { headers: { cookie: jar.header(url.origin) ?? '', 'x-csrf': '1' } });
  if (response.status !== 200) throw new LoginError(`${options.check} answered ${response.status} after the login`);
}

// -------------------------------------------------------------------------------------------------- runs
function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function report(latencies, failures, socketErrors, seconds) {
  latencies.sort((a, b) => a - b);
  console.log(
    `RESULT rps=${(latencies.length / seconds).toFixed(0)} p50_ms=${percentile(latencies, 50).toFixed(2)} ` +
      `p99_ms=${percentile(latencies, 99).toFixed(2)} requests=${latencies.length} non2xx=${failures} socket_errors=${socketErrors}`,
  );
}

/** Runs `one` in `concurrency` loops until `more()` says stop; collects latencies and failures. */
async function loops(one, more, latencies = []) {
  let failures = 0;
  let socketErrors = 0;
  let firstError;
  const began = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (more(latencies.length + failures + socketErrors)) {
        const t0 = process.hrtime.bigint();
        try {
          await one();
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (error) {
          if (error instanceof LoginError) failures += 1;
          else socketErrors += 1;
          firstError ??= error;
        }
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  if (firstError) console.error(`first failure: ${firstError.message}`);
  return { latencies, failures, socketErrors, seconds };
}

/** A login with the password (checked); returns a jar of its token-service cookies for later logins. */
async function ssoLogin() {
  const t0 = process.hrtime.bigint();
  const first = await login();
  await check(first);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const idpJar = new Jar();
  for (const [origin, cookies] of first.byOrigin) {
    if (origin !== appOrigin) idpJar.byOrigin.set(origin, new Map(cookies));
  }
  return { idpJar, ms };
}

async function main() {
  switch (mode) {
    case 'once': {
      const jar = await login();
      await check(jar);
      process.stdout.write(jar.header(appOrigin));
      break;
    }
    case 'bench': {
      // With --sso the password login that opens the token-service session is made before the clock starts.
      const idpJar = options.sso ? (await ssoLogin()).idpJar : undefined;
      const deadline = Date.now() + Number(options.duration) * 1000;
      const r = await loops(() => login(idpJar), () => Date.now() < deadline);
      report(r.latencies, r.failures, r.socketErrors, r.seconds);
      break;
    }
    case 'sessions': {
      const count = Number(options.count);
      let idpJar;
      const latencies = [];
      if (options.sso) {
        // The first login, with the password, makes a session too.
        let ms;
        ({ idpJar, ms } = await ssoLogin());
        latencies.push(ms);
      }
      let started = options.sso ? 1 : 0;
      const r = await loops(
        async () => {
          const jar = await login(idpJar);
          await check(jar);
        },
        () => started++ < count,
        latencies,
      );
      report(r.latencies, r.failures, r.socketErrors, r.seconds);
      if (r.failures + r.socketErrors > 0) process.exitCode = 1;
      break;
    }
    default:
      fail('usage: login-driver.mjs once|bench|sessions --start URL --cookie NAME --username U --password P ...');
  }
  agent.destroy();
}

function fail(message) {
  console.error(message);
  process.exit(2);
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
