#!/usr/bin/env node
// Adversarial JWT forge for tracegate's identity tests. Node's built-in `crypto` only.
// Prints one token on stdout. Exit 2 on bad usage.
//
//   node forge.js --jwks provider-jwks.json --iss http://127.0.0.1:P [options]
//   node forge.js --spec '{"alg":"none","claims":{"aud":null}}' ...   (or --spec - : read stdin)
//   node forge.js --verify [--jwks FILE | --jwks-url URL] [--token T]  (token from stdin if absent)
//   node forge.js --gen-key FILE [--alg ES256] [--kid K]               (a private JWK, e.g. attacker)
//
// Every option is a spec member (--exp-in 5 == {"exp_in": 5}); --spec merges last.
//
// What is signed:
//   base        a token whose header and payload are the starting point (e.g. a real one)
//   key         "real" (default: the provider's current signing key from --jwks), a kid in
//               --jwks, "attacker" (a fresh key), a path to a JWK / JWKS / PEM file, or a JWK
//   alg         default: the key's alg. "none": empty signature. HS256/384/512 with
//               hmac_secret set: key confusion, the secret is the *public* key of `key`:
//   hmac_secret "pem" (SPKI PEM with trailing newline), "pem-nonl", "pkcs1-pem", "der",
//               "jwk" (public JWK JSON), "n" (raw modulus bytes), or {"text": "literal"}
// Header:
//   header      object merged over {alg, typ: "at+jwt", kid}; a null value removes the member
//   kid, typ, jku, x5u, jwk   shortcuts for header members (null removes)
//   embed_jwk   true: header "jwk" = the public half of the signing key
//   raw_header  exact header JSON text (duplicate members etc.); overrides the above
// Claims (defaults: iss, sub/client_id "forged-client", aud "tracegate", groups [], iat,
// exp = iat+300, jti):
//   claims      object merged over the defaults (or over base's payload); null removes
//   iss, aud, sub, client_id, groups, scope  shortcuts for claims
//   exp_in, nbf_in, iat_in   seconds from now (negative = past)
//   pad         add a "pad" claim of that many characters (oversize tokens)
//   raw_payload exact payload JSON text
// After signing:
//   tamper      object merged into the payload after the signature was computed
//   signature   "empty" (keep the dot, drop the bytes), "strip" (two segments only),
//               "bitflip" (flip one bit of the signature), "garbage" (random bytes)

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import {
  b64url, b64urlJson, defaultAlgFor, generateJwk, keyObjectFromJwk, publicJwk, readJson,
  signJws, verifyJws, writeJsonAtomic,
} from './keys.js';

function fail(msg) {
  process.stderr.write(`forge.js: ${msg}\n`);
  process.exit(2);
}

const BOOLEAN_FLAGS = new Set(['verify', 'embed_jwk']);
const JSON_FLAGS = new Set(['header', 'claims', 'tamper', 'groups', 'jwk']);
const NUMBER_FLAGS = new Set(['exp_in', 'nbf_in', 'iat_in', 'pad']);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (!a.startsWith('--')) fail(`unexpected argument ${a}`);
    const name = a.slice(2).replace(/-/g, '_');
    if (BOOLEAN_FLAGS.has(name)) {
      out[name] = true;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) fail(`${a} needs a value`);
    i += 1;
    if (JSON_FLAGS.has(name)) out[name] = JSON.parse(value);
    else if (NUMBER_FLAGS.has(name)) out[name] = Number(value);
    else out[name] = value;
  }
  return out;
}

const readStdin = () => fs.readFileSync(0, 'utf8');

const opts = parseArgs(process.argv.slice(2));
if (opts.spec !== undefined) {
  Object.assign(opts, JSON.parse(opts.spec === '-' ? readStdin() : opts.spec));
  delete opts.spec;
}

// --- key material ------------------------------------------------------------------------------

function providerJwks() {
  if (!opts.jwks) fail('--jwks (the provider\'s private JWKS file) is required for this');
  return readJson(opts.jwks);
}

