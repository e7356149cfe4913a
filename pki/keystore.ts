import { createHash, createPrivateKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { decrypt as recoverJksKey, parseJks } from 'jks-js';
import { MidcertError } from '../common/errors.js';
import { LIMITS, assertSize } from '../common/limits.js';
import { parseCertificate, summarize, type Certificate } from './certificate.js';
import { buildChain } from './chain.js';
import { keyMatchesCertificate, readPkcs12, type Pkcs12Certificate, type Pkcs12Contents } from './pkcs12.js';

export type KeystoreType = 'JKS' | 'PKCS12';
export type KeystoreEntryKind = 'PrivateKeyEntry' | 'trustedCertEntry';

export interface KeystoreEntry {
  alias: string;
  kind: KeystoreEntryKind;
  /** Leaf first. A trusted entry holds its one certificate. */
  chain: Certificate[];
  privateKey?: KeyObject;
  created?: Date;
}

export interface Keystore {
  type: KeystoreType;
  entries: KeystoreEntry[];
}

/** The `--json` shape of a keystore: an external contract, keep it exact. */
export interface KeystoreJson {
  type: KeystoreType;
  entries: { alias: string; kind: KeystoreEntryKind; chain: KeystoreCertJson[] }[];
}

export interface KeystoreCertJson {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  sha256: string;
}

const JKS_MAGIC = 0xfeedfeed;
const JCEKS_MAGIC = 0xcececece;
/**
 * jks-js recovers a key with one Buffer.concat per 20 bytes, quadratic in the key's size; a real
 * PKCS#8 key (RSA-16384 included) is under 10 KiB, so a bigger one is refused before it runs.
 */
const MAX_PROTECTED_KEY_BYTES = 64 * 1024;
/**
 * Certificates in one keystore. A truststore (a cacerts copy) holds ~150, more than the
 * LIMITS.certsPerInput meant for one bundle; this keeps parsing work bounded.
 */
const MAX_KEYSTORE_CERTIFICATES = 4096;

/** Which keystore format the bytes are, by magic number. Throws KEYSTORE_MALFORMED otherwise. */
export function detectKeystoreType(bytes: Uint8Array): KeystoreType {
  const magic = bytes.length >= 4 ? Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32BE(0) : -1;
  if (magic === JKS_MAGIC) return 'JKS';
  if (magic === JCEKS_MAGIC) {
    throw new MidcertError('KEYSTORE_MALFORMED', 'JCEKS keystores are not supported; convert it with keytool -importkeystore -deststoretype PKCS12');
  }
  if (bytes[0] === 0x30) return 'PKCS12'; // a DER SEQUENCE: the PFX
  throw new MidcertError('KEYSTORE_MALFORMED', 'not a JKS or PKCS12 keystore');
}

/**
 * Reads a JKS or PKCS12 keystore, checking its integrity with `storepass` and decrypting private
 * keys with it too (the MID protects its key with the store password). Throws KEYSTORE_PASSWORD
 * or KEYSTORE_MALFORMED, or INPUT_TOO_LARGE past LIMITS.keystoreBytes.
 */
export function readKeystore(bytes: Uint8Array, storepass: string): Keystore {
  assertSize(bytes, LIMITS.keystoreBytes, 'keystore');
  const type = detectKeystoreType(bytes);
  return type === 'JKS' ? readJks(Buffer.from(bytes), storepass) : readPkcs12Keystore(bytes, storepass);
}

/** Java compares aliases case-insensitively (it lower-cases them in English locale). */
export function findEntry(ks: Keystore, alias: string): KeystoreEntry | undefined {
  const wanted = alias.toLowerCase();
  return ks.entries.find((e) => e.alias.toLowerCase() === wanted);
}

export function keystoreToJson(ks: Keystore): KeystoreJson {
  return {
    type: ks.type,
    entries: ks.entries.map((e) => ({ alias: e.alias, kind: e.kind, chain: e.chain.map(certJson) })),
  };
}

function certJson(cert: Certificate): KeystoreCertJson {
  const s = summarize(cert);
  return { subject: s.subject, issuer: s.issuer, serial: s.serial, notBefore: s.notBefore, notAfter: s.notAfter, sha256: s.sha256 };
}

// ---- JKS ----

type JksEntry = ReturnType<typeof parseJks>[number];

/**
 * jks-js checks the keystore digest only for a non-empty password, and reads past the end of a
 * cut-off file without noticing (its reads clamp). So we let it parse the structure without a
 * password, check that the entries account for every byte up to the 20-byte digest (else the file
 * is truncated or padded: KEYSTORE_MALFORMED), and then verify the digest ourselves for every
 * password, the empty one included, as Java does when it is given one: an empty storepass never
 * reads an unverified keystore.
 */
function readJks(bytes: Buffer, storepass: string): Keystore {
  let parsed: JksEntry[];
  try {
    parsed = parseJks(bytes, '');
  } catch (err) {
    throw malformed(err);
  }
  if (jksLength(parsed, bytes.readUInt32BE(4)) !== bytes.length) {
    throw new MidcertError('KEYSTORE_MALFORMED', 'the JKS keystore is truncated or has trailing bytes');
  }
  if (!jksDigestMatches(bytes, storepass)) throw wrongStorePassword();
  const certificates = parsed.reduce((n, e) => n + ('chain' in e ? e.chain.length : 1), 0);
  if (certificates > MAX_KEYSTORE_CERTIFICATES) {
    throw new MidcertError('INPUT_TOO_LARGE', `the keystore holds ${certificates} certificates; the limit is ${MAX_KEYSTORE_CERTIFICATES}`);
  }
  const entries = parsed.map((entry): KeystoreEntry => {
    const created = Number.isNaN(entry.date.getTime()) ? {} : { created: entry.date };
    if (!('protectedPrivateKey' in entry)) {
      return { alias: entry.alias, kind: 'trustedCertEntry', chain: [jksCertificate(entry.cert, entry.alias)], ...created };
    }
    const chain = entry.chain.map((c) => jksCertificate(c, entry.alias));
    return { alias: entry.alias, kind: 'PrivateKeyEntry', chain, privateKey: recoverKey(entry.protectedPrivateKey, storepass, entry.alias), ...created };
  });
  return { type: 'JKS', entries };
}

/** The file size the entries imply (JavaKeyStore.engineStore's layout), digest included. */
function jksLength(entries: JksEntry[], version: number): number {
  const utf = (text: string): number => 2 + Buffer.byteLength(text, 'utf8');
  const cert = (c: { certType: string; value: Uint8Array }): number => (version === 2 ? utf(c.certType) : 0) + 4 + c.value.length;
  const body = entries.reduce((size, e) => size + 4 + utf(e.alias) + 8 +
    ('protectedPrivateKey' in e ? 4 + e.protectedPrivateKey.length + 4 + e.chain.reduce((n, c) => n + cert(c), 0) : cert(e.cert)), 12);
  return body + 20;
}

/** The JKS trailer: SHA-1(UTF-16BE password ‖ "Mighty Aphrodite" ‖ everything before it). */
function jksDigestMatches(bytes: Buffer, password: string): boolean {
  const body = bytes.subarray(0, bytes.length - 20);
  const digest = createHash('sha1').update(Buffer.from(password, 'utf16le').swap16()).update('Mighty Aphrodite', 'utf8').update(body).digest();
  return timingSafeEqual(digest, bytes.subarray(bytes.length - 20));
}

function jksCertificate(cert: { certType: string; value: Buffer }, alias: string): Certificate {
  if (cert.certType !== 'X.509' && cert.certType !== 'X509') {
    throw new MidcertError('KEYSTORE_MALFORMED', `entry "${alias}" holds a ${cert.certType} certificate; only X.509 is supported`);
  }
  try {
    return parseCertificate(Buffer.from(cert.value));
  } catch (err) {
    throw malformed(err, `entry "${alias}"`);
  }
}

function recoverKey(protectedKey: Buffer, password: string, alias: string): KeyObject {
  if (protectedKey.length > MAX_PROTECTED_KEY_BYTES) {
    throw new MidcertError('KEYSTORE_MALFORMED', `the private key of entry "${alias}" is ${protectedKey.length} bytes; no real key is that large`);
  }
  let pem: string;
  try {
    pem = recoverJksKey(Buffer.from(protectedKey), password);
  } catch (err) {
    // The store digest already verified, so a key that fails its own check has another password.
    if (err instanceof Error && /cannot recover key/i.test(err.message)) {
      throw new MidcertError('KEYSTORE_PASSWORD', `the private key of entry "${alias}" is protected by a password other than the store password`);
    }
    throw malformed(err, `the private key of entry "${alias}"`);
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw malformed(err, `the private key of entry "${alias}"`);
  }
}

// ---- PKCS12 ----

/**
 * Groups PFX bags into keystore entries the way Java does: each key with the certificate that
 * shares its localKeyId (else its public key) and that certificate's issuers; certificate bags
 * marked with Java's trusted-key-usage attribute as trusted entries. Other certificates (OpenSSL's
 * -certfile CAs) only serve chains. Java lower-cases PKCS12 aliases and numbers unnamed ones.
 */
function readPkcs12Keystore(bytes: Uint8Array, storepass: string): Keystore {
  const contents = readPfxAsKeystore(bytes, storepass);
  const pool = contents.certificates.map((c) => c.cert);
  let unnamed = 0;
  const aliasOf = (name: string | undefined): string => (name ?? String(++unnamed)).toLowerCase();
  const entries: KeystoreEntry[] = [];
  for (const key of contents.keys) {
    const leaf = leafFor(key.key, key.localKeyId, contents.certificates);
    const chain = leaf ? buildChain([leaf.cert, ...pool.filter((c) => c !== leaf.cert)], key.key).chain : [];
    const created = javaCreationTime(key.localKeyId);
    entries.push({ alias: aliasOf(key.friendlyName ?? leaf?.friendlyName), kind: 'PrivateKeyEntry', chain, privateKey: key.key, ...(created ? { created } : {}) });
  }
  for (const trusted of contents.certificates.filter((c) => c.trustedKeyUsage !== undefined)) {
    entries.push({ alias: aliasOf(trusted.friendlyName), kind: 'trustedCertEntry', chain: [trusted.cert] });
  }
  return { type: 'PKCS12', entries };
}

function readPfxAsKeystore(bytes: Uint8Array, storepass: string): Pkcs12Contents {
  try {
    return readPkcs12(bytes, storepass, { maxBytes: LIMITS.keystoreBytes, maxItems: MAX_KEYSTORE_CERTIFICATES });
  } catch (err) {
    if (!(err instanceof MidcertError)) throw malformed(err);
    if (err.code === 'PKCS12_PASSWORD') throw new MidcertError('KEYSTORE_PASSWORD', err.message.replace('PKCS#12', 'keystore'), { cause: err });
    if (err.code === 'PKCS12_MALFORMED') {
      // A structural finding of ours keeps its words; an undecodable file reads as a keystore problem.
      const undecodable = err.cause !== undefined && !(err.cause instanceof MidcertError);
      throw new MidcertError('KEYSTORE_MALFORMED', undecodable ? 'the keystore is truncated or is not a JKS or PKCS12 file' : err.message, { cause: err });
    }
    throw err;
  }
}

function leafFor(key: KeyObject, localKeyId: string | undefined, certs: Pkcs12Certificate[]): Pkcs12Certificate | undefined {
  const byId = localKeyId === undefined ? undefined : certs.find((c) => c.localKeyId === localKeyId && keyMatchesCertificate(key, c.cert));
  return byId ?? certs.find((c) => keyMatchesCertificate(key, c.cert));
}

/** keytool sets a key's localKeyId to "Time <epoch ms>" and reads the creation date back from it. */
function javaCreationTime(localKeyId: string | undefined): Date | undefined {
  const match = localKeyId ? /^Time (\d{1,15})$/.exec(Buffer.from(localKeyId, 'hex').toString('latin1')) : null;
  return match ? new Date(Number(match[1])) : undefined;
}

// ---- errors ----

function wrongStorePassword(): MidcertError {
  return new MidcertError('KEYSTORE_PASSWORD', 'the keystore integrity check failed: wrong store password, or the file was altered');
}

/**
 * KEYSTORE_MALFORMED for a parse failure. Our own errors keep their message; a library's or the
 * runtime's text (jks-js reading past a cut-off file throws `The value of "offset" is out of
 * range`) is replaced by a sentence and kept only as `cause`.
 */
function malformed(err: unknown, where?: string): MidcertError {
  if (err instanceof MidcertError) return new MidcertError('KEYSTORE_MALFORMED', `cannot read ${where ?? 'the keystore'}: ${err.message}`, { cause: err });
  const sentence = where === undefined ? 'the keystore is truncated or is not a JKS or PKCS12 file' : `cannot read ${where}: it is damaged or truncated`;
  return new MidcertError('KEYSTORE_MALFORMED', sentence, { cause: err });
}
