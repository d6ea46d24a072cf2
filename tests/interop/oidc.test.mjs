// Interop: Gatehouse's token service driven by openid-client, an OpenID-certified relying party library that
// does its own checks (issuer, `iss` in the authorization response, state, PKCE, nonce, ID token signature via
// the JWK Set, aud, exp…). The real `gatehouse` binary runs on a free loopback port with a fresh data directory.
//
//   node --test tests/interop/          # after cargo build --bin gatehouse (scripts/test.sh does both)
//
// Each test signs in on its own, so none depends on another's order or outcome.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as client from 'openid-client';

import { CookieJar, DEMO, browse, decodeJwt, login, startServer, verifyEs256 } from './helpers.mjs';

const USER_SCOPE = 'openid profile email offline_access';

let server;
let bff; // openid-client Configuration of the confidential web client gatehouse-bff
let m2m; // … of the client-credentials client demo-m2m

before(async () => {
  server = await startServer();
  bff = await discover(DEMO.bff.clientId, DEMO.bff.secret);
  m2m = await discover(DEMO.m2m.clientId, DEMO.m2m.secret);
});

after(async () => {
  await server?.stop();
});

test('discovery: the issuer matches and the metadata advertises S256 PKCE and RFC 9207 iss', async () => {
  const config = await discover(DEMO.bff.clientId, DEMO.bff.secret);
  const metadata = config.serverMetadata();
  assert.equal(metadata.issuer, server.issuer);
  assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  assert.equal(metadata.authorization_response_iss_parameter_supported, true);
  assert.ok(metadata.supportsPKCE('S256'));
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri']) {
    assert.ok(metadata[endpoint]?.startsWith(`${server.issuer}/`), `${endpoint} is under the issuer`);
  }
  assert.ok(metadata.response_types_supported.includes('code'));
  assert.ok(metadata.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
  assert.ok(metadata.id_token_signing_alg_values_supported.includes('RS256'));
});

test('code flow with PKCE and nonce: alice signs in on the form; openid-client validates the ID token; userinfo matches', async () => {
  const flow = await startAuthorization();
  const { status, location } = await login({ authorizationUrl: flow.url, ...DEMO.alice });
  assert.equal(status, 303, 'a successful sign-in redirects with 303 See Other');

  const callback = new URL(location);
  assert.equal(`${callback.origin}${callback.pathname}`, DEMO.bff.redirectUri);
  assert.equal(callback.searchParams.get('iss'), server.issuer, 'RFC 9207: iss in the authorization response');
  assert.equal(callback.searchParams.get('state'), flow.state);
  assert.ok(callback.searchParams.get('code'));

  const tokens = await client.authorizationCodeGrant(bff, callback, flow.checks);
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.access_token);
  assert.ok(tokens.id_token);
  assert.ok(tokens.refresh_token, 'offline_access was granted');

  const claims = tokens.claims();
  assert.ok(claims.sub, 'the ID token has a subject');
  assert.equal(claims.iss, server.issuer);
  assert.ok([claims.aud].flat().includes(DEMO.bff.clientId));
  assert.equal(claims.nonce, flow.nonce);
  assert.equal(decodeJwt(tokens.id_token).header.alg, 'RS256');

  const userinfo = await client.fetchUserInfo(bff, tokens.access_token, claims.sub);
  assert.equal(userinfo.sub, claims.sub);
  assert.equal(userinfo.name, DEMO.alice.name);
  assert.equal(userinfo.email, DEMO.alice.email);
  assert.equal(userinfo.email_verified, true);
});

