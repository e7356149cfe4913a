import { createDecipheriv, createHash, createHmac, createPrivateKey, pbkdf2Sync, timingSafeEqual, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { MidcertError, type ErrorCode } from '../common/errors.js';
import { LIMITS, assertSize } from '../common/limits.js';
import { fromDerBuffer, latin1, toDer } from './asn1.js';
import { parseCertificate, type Certificate } from './certificate.js';
import { publicKeysEqual } from './keys.js';

/**
 * PKCS#12 / PFX reader (RFC 7292), written over forge.asn1 with node:crypto doing the crypto.
 *
 * node-forge 1.4.3 can read both legacy (RC2/3DES, SHA-1 MAC) and modern (PBES2 AES-256,
 * SHA-256 MAC) files, but it cannot bound iteration counts before deriving keys, runs PBKDF2 in
 * JavaScript (~150 ms per OpenSSL file, more for Java's), re-encodes certificates instead of
 * keeping their bytes, and tries only one encoding of an empty password. So we walk the structure
 * ourselves; forge supplies the BER parser and RC2, which OpenSSL 3 (and so Node) keeps only in
 * its legacy provider.
 */

const asn1 = forge.asn1;
type Node = forge.asn1.Asn1;

export interface Pkcs12Key {
  key: KeyObject;
  friendlyName?: string;
  /** localKeyId attribute, lower-case hex. */
  localKeyId?: string;
}

export interface Pkcs12Certificate {
  cert: Certificate;
  friendlyName?: string;
  localKeyId?: string;
  /** OIDs of Java's trusted-key-usage attribute: present only on keytool trusted-certificate entries. */
  trustedKeyUsage?: string[];
}

export interface Pkcs12Contents {
  keys: Pkcs12Key[];
  certificates: Pkcs12Certificate[];
}

/** Size bounds; a keystore reader passes its own, larger ones (a truststore holds many certificates). */
export interface Pkcs12Bounds {
  maxBytes: number;
  /** Most certificates, and most keys, one file may hold. */
  maxItems: number;
}

const PFX_BOUNDS: Pkcs12Bounds = { maxBytes: LIMITS.pfxBytes, maxItems: LIMITS.certsPerInput };

const OIDS = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  keyBag: '1.2.840.113549.1.12.10.1.1',
  shroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  safeContentsBag: '1.2.840.113549.1.12.10.1.6',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  javaTrustedKeyUsage: '2.16.840.1.113894.746875.1.1',
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  pbmac1: '1.2.840.113549.1.5.14',
} as const;

type HashName = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
/** Output size u and block size v of each hash, as the RFC 7292 KDF needs them. */
const HASH_SIZES: Record<HashName, { u: number; v: number }> = {
  sha1: { u: 20, v: 64 }, sha224: { u: 28, v: 64 }, sha256: { u: 32, v: 64 }, sha384: { u: 48, v: 128 }, sha512: { u: 64, v: 128 },
};
const DIGEST_OIDS: Record<string, HashName> = {
  '1.3.14.3.2.26': 'sha1', '2.16.840.1.101.3.4.2.4': 'sha224', '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512',
};
const PRF_OIDS: Record<string, HashName> = {
  '1.2.840.113549.2.7': 'sha1', '1.2.840.113549.2.8': 'sha224', '1.2.840.113549.2.9': 'sha256',
  '1.2.840.113549.2.10': 'sha384', '1.2.840.113549.2.11': 'sha512',
};
/** PBES2 encryption schemes: node cipher name and key size. */
const PBES2_CIPHERS: Record<string, { cipher: string; keyLength: number }> = {
  '2.16.840.1.101.3.4.1.2': { cipher: 'aes-128-cbc', keyLength: 16 },
  '2.16.840.1.101.3.4.1.22': { cipher: 'aes-192-cbc', keyLength: 24 },
  '2.16.840.1.101.3.4.1.42': { cipher: 'aes-256-cbc', keyLength: 32 },
  '1.2.840.113549.3.7': { cipher: 'des-ede3-cbc', keyLength: 24 },
};
/** RFC 7292 appendix C algorithms (SHA-1 KDF). RC4 is left out: no real export uses it. */
const PKCS12_PBE: Record<string, { cipher: string; keyLength: number }> = {
  '1.2.840.113549.1.12.1.3': { cipher: 'des-ede3-cbc', keyLength: 24 },
  '1.2.840.113549.1.12.1.4': { cipher: 'des-ede-cbc', keyLength: 16 },
  '1.2.840.113549.1.12.1.5': { cipher: 'rc2-128', keyLength: 16 },
  '1.2.840.113549.1.12.1.6': { cipher: 'rc2-40', keyLength: 5 },
};

