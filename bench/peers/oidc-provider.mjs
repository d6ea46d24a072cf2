// The token-service peer of bench/peers.sh: node `oidc-provider` configured like Gatehouse's token service for
// workloads 1 and 2 — client_credentials with client_secret_basic, resource indicators (RFC 8707) with a default
// resource, so a request without `resource=` still gets a JWT access token (ES256) whose `aud` is the API, DPoP
// (RFC 9449) enabled (proofs verified, jti replay checked in the default in-memory adapter, no nonce required).
// Access tokens live 300 s, like Gatehouse's default.
//
// Env: PORT (required), CLIENT_ID, CLIENT_SECRET, AUDIENCE; WORKERS=N runs N processes with node:cluster
// (default 1: one process, as `node server.js` runs it); JWKS (a private JWK Set as JSON), else keys are
// generated at start: one P-256 key for the access tokens, one RSA key because oidc-provider signs ID tokens
// with RS256 by default. `node oidc-provider.mjs --generate-jwks` prints such a set (bench/peers.sh passes one,
// so its cold start does not include key generation, like a deployment that loads its keys).
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

if (process.argv[2] === '--generate-jwks') {
  console.log(JSON.stringify(generateJwks()));
  process.exit(0);
}
const port = Number(process.env.PORT);
if (!port) {
  console.error('PORT is required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const clientId = process.env.CLIENT_ID ?? 'bench-m2m';
const clientSecret = process.env.CLIENT_SECRET ?? 'bench-m2m-secret-0123456789abcdefghijklmnopqrstuv';
const audience = process.env.AUDIENCE ?? 'http://localhost:8080/api';
const workers = Number(process.env.WORKERS ?? '1');

if (workers > 1 && cluster.isPrimary) {
  // One key set for all workers, so a token from one verifies with the JWKS of any.
  process.env.JWKS ??= JSON.stringify(generateJwks());
  for (let i = 0; i < workers; i += 1) cluster.fork();
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited (${code})`);
    process.exit(1);
  });
} else {
  const jwks = process.env.JWKS ? JSON.parse(process.env.JWKS) : generateJwks();
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api',
      },
    ],
    scopes: ['openid', 'api'],
    jwks,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== audience) throw new errors.InvalidTarget();
          return {
            scope: 'api',
            audience,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: { ClientCredentials: 300 },
  });
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer} (pid ${process.pid})`));
}

function generateJwks() {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: 'rs-1', alg: 'RS256', use: 'sig' },
      { ...ec, kid: 'es-1', alg: 'ES256', use: 'sig' },
    ],
  };
}
