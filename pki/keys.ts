import { createPrivateKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { MidcertError } from '../common/errors.js';
import { LIMITS, assertSize } from '../common/limits.js';
import { looksLikePem, scanPem, type PemBlock } from './pem.js';
import { spkiDer } from './spki.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export type KeySpec = { type: 'rsa'; bits: 2048 | 3072 | 4096 } | { type: 'ec'; curve: 'P-256' | 'P-384' };

/** How a private key was stored where we found it; the MID accepts only `pkcs8`. */
export type KeyEncoding = 'pkcs8' | 'pkcs1' | 'sec1' | 'encrypted-pkcs8' | 'encrypted-legacy';

export interface ParsedKey {
  key: KeyObject;
  encoding: KeyEncoding;
}

export interface KeyDescription {
  type: 'RSA' | 'EC' | string;
  bits: number;
  curve?: string;
}

export const DEFAULT_KEY_SPEC: KeySpec = { type: 'rsa', bits: 2048 };

/** Resolves CLI-style options (`--key-type rsa|ec --bits N`) into a supported KeySpec. */
export function keySpecFrom(type = 'rsa', bits?: number): KeySpec {
  if (type === 'rsa') {
    const size = bits ?? 2048;
    if (size !== 2048 && size !== 3072 && size !== 4096) {
      throw new MidcertError('KEY_UNSUPPORTED', `RSA key size ${size} is not supported (use 2048, 3072 or 4096)`);
    }
    return { type: 'rsa', bits: size };
  }
  if (type === 'ec') {
    const size = bits ?? 256;
    if (size === 256) return { type: 'ec', curve: 'P-256' };
    if (size === 384) return { type: 'ec', curve: 'P-384' };
    throw new MidcertError('KEY_UNSUPPORTED', `EC key size ${size} is not supported (use 256 or 384)`);
  }
  throw new MidcertError('KEY_UNSUPPORTED', `key type "${type}" is not supported (use rsa or ec)`);
}

export async function generateKey(spec: KeySpec = DEFAULT_KEY_SPEC): Promise<KeyObject> {
  if (spec.type === 'rsa') {
    const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 });
    return privateKey;
  }
  const namedCurve = spec.curve === 'P-256' ? 'prime256v1' : 'secp384r1';
  const { privateKey } = await generateKeyPairAsync('ec', { namedCurve });
  return privateKey;
}

/** Unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), the only key form the MID's import accepts. */
export function toPkcs8Pem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function describeKey(key: KeyObject): KeyDescription {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') return { type: 'RSA', bits: details.modulusLength ?? 0 };
  if (key.asymmetricKeyType === 'ec') {
    const curve = curveName(details.namedCurve);
    return { type: 'EC', bits: curve === 'P-384' ? 384 : curve === 'P-521' ? 521 : 256, curve };
  }
  return { type: String(key.asymmetricKeyType ?? 'unknown').toUpperCase(), bits: 0 };
}

function curveName(nodeName: string | undefined): string {
  const names: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
  return nodeName ? names[nodeName] ?? nodeName : 'unknown';
}

/** Reads one private key from PEM or DER bytes: PKCS#1, PKCS#8, SEC1 or encrypted PKCS#8. */
export function readPrivateKey(bytes: Uint8Array, password?: string): ParsedKey {
  assertSize(bytes, LIMITS.pemBytes, 'key file');
  if (looksLikePem(bytes)) {
    const keys = scanPem(Buffer.from(bytes).toString('latin1')).filter((b) => isKeyLabel(b.label));
    if (keys.length === 0) throw new MidcertError('KEY_MALFORMED', 'no private key block found');
    if (keys.length > 1) throw new MidcertError('KEY_MALFORMED', `${keys.length} private key blocks found; expected one`);
    return readKeyBlock(keys[0] as PemBlock, password);
  }
  return readDerKey(Buffer.from(bytes), password);
}

export function isKeyLabel(label: string): boolean {
  return label === 'PRIVATE KEY' || label === 'ENCRYPTED PRIVATE KEY' || label === 'RSA PRIVATE KEY' || label === 'EC PRIVATE KEY';
}