/**
 * The RFC 7292 KDF loops over node:crypto hashes in JavaScript, about ten times slower per round
 * than native PBKDF2, so its rounds cost ten units of the per-file LIMITS.kdfIterations budget.
 * Real files use 2,000 (Windows, OpenSSL) to 100,000 (older Java) rounds per derivation.
 */
const PKCS12_KDF_ROUND_COST = 10;
const MAX_NESTING = 4;

/** The two password encodings PKCS#12 uses: BMPString for its own KDF, UTF-8 for PBKDF2. */
interface Secret {
  bmp: Buffer;
  utf8: Buffer;
}

interface Context {
  secret: Secret;
  /** True once the MAC verified: then decrypted garbage means corruption, not a wrong password. */
  verified: boolean;
  budget: { left: number };
  maxItems: number;
  out: Pkcs12Contents;
}

/** Errors that keep their code through the wrappers: the rest become PKCS12_MALFORMED. */
const PASS_THROUGH = new Set<ErrorCode>(['PKCS12_PASSWORD', 'INPUT_TOO_LARGE']);

/**
 * Reads a PKCS#12/PFX file. Throws PKCS12_PASSWORD for a wrong password, PKCS12_MALFORMED for
 * anything unreadable, INPUT_TOO_LARGE past LIMITS.pfxBytes or the key-derivation work bound.
 */
export function readPkcs12(bytes: Uint8Array, password: string, bounds: Pkcs12Bounds = PFX_BOUNDS): Pkcs12Contents {
  assertSize(bytes, bounds.maxBytes, 'PKCS#12 file');
  try {
    return readPfx(Buffer.from(bytes), password, bounds.maxItems);
  } catch (err) {
    if (err instanceof MidcertError && (PASS_THROUGH.has(err.code) || err.code === 'PKCS12_MALFORMED')) throw err;
    // forge's and the runtime's text ("Too few bytes to read ASN.1 value.") is kept as the cause only.
    throw new MidcertError('PKCS12_MALFORMED', 'the PKCS#12 file is truncated or damaged, or is not a PKCS#12/PFX file', { cause: err });
  }
}

/** True when `key` is the private half of the certificate's public key. */
export function keyMatchesCertificate(key: KeyObject, cert: Certificate): boolean {
  return publicKeysEqual(key, cert.publicKey);
}

/**
 * The single key of a PFX and the certificate holding its public key (what `bundle build --pfx`
 * starts from). Throws PKCS12_CONTENT when there is not exactly one key or no certificate matches.
 */
export function matchKeyToCertificate(contents: Pkcs12Contents): { key: KeyObject; leaf: Certificate } {
  if (contents.keys.length !== 1) {
    throw new MidcertError('PKCS12_CONTENT', `the PKCS#12 file holds ${contents.keys.length} private keys; expected exactly one`);
  }
  const entry = contents.keys[0] as Pkcs12Key;
  const matching = contents.certificates.filter((c) => keyMatchesCertificate(entry.key, c.cert));
  // Several certificates for one key happen after a re-issue: prefer the one the key names.
  const leaf = matching.find((c) => entry.localKeyId !== undefined && c.localKeyId === entry.localKeyId) ?? matching[0];
  if (!leaf) throw new MidcertError('PKCS12_CONTENT', 'no certificate in the PKCS#12 file matches its private key');
  return { key: entry.key, leaf: leaf.cert };
}

