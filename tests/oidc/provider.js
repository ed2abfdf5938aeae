#!/usr/bin/env node
// Test-only OpenID provider for tracegate's integration tests (oidc-provider 8.8.1, Node 20).
// NOT for production: in-memory storage, HTTP on loopback, an unauthenticated admin port.
//
//   node provider.js --gen-key jwks.json [--alg RS256] [--kid K]    write a private JWKS
//   node provider.js --port P --admin-port A --jwks jwks.json --clients clients.json [--ttl S]
//                    [--default-audience tracegate] [--host 127.0.0.1]
//
// Issuer http://<host>:<port>. Discovery at /.well-known/openid-configuration, JWKS at /jwks,
// token endpoint /token (client_credentials only; client_secret_basic by default).
//
// Access tokens: RS256 (the signing key's alg) JWTs with typ at+jwt, aud, client_id, scope, sub
// (= client_id), plus per-client `groups` and `claims` (via extraTokenClaims). The audience
// comes from the RFC 8707 `resource` parameter, which oidc-provider requires to be an absolute
// URI: `urn:audience:<name>` gives aud "<name>", any other URI is used as the aud verbatim; no
// resource at all gives the default audience.
//
// clients.json: {"clients": [{"client_id": "agent", "client_secret": "s",
//   "groups": ["readers"],            // omitted: no groups claim; any JSON value is copied
//   "claims": {"team": "x"},           // optional extra claims (cannot override iss/aud/exp/...)
//   "audiences": ["tracegate"],        // audiences it may request; omitted or "*": any
//   "scope": "traces:read",            // optional: scopes it may get (default: whatever it asks)
//   "ttl": 60,                          // optional per-client access token TTL in seconds
//   "token_format": "jwt",              // or "opaque" (then only introspection can read it)
//   "token_endpoint_auth_method": "client_secret_basic"}]}   (a bare list works too)
//
// The JWKS file holds private keys plus a "signing_kid" member; the provider rewrites it on
// rotation so forge.js can sign with the current real key.
//
// Admin API on --admin-port (JSON in and out):
//   GET  /state                      {mode, issuer, signing_kid, kids, ttl, counts}
//   POST /rotate      {alg?, kid?}   new key becomes the signing key; old keys stay published
//   POST /remove-key  {kid}          drop a key from the JWKS (a new signing key is picked if needed)
//   POST /down        {mode?}        "refuse" (close the listener; default), "503", "hang"
//   POST /up                         serve again
//   POST /ttl         {ttl}          default access token TTL in seconds
//   POST /reset-counts               zero the per-path request counters
//
// Prints "READY issuer=<url> admin=<url>" on stdout once both ports listen.

import * as http from 'node:http';
import * as fs from 'node:fs';

import { generateJwk, readJson, writeJsonAtomic } from './keys.js';

const AUDIENCE_URN = 'urn:audience:';

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    const value = argv[i + 1];
    if (value === undefined || value.startsWith('--')) throw new Error(`${a} needs a value`);
    out[name] = value;
    i += 1;
  }
  return out;
}

function fail(msg) {
  process.stderr.write(`provider.js: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  fail(e.message);
}

if (args['gen-key']) {
  const jwk = generateJwk(args.alg || 'RS256', args.kid);
  writeJsonAtomic(args['gen-key'], { keys: [jwk], signing_kid: jwk.kid });
  process.stdout.write(`${jwk.kid}\n`);
  process.exit(0);
}

// Imported only now so --gen-key stays fast.
const { default: Provider, errors } = await import('oidc-provider');

const host = args.host || process.env.OIDC_HOST || '127.0.0.1';
const port = Number(args.port || process.env.OIDC_PORT);
const adminPort = Number(args['admin-port'] || process.env.OIDC_ADMIN_PORT);
const jwksPath = args.jwks || process.env.OIDC_JWKS;
const clientsPath = args.clients || process.env.OIDC_CLIENTS;
if (!port || !adminPort || !jwksPath || !clientsPath) {
  fail('usage: provider.js --port P --admin-port A --jwks FILE --clients FILE [--ttl S] '
       + '[--default-audience NAME] | --gen-key FILE [--alg ALG] [--kid KID]');
}
const issuer = `http://${host}:${port}`;

// --- mutable test state ----------------------------------------------------------------------

const state = {
  mode: 'up', // up | refuse | 503 | hang
  ttl: Number(args.ttl || 300),
  defaultAudience: args['default-audience'] || 'tracegate',
  keys: [],
  signingKid: undefined,
  counts: {},
  clients: new Map(),
};

{
  const jwks = readJson(jwksPath);
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) fail(`${jwksPath}: no keys`);
  state.keys = jwks.keys;
  state.signingKid = jwks.signing_kid || jwks.keys[0].kid;
  if (!state.keys.some((k) => k.kid === state.signingKid)) fail(`signing_kid ${state.signingKid} not in ${jwksPath}`);

  const raw = readJson(clientsPath);
  for (const c of Array.isArray(raw) ? raw : raw.clients) {
    if (!c.client_id || !c.client_secret) fail('every client needs client_id and client_secret');
    state.clients.set(c.client_id, c);
  }
}

function saveKeys() {
  writeJsonAtomic(jwksPath, { keys: state.keys, signing_kid: state.signingKid });
}

function signingKey() {
  return state.keys.find((k) => k.kid === state.signingKid);
}

function audienceOf(resource) {
  return resource.startsWith(AUDIENCE_URN) ? resource.slice(AUDIENCE_URN.length) : resource;
}

// --- the oidc-provider instance ----------------------------------------------------------------
// Its keystore is fixed at construction, so key changes build a new instance (same issuer,
// same HTTP server). Storage is oidc-provider's module-level in-memory adapter, shared.

function buildProvider() {
  const provider = new Provider(issuer, {
    clients: [...state.clients.values()].map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
    })),
    jwks: { keys: state.keys },
    cookies: { keys: ['tracegate-test-only-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => `${AUDIENCE_URN}${state.defaultAudience}`,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource, client) {
          const spec = state.clients.get(client.clientId) || {};
          const audience = audienceOf(resource);
          const allowed = spec.audiences;
          if (allowed !== undefined && allowed !== '*'
              && !(Array.isArray(allowed) && (allowed.includes('*') || allowed.includes(audience)))) {
            throw new errors.InvalidTarget(`client ${client.clientId} may not request audience ${audience}`);
          }
          const key = signingKey();
          return {
            // oidc-provider keeps only requested scopes that the resource server lists.
            scope: spec.scope ?? (ctx.oidc.params.scope || ''),
            audience,
            accessTokenTTL: spec.ttl ?? state.ttl,
            accessTokenFormat: spec.token_format || 'jwt',
            jwt: { sign: { alg: key.alg || 'RS256', kid: key.kid } },
          };
        },
      },
    },
    async extraTokenClaims(ctx, token) {
      const spec = state.clients.get(token.clientId);
      if (!spec) return undefined;
      const extra = { ...(spec.claims || {}) };
      if (Object.hasOwn(spec, 'groups')) extra.groups = spec.groups;
      return extra;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc server_error:', err));
  provider.on('grant.error', (ctx, err) => console.error(`oidc grant.error: ${err.message} ${err.error_description || ''}`));
  return { provider, handler: provider.callback() };
}

