// Interop, part two: DPoP (RFC 9449), PAR (RFC 9126), introspection (RFC 7662) and revocation (RFC 7009),
// driven by openid-client; and a resource server built on oauth4webapi's validateJwtAccessToken that accepts
// Gatehouse's DPoP-bound access tokens and refuses a replayed proof.
//
//   node --test tests/interop/          # after cargo build --bin gatehouse (scripts/test.sh does both)

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';

import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';

import { DEMO, decodeJwt, login, startServer } from './helpers.mjs';

let server;
let bff;

before(async () => {
  server = await startServer();
  bff = await client.discovery(new URL(server.issuer), DEMO.bff.clientId, DEMO.bff.secret, client.ClientSecretBasic(), {
    execute: [client.allowInsecureRequests],
  });
});

after(async () => {
  await server?.stop();
});

/** RFC 7638 thumbprint of an EC public CryptoKey. */
async function thumbprint(publicKey) {
  const { crv, kty, x, y } = await crypto.subtle.exportKey('jwk', publicKey);
  return createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
}

/** PAR + login as alice + code exchange, all with one DPoP key. */
async function signInWithParAndDpop() {
  const keyPair = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(bff, keyPair);
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = await client.buildAuthorizationUrlWithPAR(
    bff,
    {
      redirect_uri: DEMO.bff.redirectUri,
      scope: 'openid profile email offline_access api',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    },
    { DPoP },
  );
  assert.ok(url.searchParams.get('request_uri')?.startsWith('urn:ietf:params:oauth:request_uri:'), 'PAR was used');
  const { status, location } = await login({ authorizationUrl: url.href, username: DEMO.alice.username, password: DEMO.alice.password });
  assert.equal(status, 303);
  const tokens = await client.authorizationCodeGrant(bff, new URL(location), { pkceCodeVerifier, expectedState: state, expectedNonce: nonce }, undefined, { DPoP });
  return { tokens, DPoP, keyPair };
}

test('PAR + code exchange with DPoP: the access token is bound to the key (cnf.jkt), token_type DPoP', async () => {
  const { tokens, keyPair } = await signInWithParAndDpop();
  assert.equal(tokens.token_type.toLowerCase(), 'dpop');
  const { header, payload } = decodeJwt(tokens.access_token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(payload.cnf.jkt, await thumbprint(keyPair.publicKey));
});

test('userinfo with DPoP; refresh keeps cnf.jkt; the refreshed token works', async () => {
  const { tokens, DPoP, keyPair } = await signInWithParAndDpop();
  const sub = tokens.claims().sub;
  const userinfo = await client.fetchUserInfo(bff, tokens.access_token, sub, { DPoP });
  assert.equal(userinfo.sub, sub);
  assert.equal(userinfo.name, DEMO.alice.name);

  const refreshed = await client.refreshTokenGrant(bff, tokens.refresh_token, undefined, { DPoP });
  assert.equal(refreshed.token_type.toLowerCase(), 'dpop');
  assert.equal(decodeJwt(refreshed.access_token).payload.cnf.jkt, await thumbprint(keyPair.publicKey));
  const again = await client.fetchUserInfo(bff, refreshed.access_token, sub, { DPoP });
  assert.equal(again.sub, sub);
});

test('a DPoP-bound token sent as a plain Bearer token is refused at userinfo', async () => {
  const { tokens } = await signInWithParAndDpop();
  const response = await fetch(`${server.issuer}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(response.status, 401);
  assert.match(response.headers.get('www-authenticate'), /^DPoP /);
});

test('introspection shows the binding; revocation of the refresh token deactivates the grant', async () => {
  const { tokens, keyPair } = await signInWithParAndDpop();
  const introspected = await client.tokenIntrospection(bff, tokens.access_token);
  assert.equal(introspected.active, true);
  assert.equal(introspected.token_type, 'DPoP');
  assert.equal(introspected.cnf.jkt, await thumbprint(keyPair.publicKey));
  assert.equal(introspected.client_id, DEMO.bff.clientId);
  const refresh = await client.tokenIntrospection(bff, tokens.refresh_token);
  assert.equal(refresh.active, true);

  await client.tokenRevocation(bff, tokens.refresh_token);
  assert.equal((await client.tokenIntrospection(bff, tokens.refresh_token)).active, false);
  assert.equal((await client.tokenIntrospection(bff, tokens.access_token)).active, false, 'its access tokens too');
  assert.equal((await client.tokenIntrospection(bff, 'not-a-token')).active, false);
});

test('a resource server built on oauth4webapi validateJwtAccessToken accepts the DPoP-bound token and refuses a replayed proof', async () => {
  const issuer = new URL(server.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { [oauth.allowInsecureRequests]: true }));
  const audience = DEMO.api.audience;
  const seen = new Set(); // the resource server's DPoP jti replay cache (RFC 9449 §11.1)
  const resourceServer = async (request) => {
    const claims = await oauth.validateJwtAccessToken(as, request, audience, { requireDPoP: true, [oauth.allowInsecureRequests]: true });
    const proof = decodeJwt(request.headers.get('dpop'));
    const key = `${claims.cnf.jkt}:${proof.payload.jti}`;
    if (seen.has(key)) throw new Error('DPoP proof replayed');
    seen.add(key);
    return claims;
  };

  const { tokens, DPoP, keyPair } = await signInWithParAndDpop();
  const apiUrl = new URL('http://localhost:8080/api/whoami');
  // Let openid-client build the DPoP-bound request, then hand the same headers to the resource server.
  let captured;
  const capture = async (url, init) => {
    captured = new Request(url, init);
    return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
  };
  bff[client.customFetch] = capture;
  try {
    await client.fetchProtectedResource(bff, tokens.access_token, apiUrl, 'GET', undefined, undefined, { DPoP });
  } finally {
    delete bff[client.customFetch];
  }
  const claims = await resourceServer(captured.clone());
  assert.equal(claims.cnf.jkt, await thumbprint(keyPair.publicKey));
  assert.equal(claims.client_id, DEMO.bff.clientId);
  await assert.rejects(resourceServer(captured.clone()), /replayed/);
  // The same token without its proof is refused by the library itself.
  const bare = new Request(apiUrl, { headers: { authorization: `DPoP ${tokens.access_token}` } });
  await assert.rejects(oauth.validateJwtAccessToken(as, bare, audience, { requireDPoP: true, [oauth.allowInsecureRequests]: true }));
});
