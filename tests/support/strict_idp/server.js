// A strict upstream OIDC IdP for tests: panva's oidc-provider (OpenID Certified) on loopback.
//
//   node server.js --port 4000 --client-id c --client-secret s [--redirect-uri http://127.0.0.1:9/cb ...]
//
// Every option also comes from the environment (argv wins): PORT, CLIENT_ID, CLIENT_SECRET,
// REDIRECT_URIS (space separated), ACCESS_TTL (seconds, default 3600), REFRESH_TTL (default 86400),
// REFRESH_POLICY ("always": a refresh token for every code of our client, the default; or
// "offline_access": only when offline_access was granted, as OIDC Core §11 says), ADMIN_SECRET.
//
// What makes it strict (unlike oidc-provider-mock): PKCE S256 required for every client (RFC 7636,
// OAuth 2.1 §4.1.1), refresh tokens rotated and a reused one revokes the whole grant
// (RFC 9700 §4.14.2), exact redirect_uri match, client_secret_basic only, RFC 9207 `iss`.
//
// Admin side channel, JSON, under /__admin/<ADMIN_SECRET>/ on the same port (never an OIDC route):
//   GET  token-calls            -> {"counts": {"<grant_type>": n},
//                                   "calls": [{grant_type, status, error, detail}]}
//   POST token-calls/reset
//   POST users/<sub>/disable     findAccount answers undefined: refresh and code grants -> invalid_grant,
//                                and a new login as <sub> ends in access_denied
//   POST users/<sub>/enable
//   POST outage {"mode": "503" | "close" | "off", "scope": "token" | "all"}
//   POST redirect-uris {"uri": "..."}   allow one more exact redirect_uri for the client
//   GET  state                  -> {issuer, client_id, redirect_uris, disabled, outage}
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'access-ttl': { type: 'string' },
    'refresh-ttl': { type: 'string' },
    'refresh-policy': { type: 'string' },
    'admin-secret': { type: 'string' },
  },
});

const env = process.env;
const port = Number(args.port ?? env.PORT ?? 0);
const clientId = args['client-id'] ?? env.CLIENT_ID ?? 'strict-client';
const clientSecret = args['client-secret'] ?? env.CLIENT_SECRET;
const redirectUris = args['redirect-uri'] ?? (env.REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean);
const accessTtl = Number(args['access-ttl'] ?? env.ACCESS_TTL ?? 3600);
const refreshTtl = Number(args['refresh-ttl'] ?? env.REFRESH_TTL ?? 86400);
const refreshPolicy = args['refresh-policy'] ?? env.REFRESH_POLICY ?? 'always';
const adminSecret = args['admin-secret'] ?? env.ADMIN_SECRET ?? randomBytes(16).toString('hex');

if (!Number.isInteger(port) || port <= 0 || !clientSecret || !Number.isFinite(accessTtl) || accessTtl < 1
    || !['always', 'offline_access'].includes(refreshPolicy)) {
  console.error('usage: node server.js --port N --client-id ID --client-secret S [--redirect-uri URI ...] '
    + '[--access-ttl SECONDS] [--refresh-ttl SECONDS] [--refresh-policy always|offline_access]');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const disabled = new Set();
const outage = { mode: 'off', scope: 'token' };
const tokenCalls = [];
const allowedRedirectUris = [...redirectUris];

function account(sub) {
  if (disabled.has(sub)) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: `${sub}@example.test`,
        email_verified: true,
        name: sub.charAt(0).toUpperCase() + sub.slice(1),
      };
    },
  };
}

const provider = new Provider(issuer, {
  clients: [], // ours lives in the adapter so its redirect URIs can grow at run time
  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Claims of granted scopes in the ID token too, as most IdPs do; our side reads them from there.
  conformIdTokenClaims: false,
  findAccount: (_ctx, sub) => account(sub),
  pkce: { required: () => true },
  rotateRefreshToken: true,
  async issueRefreshToken(_ctx, client, code) {
    if (!client.grantTypeAllowed('refresh_token')) return false;
    return refreshPolicy === 'always' || code.scopes.has('offline_access');
  },
  // Refresh tokens outlive the IdP browser session: the test decides when access ends.
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: accessTtl,
    IdToken: Math.max(accessTtl, 60),
    RefreshToken: refreshTtl,
    AuthorizationCode: 60,
    Grant: refreshTtl,
    Session: 3600,
    Interaction: 600,
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
});