/** The encoding a PEM key block declares, without needing the password. */
export function keyBlockEncoding(block: PemBlock): KeyEncoding {
  if (block.label === 'ENCRYPTED PRIVATE KEY') return 'encrypted-pkcs8';
  if ((block.headers['Proc-Type'] ?? '').includes('ENCRYPTED')) return 'encrypted-legacy';
  if (block.label === 'RSA PRIVATE KEY') return 'pkcs1';
  if (block.label === 'EC PRIVATE KEY') return 'sec1';
  return 'pkcs8';
}

export function readKeyBlock(block: PemBlock, password?: string): ParsedKey {
  const encoding = keyBlockEncoding(block);
  if (encoding === 'encrypted-legacy') {
    // Node reads legacy "Proc-Type: 4,ENCRYPTED" PEM only from the text form.
    const text = rebuildLegacyPem(block);
    return { key: decodeEncrypted(() => createPrivateKey({ key: text, format: 'pem', passphrase: requirePassword(password) })), encoding };
  }
  const type = encoding === 'pkcs1' ? 'pkcs1' : encoding === 'sec1' ? 'sec1' : 'pkcs8';
  if (encoding === 'encrypted-pkcs8') {
    const passphrase = requirePassword(password);
    return { key: decodeEncrypted(() => createPrivateKey({ key: block.der, format: 'der', type, passphrase })), encoding };
  }
  return { key: decodeKey(() => createPrivateKey({ key: block.der, format: 'der', type })), encoding };
}

function rebuildLegacyPem(block: PemBlock): string {
  const headerLines = Object.entries(block.headers).map(([k, v]) => `${k}: ${v}`);
  const body = block.der.toString('base64').match(/.{1,64}/g) ?? [];
  return [`-----BEGIN ${block.label}-----`, ...headerLines, '', ...body, `-----END ${block.label}-----`, ''].join('\n');
}

function readDerKey(der: Buffer, password?: string): ParsedKey {
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      const key = createPrivateKey({ key: der, format: 'der', type });
      return { key, encoding: type };
    } catch (err) {
      if (isPassphraseError(err)) {
        return { key: decodeEncrypted(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8', passphrase: requirePassword(password) })), encoding: 'encrypted-pkcs8' };
      }
    }
  }
  throw new MidcertError('KEY_MALFORMED', 'not a PKCS#8, PKCS#1 or SEC1 private key');
}

function requirePassword(password: string | undefined): string {
  if (password === undefined) throw new MidcertError('KEY_PASSWORD', 'the private key is encrypted; give its password');
  return password;
}

function decodeKey(read: () => KeyObject): KeyObject {
  try {
    return read();
  } catch (err) {
    if (err instanceof MidcertError) throw err;
    if (isPassphraseError(err) || /bad decrypt|decrypt/i.test(String((err as Error).message))) {
      throw new MidcertError('KEY_PASSWORD', 'cannot decrypt the private key: wrong password?');
    }
    // OpenSSL's text (error:1E08010C:DECODER routines::unsupported) is kept as the cause only.
    throw new MidcertError('KEY_MALFORMED', 'cannot read the private key: it is truncated or damaged, or is not a PKCS#8, PKCS#1 or SEC1 key', { cause: err });
  }
}

/**
 * A wrong password decrypts to garbage: sometimes the padding check says "bad decrypt", sometimes
 * the garbage fails to parse as ASN.1. Both mean the same thing to the user.
 */
function decodeEncrypted(read: () => KeyObject): KeyObject {
  try {
    return read();
  } catch (err) {
    if (err instanceof MidcertError) throw err;
    throw new MidcertError('KEY_PASSWORD', 'cannot decrypt the private key: wrong password?');
  }
}

function isPassphraseError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code === 'ERR_MISSING_PASSPHRASE' || /passphrase/i.test(String((err as Error).message));
}

/** True when two keys (private or public) share the same public key. */
export function publicKeysEqual(a: KeyObject, b: KeyObject): boolean {
  if (a === b) return true;
  // Two public keys compare their key material without encoding it (the encoding is the costly
  // part); a private key has to be encoded as its public half first.
  if (a.type === 'public' && b.type === 'public') return a.equals(b);
  return spkiDer(a).equals(spkiDer(b));
}