function readPfx(der: Buffer, password: string, maxItems: number): Pkcs12Contents {
  const [version, authSafe, macData] = sequence(fromDerBuffer(der), 'PFX', 2);
  if (integer(version, 'PFX version') !== 3) fail('only PKCS#12 version 3 is supported');
  const [contentType, content] = sequence(authSafe, 'authSafe', 2);
  if (oid(contentType) !== OIDS.data) fail('only password-integrity PKCS#12 files are supported (authSafe is not Data)');
  const authSafeBytes = octets(explicitChild(content, 'authSafe content'), 'authSafe content');

  const budget = { left: LIMITS.kdfIterations };
  const candidates = passwordForms(password);
  if (macData) {
    const secret = candidates.find((s) => macVerifies(macData, authSafeBytes, s, budget));
    if (!secret) throw new MidcertError('PKCS12_PASSWORD', 'the PKCS#12 integrity check failed: wrong password?');
    return readAuthenticatedSafe(authSafeBytes, { secret, verified: true, budget, maxItems, out: { keys: [], certificates: [] } });
  }
  // No MAC (openssl -nomac): use the first password encoding that decrypts.
  let wrongPassword: unknown;
  for (const secret of candidates) {
    try {
      return readAuthenticatedSafe(authSafeBytes, { secret, verified: false, budget, maxItems, out: { keys: [], certificates: [] } });
    } catch (err) {
      if (!(err instanceof MidcertError && err.code === 'PKCS12_PASSWORD')) throw err;
      wrongPassword = err;
    }
  }
  throw wrongPassword;
}

/**
 * An empty password has two encodings in the wild: an empty BMPString with its two-byte
 * terminator (what RFC 7292 says) and no bytes at all (OpenSSL's NULL password). Try both.
 */
function passwordForms(password: string): Secret[] {
  const utf8 = Buffer.from(password, 'utf8');
  const bmp = Buffer.concat([Buffer.from(password, 'utf16le').swap16(), Buffer.alloc(2)]);
  return password === '' ? [{ bmp, utf8 }, { bmp: Buffer.alloc(0), utf8 }] : [{ bmp, utf8 }];
}