function clientMetadata() {
  return {
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: allowedRedirectUris.length ? allowedRedirectUris : [`${issuer}/no-redirect-uri-registered`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

async function saveClient() {
  await provider.Client.adapter.upsert(clientId, clientMetadata());
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function record(grantType, status, error, detail) {
  tokenCalls.push({
    grant_type: grantType ?? null, status, error: error ?? null, detail: detail ?? null,
  });
}

// oidc-provider answers every refused grant with a generic description; keep its reason
// ("PKCE verification failed", "refresh token already used", "... account not found") for tests.
provider.on('server_error', (_ctx, err) => { console.error('server_error:', err); });
provider.on('grant.error', (ctx, err) => { ctx.state.grantErrorDetail = err.error_detail; });

// A disabled user's login is refused like a real IdP would: access_denied back to the client
// (RFC 6749 §4.1.2.1) instead of oidc-provider's 500 for an account that vanished mid-login.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const raw = await readBody(ctx.req);
  ctx.req.body = raw; // oidc-provider's body parser reads req.body once the stream is consumed
  const form = new URLSearchParams(raw);
  if (form.get('prompt') === 'login' && disabled.has(form.get('login'))) {
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied', error_description: 'the user is disabled',
    }, { mergeWithLastSubmission: false });
    return undefined;
  }
  return next();
});

// Outage and the token-call ledger sit in front of oidc-provider's own routing.
provider.use(async (ctx, next) => {
  const isToken = ctx.path === '/token';
  if (outage.mode !== 'off' && (isToken || outage.scope === 'all')) {
    if (isToken) {
      const grantType = new URLSearchParams(await readBody(ctx.req)).get('grant_type');
      record(grantType, outage.mode === 'close' ? 0 : 503, 'outage');
    }
    if (outage.mode === 'close') {
      ctx.respond = false;
      ctx.req.socket.destroy();
      return;
    }
    ctx.status = 503;
    ctx.set('Retry-After', '1');
    ctx.body = { error: 'temporarily_unavailable', error_description: 'simulated outage' };
    return;
  }
  await next();
  if (ctx.oidc?.route === 'token') {
    record(ctx.oidc.params?.grant_type, ctx.status, ctx.body?.error, ctx.state.grantErrorDetail);
  }
});

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function admin(req, res, path) {
  const body = req.method === 'POST' ? await readBody(req) : '';
  const data = body ? JSON.parse(body) : {};
  let m;
  if (req.method === 'GET' && path === 'token-calls') {
    const counts = {};
    for (const call of tokenCalls) counts[call.grant_type] = (counts[call.grant_type] ?? 0) + 1;
    return json(res, 200, { counts, calls: tokenCalls });
  }
  if (req.method === 'POST' && path === 'token-calls/reset') {
    tokenCalls.length = 0;
    return json(res, 200, {});
  }
  if (req.method === 'POST' && (m = /^users\/([^/]+)\/(disable|enable)$/.exec(path))) {
    const sub = decodeURIComponent(m[1]);
    if (m[2] === 'disable') disabled.add(sub); else disabled.delete(sub);
    return json(res, 200, { sub, disabled: disabled.has(sub) });
  }
  if (req.method === 'POST' && path === 'outage') {
    const mode = String(data.mode ?? 'off');
    const scope = String(data.scope ?? 'token');
    if (!['503', 'close', 'off'].includes(mode) || !['token', 'all'].includes(scope)) {
      return json(res, 400, { error: 'mode is 503, close or off; scope is token or all' });
    }
    Object.assign(outage, { mode, scope });
    return json(res, 200, outage);
  }
  if (req.method === 'POST' && path === 'redirect-uris') {
    if (typeof data.uri !== 'string' || !URL.canParse(data.uri)) return json(res, 400, { error: 'uri' });
    if (!allowedRedirectUris.includes(data.uri)) allowedRedirectUris.push(data.uri);
    await saveClient();
    return json(res, 200, { redirect_uris: allowedRedirectUris });
  }
  if (req.method === 'GET' && path === 'state') {
    return json(res, 200, {
      issuer, client_id: clientId, redirect_uris: allowedRedirectUris, disabled: [...disabled], outage,
    });
  }
  return json(res, 404, { error: 'no such admin route' });
}

await saveClient();
const adminPrefix = `/__admin/${adminSecret}/`;
const oidc = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith(adminPrefix)) {
    admin(req, res, req.url.slice(adminPrefix.length).split('?')[0])
      .catch((err) => json(res, 400, { error: String(err.message) }));
    return;
  }
  oidc(req, res);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`strict IdP listening at ${issuer} (client ${clientId}, access TTL ${accessTtl}s)`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
}
