// JWK helpers shared by provider.js and forge.js. Node's built-in `crypto` only.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const b64url = (buf) => Buffer.from(buf).toString('base64url');
export const b64urlJson = (obj) => b64url(JSON.stringify(obj));

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

// Which key type / curve an algorithm needs.
export function keyParamsFor(alg) {
  if (/^(RS|PS)(256|384|512)$/.test(alg)) return { type: 'rsa', opts: { modulusLength: 2048 } };
  if (alg === 'ES256') return { type: 'ec', opts: { namedCurve: 'P-256' } };
  if (alg === 'ES384') return { type: 'ec', opts: { namedCurve: 'P-384' } };
  if (alg === 'ES512') return { type: 'ec', opts: { namedCurve: 'P-521' } };
  if (alg === 'EdDSA') return { type: 'ed25519', opts: {} };
  throw new Error(`cannot generate a key for alg ${alg}`);
}

// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
export function thumbprint(jwk) {
  const required = {
    RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], oct: ['k', 'kty'],
  }[jwk.kty];
  if (!required) throw new Error(`unknown kty ${jwk.kty}`);
  const canonical = `{${required.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(',')}}`;
  return b64url(crypto.createHash('sha256').update(canonical).digest());
}

// A fresh private JWK with kid (thumbprint unless given), alg and use=sig.
export function generateJwk(alg = 'RS256', kid = undefined) {
  const { type, opts } = keyParamsFor(alg);
  const { privateKey } = crypto.generateKeyPairSync(type, opts);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: kid || thumbprint(jwk), alg, use: 'sig' };
}

export function publicJwk(jwk) {
  const pub = { ...jwk };
  for (const m of PRIVATE_MEMBERS) delete pub[m];
  return pub;
}

export function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// Write-then-rename so a concurrent reader (forge.js) never sees half a file.
export function writeJsonAtomic(file, value) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

// Hash for the RSA / ECDSA algorithms; null for EdDSA (the curve fixes it).
function hashOf(alg) {
  if (alg === 'EdDSA') return null;
  const bits = alg.slice(2);
  if (!['256', '384', '512'].includes(bits)) throw new Error(`unsupported alg ${alg}`);
  return `sha${bits}`;
}

function asymmetricOptions(alg, key) {
  if (alg.startsWith('PS')) {
    return { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 };
  }
  if (alg.startsWith('ES')) return { key, dsaEncoding: 'ieee-p1363' };
  return key;
}

// JWS signature over `data` (the ASCII "header.payload"). `key`: a KeyObject, or for HS* a
// Buffer/string secret.
export function signJws(alg, key, data) {
  if (alg === 'none') return Buffer.alloc(0);
  if (/^HS(256|384|512)$/.test(alg)) {
    return crypto.createHmac(`sha${alg.slice(2)}`, key).update(data).digest();
  }
  return crypto.sign(hashOf(alg), Buffer.from(data), asymmetricOptions(alg, key));
}

export function verifyJws(alg, key, data, signature) {
  if (!/^(RS|PS|ES)(256|384|512)$|^EdDSA$/.test(alg)) {
    throw new Error(`refusing to verify alg ${alg} (asymmetric algorithms only)`);
  }
  return crypto.verify(hashOf(alg), Buffer.from(data), asymmetricOptions(alg, key), signature);
}

export function keyObjectFromJwk(jwk) {
  return jwk.d ? crypto.createPrivateKey({ key: jwk, format: 'jwk' })
    : crypto.createPublicKey({ key: jwk, format: 'jwk' });
}

// The algorithm a key signs with when the caller does not say.
export function defaultAlgFor(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'OKP') return 'EdDSA';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  throw new Error(`no default alg for kty ${jwk.kty}`);
}