let current = buildProvider();

// --- main listener (issuer) --------------------------------------------------------------------

const hung = new Set();

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, issuer);
  state.counts[pathname] = (state.counts[pathname] || 0) + 1;
  if (state.mode === '503') {
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
    res.end('{"error":"temporarily_unavailable","error_description":"test provider is down"}');
    return;
  }
  if (state.mode === 'hang') {
    hung.add(res);
    res.on('close', () => hung.delete(res));
    return;
  }
  current.handler(req, res);
});

function listen(srv, p) {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(p, host, () => {
      srv.off('error', reject);
      resolve();
    });
  });
}

async function setMode(mode) {
  if (!['up', 'refuse', '503', 'hang'].includes(mode)) throw new Error(`unknown mode ${mode}`);
  const was = state.mode;
  state.mode = mode;
  for (const res of hung) res.destroy(); // leaving "hang": reset the held connections
  hung.clear();
  if (mode === 'refuse' && server.listening) {
    await new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  } else if (mode !== 'refuse' && !server.listening) {
    await listen(server, port);
  }
  console.error(`oidc mode ${was} -> ${mode}`);
}

// --- admin listener ---------------------------------------------------------------------------

function snapshot() {
  return {
    mode: state.mode,
    issuer,
    signing_kid: state.signingKid,
    kids: state.keys.map((k) => k.kid),
    ttl: state.ttl,
    counts: state.counts,
  };
}

async function admin(method, pathname, body) {
  if (method === 'GET' && pathname === '/state') return snapshot();
  if (method !== 'POST') throw Object.assign(new Error('not found'), { status: 404 });
  switch (pathname) {
    case '/rotate': {
      const jwk = generateJwk(body.alg || 'RS256', body.kid);
      if (state.keys.some((k) => k.kid === jwk.kid)) throw Object.assign(new Error(`kid ${jwk.kid} exists`), { status: 409 });
      const keys = [...state.keys, jwk];
      state.keys = keys;
      state.signingKid = jwk.kid;
      current = buildProvider();
      saveKeys();
      console.error(`oidc rotated: signing kid ${jwk.kid} (${jwk.alg})`);
      return { ...snapshot(), kid: jwk.kid };
    }
    case '/remove-key': {
      const keys = state.keys.filter((k) => k.kid !== body.kid);
      if (keys.length === state.keys.length) throw Object.assign(new Error(`no key ${body.kid}`), { status: 404 });
      if (keys.length === 0) throw Object.assign(new Error('cannot remove the last key'), { status: 409 });
      state.keys = keys;
      if (state.signingKid === body.kid) state.signingKid = keys[keys.length - 1].kid;
      current = buildProvider();
      saveKeys();
      console.error(`oidc removed kid ${body.kid}; signing kid ${state.signingKid}`);
      return snapshot();
    }
    case '/down':
      await setMode(body.mode || 'refuse');
      return snapshot();
    case '/up':
      await setMode('up');
      return snapshot();
    case '/ttl':
      state.ttl = Number(body.ttl);
      return snapshot();
    case '/reset-counts':
      state.counts = {};
      return snapshot();
    default:
      throw Object.assign(new Error('not found'), { status: 404 });
  }
}

const adminServer = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let status = 200;
    let out;
    try {
      const text = Buffer.concat(chunks).toString('utf8');
      out = await admin(req.method, new URL(req.url, 'http://admin').pathname, text ? JSON.parse(text) : {});
    } catch (e) {
      status = e.status || 400;
      out = { error: e.message };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(out));
  });
});

function shutdown(signal) {
  console.error(`oidc provider stopping on ${signal}`);
  for (const res of hung) res.destroy();
  server.closeAllConnections();
  adminServer.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

try {
  await listen(server, port);
  await listen(adminServer, adminPort);
} catch (e) {
  fail(`cannot listen: ${e.message}`);
}
process.stdout.write(`READY issuer=${issuer} admin=http://${host}:${adminPort}\n`);