test('refresh: refreshTokenGrant returns a new access token and a rotated refresh token that works at userinfo', async () => {
  const { tokens } = await signIn(DEMO.alice);
  const sub = tokens.claims().sub;

  const refreshed = await client.refreshTokenGrant(bff, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.ok(refreshed.refresh_token, 'a new refresh token is issued');
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotates');

  const userinfo = await client.fetchUserInfo(bff, refreshed.access_token, sub);
  assert.equal(userinfo.sub, sub);
});

test('client credentials: demo-m2m gets an RFC 9068 access token (at+jwt, ES256) for the API audience', async () => {
  const tokens = await client.clientCredentialsGrant(m2m, { scope: DEMO.api.scope });
  assert.ok(tokens.access_token);
  assert.equal(tokens.refresh_token, undefined, 'no refresh token for client credentials');
  assert.equal(tokens.id_token, undefined, 'no ID token for client credentials');

  const { header, payload } = decodeJwt(tokens.access_token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(header.alg, 'ES256');
  assert.ok(header.kid, 'the header names its key');
  assert.equal(payload.iss, server.issuer);
  assert.deepEqual([payload.aud].flat(), [DEMO.api.audience]);
  assert.equal(payload.client_id, DEMO.m2m.clientId);
  assert.ok(payload.scope.split(' ').includes(DEMO.api.scope));
  assert.ok(payload.jti, 'RFC 9068 §2.2: jti');
  const now = Math.floor(Date.now() / 1000);
  assert.ok(payload.iat <= now + 60 && payload.exp > now, 'iat/exp bracket now');

  const jwks = await (await fetch(m2m.serverMetadata().jwks_uri)).json();
  assert.ok(await verifyEs256(tokens.access_token, jwks), 'the signature verifies against the published JWK Set');
});

test('wrong password: no code, the login page comes back with a generic error', async () => {
  const wrongPassword = await login({
    authorizationUrl: (await startAuthorization()).url,
    username: DEMO.bob.username,
    password: 'not-bobs-password',
  });
  assert.ok([200, 401].includes(wrongPassword.status), `status ${wrongPassword.status}`);
  assert.equal(wrongPassword.location, null, 'no redirect');
  assert.doesNotMatch(wrongPassword.html, /[?&]code=/);
  assert.match(wrongPassword.html, /name="password"/, 'the form is shown again');

  // The message must not tell an unknown user from a wrong password.
  const unknownUser = await login({
    authorizationUrl: (await startAuthorization()).url,
    username: 'nobody-by-this-name',
    password: 'whatever-password',
  });
  assert.equal(unknownUser.status, wrongPassword.status);
  assert.equal(unknownUser.location, null);
  assert.ok(alertText(wrongPassword.html), 'an error is shown');
  assert.equal(alertText(unknownUser.html), alertText(wrongPassword.html));
});

test('prompt=none: with the SSO cookie a code comes back at once; without it login_required with iss', async () => {
  const { jar } = await signIn(DEMO.alice);

  const silent = await startAuthorization({ prompt: 'none' });
  const answer = await browse(silent.url, jar);
  await answer.arrayBuffer();
  assert.ok([302, 303].includes(answer.status), `a redirect, not the login page (status ${answer.status})`);
  const callback = new URL(answer.headers.get('location'));
  assert.ok(callback.searchParams.get('code'));
  assert.equal(callback.searchParams.get('iss'), server.issuer);
  const tokens = await client.authorizationCodeGrant(bff, callback, silent.checks);
  assert.ok(tokens.claims().sub);

  const anonymous = await startAuthorization({ prompt: 'none' });
  const refused = await browse(anonymous.url, new CookieJar());
  await refused.arrayBuffer();
  assert.ok([302, 303].includes(refused.status), `status ${refused.status}`);
  const errorCallback = new URL(refused.headers.get('location'));
  assert.equal(`${errorCallback.origin}${errorCallback.pathname}`, DEMO.bff.redirectUri);
  assert.equal(errorCallback.searchParams.get('error'), 'login_required');
  assert.equal(errorCallback.searchParams.get('iss'), server.issuer);
  assert.equal(errorCallback.searchParams.get('state'), anonymous.state);
  assert.equal(errorCallback.searchParams.get('code'), null);
  await assert.rejects(
    client.authorizationCodeGrant(bff, errorCallback, anonymous.checks),
    (error) => error instanceof client.AuthorizationResponseError && error.error === 'login_required',
  );
});

test('code reuse: the second exchange is invalid_grant and revokes the tokens of the first', async () => {
  const { tokens, callback, flow } = await signIn(DEMO.alice);
  const sub = tokens.claims().sub;
  assert.equal((await client.fetchUserInfo(bff, tokens.access_token, sub)).sub, sub, 'works before the reuse');

  const token_endpoint = bff.serverMetadata().token_endpoint;
  const reuse = await fetch(token_endpoint, {
    method: 'POST',
    headers: {
      authorization: basicAuth(DEMO.bff.clientId, DEMO.bff.secret),
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code'),
      redirect_uri: DEMO.bff.redirectUri,
      code_verifier: flow.checks.pkceCodeVerifier,
    }),
  });
  assert.equal(reuse.status, 400);
  assert.equal((await reuse.json()).error, 'invalid_grant');

  const userinfo = await fetch(bff.serverMetadata().userinfo_endpoint, {
    headers: { authorization: `Bearer ${tokens.access_token}` },
  });
  await userinfo.arrayBuffer();
  assert.equal(userinfo.status, 401, 'the first access token is revoked');
  await assert.rejects(client.refreshTokenGrant(bff, tokens.refresh_token), (error) => {
    assert.ok(error instanceof client.ResponseBodyError, `${error}`);
    assert.equal(error.error, 'invalid_grant');
    return true;
  });
});

// --- helpers below the tests ---

async function discover(clientId, secret) {
  return client.discovery(new URL(server.issuer), clientId, secret, client.ClientSecretBasic(), {
    execute: [client.allowInsecureRequests], // the loopback issuer is plain http
  });
}

/** A fresh authorization request of gatehouse-bff and the checks openid-client needs for its callback. */
async function startAuthorization(extra = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(bff, {
    redirect_uri: DEMO.bff.redirectUri,
    scope: USER_SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, state, nonce, checks: { pkceCodeVerifier, expectedState: state, expectedNonce: nonce } };
}

/** Signs a user in through the form and exchanges the code with openid-client. */
async function signIn(user) {
  const flow = await startAuthorization();
  const jar = new CookieJar();
  const { status, location, html } = await login({ authorizationUrl: flow.url, jar, ...user });
  assert.equal(status, 303, `sign-in as ${user.username} should redirect: ${html.slice(0, 300)}`);
  const callback = new URL(location);
  const tokens = await client.authorizationCodeGrant(bff, callback, flow.checks);
  return { tokens, callback, flow, jar };
}

/** RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Basic encoding. */
function basicAuth(id, secret) {
  const encode = (value) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`;
}

/** The text of the page's alert, if any (the generic sign-in error). */
function alertText(html) {
  const match = /role="alert"[^>]*>([\s\S]*?)</.exec(html);
  return match?.[1].trim();
}