// A JWK (private when available) from the `key` spec.
function resolveKey(spec) {
  if (spec && typeof spec === 'object') return spec;
  if (spec === undefined || spec === 'real') {
    const jwks = providerJwks();
    const kid = jwks.signing_kid || jwks.keys[0].kid;
    return jwks.keys.find((k) => k.kid === kid);
  }
  if (spec === 'attacker') return generateJwk(opts.alg && !/^(HS|none)/.test(opts.alg) ? opts.alg : 'RS256', 'attacker');
  if (fs.existsSync(spec)) {
    const text = fs.readFileSync(spec, 'utf8');
    if (text.includes('-----BEGIN')) {
      const ko = text.includes('PRIVATE KEY') ? crypto.createPrivateKey(text) : crypto.createPublicKey(text);
      return ko.export({ format: 'jwk' });
    }
    const json = JSON.parse(text);
    if (!Array.isArray(json.keys)) return json;
    const kid = opts.key_kid || json.signing_kid;
    return kid ? json.keys.find((k) => k.kid === kid) : json.keys[0];
  }
  const found = providerJwks().keys.find((k) => k.kid === spec);
  if (!found) fail(`no key "${spec}" (not real/attacker, not a file, not a kid in --jwks)`);
  return found;
}

function hmacSecret(variant, jwk) {
  if (variant && typeof variant === 'object' && 'text' in variant) return Buffer.from(variant.text);
  const pub = crypto.createPublicKey({ key: publicJwk(jwk), format: 'jwk' });
  switch (variant) {
    case 'pem': return Buffer.from(pub.export({ type: 'spki', format: 'pem' }));
    case 'pem-nonl': return Buffer.from(pub.export({ type: 'spki', format: 'pem' }).trimEnd());
    case 'pkcs1-pem': return Buffer.from(pub.export({ type: 'pkcs1', format: 'pem' }));
    case 'der': return pub.export({ type: 'spki', format: 'der' });
    case 'jwk': return Buffer.from(JSON.stringify(publicJwk(jwk)));
    case 'n': return Buffer.from(jwk.n, 'base64url');
    default: return fail(`unknown hmac_secret ${JSON.stringify(variant)}`);
  }
}

// --- JSON helpers ------------------------------------------------------------------------------

function mergeNullDeletes(target, patch) {
  for (const [k, v] of Object.entries(patch || {})) {
    if (v === null) delete target[k];
    else target[k] = v;
  }
  return target;
}

function decodeSegment(seg) {
  return JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
}

// --- modes -------------------------------------------------------------------------------------

async function verify() {
  const token = (opts.token || readStdin()).trim();
  const [h, p, s] = token.split('.');
  const result = { valid: false };
  try {
    result.header = decodeSegment(h);
    result.payload = decodeSegment(p);
    let jwks;
    if (opts.jwks_url) {
      const r = await fetch(opts.jwks_url);
      if (!r.ok) throw new Error(`GET ${opts.jwks_url}: ${r.status}`);
      jwks = await r.json();
    } else {
      jwks = providerJwks();
    }
    const { alg, kid } = result.header;
    const candidates = jwks.keys.filter((k) => (kid === undefined ? true : k.kid === kid));
    if (candidates.length !== 1) throw new Error(`no unique key for kid ${kid}`);
    const jwk = publicJwk(candidates[0]);
    if (jwk.alg && jwk.alg !== alg) throw new Error(`alg ${alg} does not match key alg ${jwk.alg}`);
    result.kid = jwk.kid;
    result.valid = verifyJws(alg, keyObjectFromJwk(jwk), `${h}.${p}`, Buffer.from(s || '', 'base64url'));
    if (!result.valid) result.reason = 'bad signature';
  } catch (e) {
    result.reason = e.message;
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.valid ? 0 : 1);
}

