// Drives the TypeScript MCP SDK's OAuth client against an MCP server, for tests/test_ts_client.py.
//
//   node client.mjs <mcp-url> <token_endpoint_auth_method> <redirect-uri> [client-metadata-url]
//
// With a client metadata URL the SDK identifies the client by that Client ID Metadata Document
// (CIMD) when the server advertises support, instead of registering.
//
// Speaks JSON lines on stdout. The browser step is the caller's: the script prints
// {"event":"authorize","url":...} and reads the full redirect URL (with ?code=...) from stdin.
// Then: tools/call whoami; a forced refresh (the stored access token is spoiled, so the server
// answers 401 and the SDK refreshes on its own) and whoami again; finally the first refresh
// token is presented again through the SDK's refreshAuthorization, which must fail.
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, refreshAuthorization } from '@modelcontextprotocol/sdk/client/auth.js';

const [mcpUrl, authMethod, redirectUri, clientMetadataUrl] = process.argv.slice(2);
if (!mcpUrl || !authMethod || !redirectUri) {
  console.error('usage: node client.mjs <mcp-url> <token_endpoint_auth_method> <redirect-uri>');
  process.exit(2);
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function readLine(seconds) {
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no redirect on stdin')), seconds * 1000).unref());
  const next = await Promise.race([lines.next(), timeout]);
  if (next.done) throw new Error('stdin closed before the redirect arrived');
  return next.value.trim();
}

// What reached the token endpoint, as the server would see it (no secrets kept).
const tokenRequests = [];
async function recordingFetch(url, init) {
  if (String(url).endsWith('/token') && init?.body) {
    const body = new URLSearchParams(String(init.body));
    const headers = new Headers(init.headers);
    tokenRequests.push({
      grant_type: body.get('grant_type'),
      client_id_in_body: body.has('client_id'),
      client_secret_in_body: body.has('client_secret'),
      basic_header: (headers.get('authorization') ?? '').startsWith('Basic '),
      resource: body.get('resource'),
    });
  }
  return fetch(url, init);
}

class MemoryProvider {
  constructor() {
    this.loginAllowed = true;
    this.logins = 0;
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadataUrl() {
    return clientMetadataUrl;
  }
  get clientMetadata() {
    return {
      client_name: `ts-sdk test (${authMethod})`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: authMethod,
    };
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    return this._verifier;
  }
  saveDiscoveryState(state) {
    this._discovery = state;
  }
  discoveryState() {
    return this._discovery;
  }
  redirectToAuthorization(url) {
    if (!this.loginAllowed) throw new Error('the SDK started a new login where a refresh was expected');
    this.logins += 1;
    emit({ event: 'authorize', url: url.toString() });
  }
}

const provider = new MemoryProvider();

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'ts-sdk-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

async function whoami(client) {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return JSON.parse(result.content[0].text);
}

async function main() {
  let session;
  try {
    session = await connect();
    throw new Error('connected without logging in');
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    const redirect = new URL(await readLine(60));
    const code = redirect.searchParams.get('code');
    if (!code) throw new Error(`no code in the redirect: ${redirect.search}`);
    // A fresh transport: the first one is spent on the unauthorized attempt.
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recordingFetch });
    await transport.finishAuth(code);
    session = await connect();
  }
  provider.loginAllowed = false;
  emit({
    event: 'registered',
    client_id: provider.clientInformation().client_id,
    token_endpoint_auth_method: provider.clientInformation().token_endpoint_auth_method ?? null,
    has_secret: Boolean(provider.clientInformation().client_secret),
  });
  emit({ event: 'whoami', identity: await whoami(session.client) });
  await session.client.close();

  const first = provider.tokens();
  provider.saveTokens({ ...first, access_token: 'spoiled-' + first.access_token.slice(-8) });
  const again = await connect();
  const second = provider.tokens();
  emit({
    event: 'refreshed',
    identity: await whoami(again.client),
    access_token_changed: second.access_token !== first.access_token,
    refresh_token_rotated: Boolean(second.refresh_token) && second.refresh_token !== first.refresh_token,
  });
  await again.client.close();

  const discovery = provider.discoveryState();
  try {
    await refreshAuthorization(discovery.authorizationServerUrl, {
      metadata: discovery.authorizationServerMetadata,
      clientInformation: provider.clientInformation(),
      refreshToken: first.refresh_token,
      resource: new URL(mcpUrl),
      fetchFn: recordingFetch,
    });
    emit({ event: 'replay', refused: false });
  } catch (error) {
    emit({ event: 'replay', refused: true, error: error.errorCode ?? error.name, message: error.message });
  }
  emit({ event: 'done', logins: provider.logins, token_requests: tokenRequests });
}

main().then(
  () => process.exit(0),
  (error) => {
    emit({ event: 'error', message: String(error?.stack ?? error) });
    process.exit(1);
  },
);