function macVerifies(macData: Node, content: Buffer, secret: Secret, budget: { left: number }): boolean {
  const [digestInfo, salt, macIterations] = sequence(macData, 'MacData', 2);
  const [algorithm, digest] = sequence(digestInfo, 'MAC DigestInfo', 2);
  const algorithmOid = oid(sequence(algorithm, 'MAC algorithm', 1)[0]);
  if (algorithmOid === OIDS.pbmac1) fail('PBMAC1 integrity (RFC 9579) is not supported');
  const hash = DIGEST_OIDS[algorithmOid] ?? fail(`unsupported MAC digest ${algorithmOid}`);
  const rounds = macIterations ? iterations(macIterations, 'MAC iterations') : 1;
  const key = pkcs12Kdf(hash, secret.bmp, octets(salt, 'MAC salt'), 3, rounds, HASH_SIZES[hash].u, budget);
  const expected = octets(digest, 'MAC digest');
  const actual = createHmac(hash, key).update(content).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

function readAuthenticatedSafe(bytes: Buffer, ctx: Context): Pkcs12Contents {
  for (const contentInfo of sequence(fromDerBuffer(bytes), 'AuthenticatedSafe')) {
    const [contentType, content] = sequence(contentInfo, 'ContentInfo', 1);
    const type = oid(contentType);
    if (type === OIDS.data) {
      readSafeContents(octets(explicitChild(content, 'Data'), 'Data'), ctx, 0);
    } else if (type === OIDS.encryptedData) {
      const plain = decryptEncryptedData(explicitChild(content, 'EncryptedData'), ctx);
      if (plain) readDecrypted(ctx, 'certificates', () => readSafeContents(plain, ctx, 0));
    } else {
      fail(`unsupported PKCS#12 content type ${type} (public-key privacy mode?)`);
    }
  }
  return ctx.out;
}

function decryptEncryptedData(node: Node, ctx: Context): Buffer | undefined {
  const [, encryptedContentInfo] = sequence(node, 'EncryptedData', 2);
  const [, algorithm, encrypted] = sequence(encryptedContentInfo, 'EncryptedContentInfo', 2);
  // encryptedContent is [0] IMPLICIT OCTET STRING (primitive in DER, chunked in BER), optional.
  if (!encrypted) return undefined;
  if (encrypted.tagClass !== asn1.Class.CONTEXT_SPECIFIC || encrypted.type !== 0) fail('encryptedContent is not [0] tagged');
  return decrypt(algorithm, octets(encrypted, 'encrypted content', true), ctx);
}

function readSafeContents(bytes: Buffer, ctx: Context, depth: number): void {
  if (depth > MAX_NESTING) fail('SafeContents nested too deeply');
  for (const bag of sequence(fromDerBuffer(bytes), 'SafeContents')) {
    const [bagId, bagValue, attributes] = sequence(bag, 'SafeBag', 2);
    const type = oid(bagId);
    const value = explicitChild(bagValue, 'SafeBag value');
    if (type === OIDS.certBag) readCertBag(value, readAttributes(attributes), ctx);
    else if (type === OIDS.keyBag) addKey(toDer(value), readAttributes(attributes), ctx);
    else if (type === OIDS.shroudedKeyBag) readShroudedKeyBag(value, readAttributes(attributes), ctx);
    else if (type === OIDS.safeContentsBag) readSafeContents(toDer(value), ctx, depth + 1);
    // CRL and secret bags carry nothing a MID needs.
  }
}

function readCertBag(value: Node, attributes: BagAttributes, ctx: Context): void {
  const [certId, certValue] = sequence(value, 'CertBag', 2);
  if (oid(certId) !== OIDS.x509Certificate) return; // SDSI certificates: not X.509, not ours
  if (ctx.out.certificates.length >= ctx.maxItems) {
    throw new MidcertError('INPUT_TOO_LARGE', `the PKCS#12 file holds more than ${ctx.maxItems} certificates`);
  }
  // The OCTET STRING holds the certificate's own DER: keep those bytes, never re-encode.
  const der = octets(explicitChild(certValue, 'CertBag value'), 'certificate');
  ctx.out.certificates.push({ cert: parseCertificate(der), ...attributes });
}

function readShroudedKeyBag(value: Node, attributes: BagAttributes, ctx: Context): void {
  const [algorithm, encrypted] = sequence(value, 'EncryptedPrivateKeyInfo', 2);
  const plain = decrypt(algorithm, octets(encrypted, 'encrypted key'), ctx);
  readDecrypted(ctx, 'private key', () => addKey(plain, attributes, ctx));
}

function addKey(privateKeyInfo: Buffer, attributes: BagAttributes, ctx: Context): void {
  if (ctx.out.keys.length >= ctx.maxItems) {
    throw new MidcertError('INPUT_TOO_LARGE', `the PKCS#12 file holds more than ${ctx.maxItems} keys`);
  }
  // node:crypto reads RSA and EC PrivateKeyInfo alike (forge cannot turn EC into a key).
  const key = createPrivateKey({ key: privateKeyInfo, format: 'der', type: 'pkcs8' });
  const entry: Pkcs12Key = { key };
  if (attributes.friendlyName !== undefined) entry.friendlyName = attributes.friendlyName;
  if (attributes.localKeyId !== undefined) entry.localKeyId = attributes.localKeyId;
  ctx.out.keys.push(entry);
}

/** Without a verified MAC, a decryption that yields garbage most likely used a wrong password. */
function readDecrypted(ctx: Context, what: string, read: () => void): void {
  try {
    read();
  } catch (err) {
    if (ctx.verified || (err instanceof MidcertError && PASS_THROUGH.has(err.code))) throw err;
    throw new MidcertError('PKCS12_PASSWORD', `cannot read the decrypted ${what}: wrong password?`, { cause: err });
  }
}

type BagAttributes = Omit<Pkcs12Certificate, 'cert'>;

function readAttributes(set: Node | undefined): BagAttributes {
  const result: BagAttributes = {};
  for (const attribute of set ? children(set, 'bag attributes') : []) {
    const [type, values] = sequence(attribute, 'bag attribute', 2);
    const first = children(values, 'attribute values')[0];
    const id = oid(type);
    if (id === OIDS.friendlyName && first) result.friendlyName = text(first);
    else if (id === OIDS.localKeyId && first) result.localKeyId = octets(first, 'localKeyId').toString('hex');
    else if (id === OIDS.javaTrustedKeyUsage) result.trustedKeyUsage = children(values, 'trusted key usage').map(oid);
  }
  return result;
}

function text(node: Node): string {
  // forge already decodes BMPString (what the standard says) to a JS string; others are bytes.
  if (typeof node.value !== 'string') fail('friendlyName is not a string');
  return node.type === asn1.Type.BMPSTRING ? node.value : Buffer.from(node.value, 'latin1').toString('utf8');
}

function decrypt(algorithm: Node, data: Buffer, ctx: Context): Buffer {
  const [algorithmId, params] = sequence(algorithm, 'encryption algorithm', 1);
  const id = oid(algorithmId);
  const legacy = PKCS12_PBE[id];
  if (legacy) {
    const [salt, count] = sequence(params, 'PBE parameters', 2);
    const rounds = iterations(count, 'PBE iterations');
    const saltBytes = octets(salt, 'PBE salt');
    const key = pkcs12Kdf('sha1', ctx.secret.bmp, saltBytes, 1, rounds, legacy.keyLength, ctx.budget);
    const iv = pkcs12Kdf('sha1', ctx.secret.bmp, saltBytes, 2, rounds, 8, ctx.budget);
    return runCipher(legacy.cipher, key, iv, data);
  }
  if (id === OIDS.pbes2) return decryptPbes2(params, data, ctx);
  return fail(`unsupported encryption algorithm ${id}`);
}

function decryptPbes2(params: Node | undefined, data: Buffer, ctx: Context): Buffer {
  const [kdf, scheme] = sequence(params, 'PBES2 parameters', 2);
  const [kdfId, kdfParams] = sequence(kdf, 'PBES2 key derivation', 2);
  if (oid(kdfId) !== OIDS.pbkdf2) fail(`unsupported PBES2 key derivation ${oid(kdfId)}`);
  const [salt, count, ...rest] = sequence(kdfParams, 'PBKDF2 parameters', 2);
  const keyLengthNode = rest.find((n) => n.type === asn1.Type.INTEGER);
  const prfNode = rest.find((n) => n.type === asn1.Type.SEQUENCE);
  const prfId = prfNode ? oid(sequence(prfNode, 'PBKDF2 PRF', 1)[0]) : '1.2.840.113549.2.7';
  const prf = PRF_OIDS[prfId] ?? fail(`unsupported PBKDF2 PRF ${prfId}`);
  const [schemeId, iv] = sequence(scheme, 'PBES2 encryption scheme', 2);
  const cipher = PBES2_CIPHERS[oid(schemeId)] ?? fail(`unsupported PBES2 cipher ${oid(schemeId)}`);
  if (keyLengthNode && integer(keyLengthNode, 'PBKDF2 key length') !== cipher.keyLength) fail('PBKDF2 key length does not fit the cipher');
  const rounds = iterations(count, 'PBKDF2 iterations');
  spend(ctx.budget, rounds);
  const key = pbkdf2Sync(ctx.secret.utf8, octets(salt, 'PBKDF2 salt'), rounds, cipher.keyLength, prf);
  return runCipher(cipher.cipher, key, octets(iv, 'PBES2 IV'), data);
}

/** CBC decryption; only a padding failure (the usual sign of a wrong key) is PKCS12_PASSWORD. */
function runCipher(name: string, key: Buffer, iv: Buffer, data: Buffer): Buffer {
  // In CBC the IV is one block: 8 bytes for DES and RC2, 16 for AES.
  const blockSize = name.startsWith('aes') ? 16 : 8;
  if (iv.length !== blockSize) fail(`${name} IV is ${iv.length} bytes`);
  if (data.length === 0 || data.length % blockSize !== 0) fail('ciphertext is not a whole number of blocks');
  const plain = name.startsWith('rc2-') ? rc2Decrypt(key, Number(name.slice(4)), iv, data) : createDecipheriv(name, key, iv).setAutoPadding(false).update(data);
  const pad = plain[plain.length - 1] as number;
  if (pad < 1 || pad > blockSize || !plain.subarray(plain.length - pad).every((b) => b === pad)) {
    throw new MidcertError('PKCS12_PASSWORD', 'cannot decrypt the PKCS#12 contents: wrong password?');
  }
  return plain.subarray(0, plain.length - pad);
}

/** RC2-CBC via forge: Node's OpenSSL 3 has RC2 only in the legacy provider, which Node leaves off. */
function rc2Decrypt(key: Buffer, effectiveBits: number, iv: Buffer, data: Buffer): Buffer {
  const cipher = forge.rc2.createDecryptionCipher(latin1(key), effectiveBits);
  cipher.start(latin1(iv));
  cipher.update(forge.util.createBuffer(latin1(data)));
  cipher.finish(() => true); // leave the padding in: runCipher checks it strictly
  return Buffer.from(cipher.output.getBytes(), 'latin1');
}

/** RFC 7292 appendix B.2: derives key (id 1), IV (id 2) or MAC key (id 3) material. */
function pkcs12Kdf(hash: HashName, password: Buffer, salt: Buffer, id: 1 | 2 | 3, rounds: number, size: number, budget: { left: number }): Buffer {
  const { u, v } = HASH_SIZES[hash];
  const blocks = Math.ceil(size / u);
  spend(budget, rounds * blocks * PKCS12_KDF_ROUND_COST);
  // I = S || P, each repeated to a whole number of v-byte blocks (an empty one stays empty).
  const fill = (bytes: Buffer): Buffer => (bytes.length ? Buffer.alloc(v * Math.ceil(bytes.length / v), bytes) : Buffer.alloc(0));
  const input = Buffer.concat([fill(salt), fill(password)]);
  const diversifier = Buffer.alloc(v, id);
  const out: Buffer[] = [];
  for (let block = 0; block < blocks; block++) {
    let a = createHash(hash).update(diversifier).update(input).digest();
    for (let r = 1; r < rounds; r++) a = createHash(hash).update(a).digest();
    out.push(a);
    // I_j = (I_j + B + 1) mod 2^(8v) for each v-byte block of I, where B is A repeated to v bytes.
    const b = Buffer.alloc(v, a);
    for (let j = 0; j < input.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = (input[j + k] as number) + (b[k] as number) + carry;
        input[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(out).subarray(0, size);
}

/** Refuses a key derivation before running it when the file's work budget would be exceeded. */
function spend(budget: { left: number }, cost: number): void {
  if (cost > budget.left) {
    throw new MidcertError('INPUT_TOO_LARGE', `the PKCS#12 file asks for more key-derivation iterations than the limit of ${LIMITS.kdfIterations}`);
  }
  budget.left -= cost;
}

// ---- small readers over forge.asn1 nodes; every mismatch is PKCS12_MALFORMED ----

function fail(message: string): never {
  throw new MidcertError('PKCS12_MALFORMED', `malformed PKCS#12: ${message}`);
}

function children(node: Node | undefined, what: string): Node[] {
  if (!node || !Array.isArray(node.value)) fail(`${what} is not a constructed value`);
  return node.value;
}

/** The elements of a SEQUENCE, at least `min` of them (later ones may be undefined). */
function sequence(node: Node | undefined, what: string, min = 0): Node[] {
  if (!node || node.tagClass !== asn1.Class.UNIVERSAL || node.type !== asn1.Type.SEQUENCE) fail(`${what} is not a SEQUENCE`);
  const items = children(node, what);
  if (items.length < min) fail(`${what} has too few elements`);
  return items;
}

/** The single child of an [0] EXPLICIT wrapper. */
function explicitChild(node: Node | undefined, what: string): Node {
  if (!node || node.tagClass !== asn1.Class.CONTEXT_SPECIFIC || node.type !== 0) fail(`${what} is not [0] tagged`);
  return children(node, what)[0] ?? fail(`${what} is empty`);
}

function oid(node: Node | undefined): string {
  if (!node || node.tagClass !== asn1.Class.UNIVERSAL || node.type !== asn1.Type.OID || typeof node.value !== 'string') fail('expected an OBJECT IDENTIFIER');
  return asn1.derToOid(node.value);
}

/** OCTET STRING bytes; BER may chunk them into a constructed string. `implicit` allows an [n] tag. */
function octets(node: Node | undefined, what: string, implicit = false): Buffer {
  const tagOk = node && (implicit || (node.tagClass === asn1.Class.UNIVERSAL && node.type === asn1.Type.OCTETSTRING));
  if (!node || !tagOk) fail(`${what} is not an OCTET STRING`);
  if (typeof node.value === 'string') return Buffer.from(node.value, 'latin1');
  return Buffer.concat(node.value.map((chunk) => octets(chunk, what)));
}

/**
 * A non-negative INTEGER (versions, iteration counts, key lengths). Values wider than 48 bits
 * read as Infinity, so an absurd iteration count fails the work budget instead of overflowing.
 */
function integer(node: Node | undefined, what: string): number {
  if (!node || node.tagClass !== asn1.Class.UNIVERSAL || node.type !== asn1.Type.INTEGER || typeof node.value !== 'string') fail(`${what} is not an INTEGER`);
  const bytes = Buffer.from(node.value, 'latin1');
  if (bytes.length === 0 || ((bytes[0] as number) & 0x80) !== 0) fail(`${what} is negative or empty`);
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  const significant = bytes.subarray(start);
  if (significant.length > 6) return Infinity;
  return significant.length === 0 ? 0 : significant.readUIntBE(0, significant.length);
}

function iterations(node: Node | undefined, what: string): number {
  const count = integer(node, what);
  if (count < 1) fail(`${what} must be at least 1`);
  return count;
}