function forge() {
  const now = Math.floor(Date.now() / 1000);
  let baseHeader = {};
  let basePayload;
  if (opts.base) {
    const [h, p] = opts.base.trim().split('.');
    baseHeader = decodeSegment(h);
    basePayload = decodeSegment(p);
  } else {
    basePayload = {
      iss: opts.iss,
      sub: 'forged-client',
      aud: 'tracegate',
      client_id: 'forged-client',
      groups: [],
      iat: now,
      exp: now + 300,
      jti: b64url(crypto.randomBytes(12)),
    };
  }

  let alg = opts.alg;
  const literalSecret = typeof opts.hmac_secret === 'object' && opts.hmac_secret !== null;
  const needsKey = alg !== 'none' && !(alg?.startsWith('HS') && (literalSecret || !opts.hmac_secret));
  let jwk;
  if (needsKey || opts.embed_jwk || opts.key !== undefined) jwk = resolveKey(opts.key);
  if (!alg) alg = defaultAlgFor(jwk);

  // Header
  const header = mergeNullDeletes({ ...baseHeader }, { alg, typ: 'at+jwt', kid: jwk?.kid });
  if (!jwk) delete header.kid;
  for (const m of ['kid', 'typ', 'jku', 'x5u', 'jwk']) {
    if (m in opts) mergeNullDeletes(header, { [m]: opts[m] });
  }
  if (opts.embed_jwk) header.jwk = publicJwk(jwk);
  mergeNullDeletes(header, opts.header);

  // Payload
  const payload = { ...basePayload };
  for (const m of ['iss', 'aud', 'sub', 'client_id', 'groups', 'scope']) {
    if (m in opts) mergeNullDeletes(payload, { [m]: opts[m] });
  }
  if (opts.iat_in !== undefined) payload.iat = now + opts.iat_in;
  if (opts.exp_in !== undefined) payload.exp = now + opts.exp_in;
  if (opts.nbf_in !== undefined) payload.nbf = now + opts.nbf_in;
  mergeNullDeletes(payload, opts.claims);
  if (opts.pad) payload.pad = 'A'.repeat(opts.pad);

  const h64 = opts.raw_header !== undefined ? b64url(opts.raw_header) : b64urlJson(header);
  const p64 = opts.raw_payload !== undefined ? b64url(opts.raw_payload) : b64urlJson(payload);
  const signingInput = `${h64}.${p64}`;
  const signingAlg = alg; // what actually signs, whatever header.alg claims

  let secretOrKey;
  if (signingAlg === 'none') secretOrKey = null;
  else if (signingAlg.startsWith('HS')) {
    if (opts.hmac_secret === undefined) fail(`${signingAlg} needs hmac_secret`);
    secretOrKey = hmacSecret(opts.hmac_secret, jwk);
  } else {
    if (!jwk.d) fail(`key ${jwk.kid || ''} has no private part; cannot sign ${signingAlg}`);
    secretOrKey = keyObjectFromJwk(jwk);
  }
  let sig = signJws(signingAlg, secretOrKey, signingInput);

  let outPayload = p64;
  if (opts.tamper) outPayload = b64urlJson(mergeNullDeletes({ ...payload }, opts.tamper));

  switch (opts.signature) {
    case undefined: break;
    case 'empty': sig = Buffer.alloc(0); break;
    case 'strip': process.stdout.write(`${h64}.${outPayload}\n`); return;
    case 'bitflip': sig = Buffer.from(sig); sig[sig.length >> 1] ^= 0x01; break;
    case 'garbage': sig = crypto.randomBytes(sig.length || 256); break;
    default: fail(`unknown signature mode ${opts.signature}`);
  }
  process.stdout.write(`${h64}.${outPayload}.${b64url(sig)}\n`);
}

if (opts.gen_key) {
  const jwk = generateJwk(opts.alg || 'RS256', opts.kid);
  writeJsonAtomic(opts.gen_key, jwk);
  process.stdout.write(`${jwk.kid}\n`);
} else if (opts.verify) {
  await verify();
} else {
  forge();
}
