// The backend-for-frontend peer of bench/peers.sh: express + express-openid-connect (login with the
// authorization code flow and PKCE, the session in its own encrypted cookie `appSession`) + http-proxy-middleware
// forwarding /up/* to the upstream with `Authorization: Bearer <the session's access token>`. Defaults are kept
// where a user would keep them (rolling session: the cookie is re-encrypted and set again on every response),
// except the upstream connections, which are pooled (keep-alive agent) like nginx's and pingora's: http-proxy's
// default opens a new connection per request.
//
// Env: PORT, ISSUER (the token service it logs in with), CLIENT_ID, CLIENT_SECRET, SESSION_SECRET, UPSTREAM
// (e.g. http://127.0.0.1:7000), SCOPE (default "openid profile email offline_access api": a refresh token too,
// like the gateway asks for); WORKERS=N runs N processes with node:cluster (default 1). Routes: /login,
// /callback, /logout (express-openid-connect), /me (200 with the user's sub when logged in), /up/* (login
// required, proxied).
import cluster from 'node:cluster';
import dns from 'node:dns';
import http from 'node:http';

import express from 'express';
import expressOpenidConnect from 'express-openid-connect'; // CommonJS: no named exports
import { createProxyMiddleware } from 'http-proxy-middleware';

const { auth, requiresAuth } = expressOpenidConnect;

// The token service's issuer names `localhost`, and everything here listens on 127.0.0.1 only.
dns.setDefaultResultOrder('ipv4first');

const required = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
};
const port = Number(required('PORT'));
const issuer = required('ISSUER');
const upstream = required('UPSTREAM');
const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const sessionSecret = required('SESSION_SECRET');
const scope = process.env.SCOPE ?? 'openid profile email offline_access api';
const workers = Number(process.env.WORKERS ?? '1');

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited (${code})`);
    process.exit(1);
  });
} else {
  const app = express();
  app.disable('x-powered-by');
  app.use(
    auth({
      issuerBaseURL: issuer,
      baseURL: `http://localhost:${port}`,
      clientID: clientId,
      clientSecret,
      secret: sessionSecret,
      authRequired: false,
      idpLogout: false,
      authorizationParams: { response_type: 'code', scope },
    }),
  );
  app.get('/me', requiresAuth(), (req, res) => res.json({ sub: req.oidc.user.sub }));
  app.use('/up', requiresAuth());
  app.use(
    createProxyMiddleware({
      target: upstream,
      pathFilter: '/up',
      agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
      on: {
        proxyReq: (proxyReq, req) => {
          proxyReq.removeHeader('cookie');
          proxyReq.setHeader('authorization', `Bearer ${req.oidc.accessToken.access_token}`);
        },
        error: (error, _req, res) => {
          console.error('proxy error', error.message);
          if (!res.headersSent) res.writeHead(502);
          res.end();
        },
      },
    }),
  );
  app.listen(port, '127.0.0.1', () => console.log(`node BFF listening on http://localhost:${port} (pid ${process.pid})`));
}
