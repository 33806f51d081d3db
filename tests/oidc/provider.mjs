// A real OpenID Connect provider for countersign's single sign-on tests: panva's
// `oidc-provider` (a certified implementation), on a loopback port, with its development
// sign-in pages. `.ci/run` installs it (`npm ci --prefix tests/oidc`).
//
//   node tests/oidc/provider.mjs
//
// prints `listening http://127.0.0.1:PORT` once it accepts connections (the port is the
// kernel's choice, so parallel tests never collide), and serves:
//
// - the provider itself, issuer `http://127.0.0.1:PORT`, with one confidential client
//   `countersign` / `countersign-test-secret` whose redirect address is
//   `http://127.0.0.1/login/sso/callback` on any port (RFC 8252 loopback rule), PKCE
//   required, RP-initiated logout on;
// - `PUT /test/accounts/{login}`: the claims (JSON) the account signing in as `{login}`
//   gets (email, email_verified, name, groups, …); unknown logins get only `sub`;
// - `PUT /test/tamper` with `on` or `off`: while on, the `id_token` of every token answer
//   has one character of its signature changed (a forged or corrupted token in transit).
import http from 'node:http';

import Provider from 'oidc-provider';

const accounts = new Map();
let tamper = false;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'countersign',
      client_secret: 'countersign-test-secret',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/login/sso/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1/login'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // The claims of the granted scopes go into the ID token itself (as most corporate
    // providers are configured to do for groups).
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    cookies: { keys: ['countersign-test-cookie-key'] },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { ...(accounts.get(id) || {}), sub: id };
        },
      };
    },
  });

  provider.use(async (ctx, next) => {
    await next();
    if (tamper && ctx.path === '/token' && ctx.body && typeof ctx.body.id_token === 'string') {
      const t = ctx.body.id_token;
      const last = t[t.length - 2] === 'A' ? 'B' : 'A';
      ctx.body = { ...ctx.body, id_token: `${t.slice(0, -2)}${last}${t.slice(-1)}` };
    }
  });

  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    const test = req.url.match(/^\/test\/(accounts\/([^/?]+)|tamper)$/);
    if (test && req.method === 'PUT') {
      const body = await readBody(req);
      if (test[2]) {
        accounts.set(decodeURIComponent(test[2]), JSON.parse(body));
      } else {
        tamper = body.trim() === 'on';
      }
      res.writeHead(204).end();
      return;
    }
    oidc(req, res);
  });
  console.log(`listening ${issuer}`);
});
