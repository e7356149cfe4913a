import { createHash, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { MidcertError } from '../common/errors.js';
import { encodeOid } from './oid.js';
import { spkiDer } from './spki.js';

/** Small builders over forge.asn1 so structures read like their ASN.1 definitions. */
const asn1 = forge.asn1;
type Node = forge.asn1.Asn1;

export const seq = (items: Node[]): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
export const set = (items: Node[]): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, items);
export const oid = (dotted: string): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, encodeOid(dotted));
export const nullValue = (): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '');
export const bool = (value: boolean): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BOOLEAN, false, value ? '\xff' : '\x00');
export const octets = (bytes: Uint8Array): Node => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, latin1(bytes));
export const bitString = (bytes: Uint8Array, unusedBits = 0): Node =>
  asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, String.fromCharCode(unusedBits) + latin1(bytes));
export const explicit = (tag: number, inner: Node): Node => asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, true, [inner]);
export const implicitSet = (tag: number, items: Node[]): Node => asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, true, items);

/** A non-negative INTEGER from big-endian bytes (a leading zero is added when the top bit is set). */
export function integer(bytes: Uint8Array): Node {
  let value = Buffer.from(bytes);
  while (value.length > 1 && value[0] === 0 && ((value[1] as number) & 0x80) === 0) value = value.subarray(1);
  if (((value[0] ?? 0) & 0x80) !== 0) value = Buffer.concat([Buffer.from([0]), value]);
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, latin1(value));
}
export const smallInt = (n: number): Node => integer(Buffer.from([n]));

export function toDer(node: Node): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'latin1');
}
/** forge accepts an options object at run time; its typings only admit a boolean. */
const forgeFromDer = asn1.fromDer as unknown as (der: string, options: { strict: boolean; parseAllBytes?: boolean; decodeBitStrings: boolean }) => Node;

/** Strict DER parse that leaves BIT STRING contents alone (signatures may look like ASN.1). */
export function fromDerBuffer(der: Uint8Array, parseAllBytes = true): Node {
  return forgeFromDer(latin1(der), { strict: true, parseAllBytes, decodeBitStrings: false });
}
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1');
}

export function publicKeyInfo(key: KeyObject): Node {
  return fromDerBuffer(spkiDer(key));
}

const SIGNATURE_OIDS = { rsa: '1.2.840.113549.1.1.11', ec: '1.2.840.10045.4.3.2' } as const;

/** AlgorithmIdentifier for SHA-256 with the key's algorithm (RSA PKCS#1 v1.5 or ECDSA). */
export function signatureAlgorithm(key: KeyObject): Node {
  if (key.asymmetricKeyType === 'rsa') return seq([oid(SIGNATURE_OIDS.rsa), nullValue()]);
  if (key.asymmetricKeyType === 'ec') return seq([oid(SIGNATURE_OIDS.ec)]);
  throw new MidcertError('KEY_UNSUPPORTED', `cannot sign with a ${key.asymmetricKeyType} key`);
}

/** Signs the DER of `toBeSigned` and wraps it as SEQUENCE { tbs, algorithm, BIT STRING sig }. */
export function signStructure(toBeSigned: Node, key: KeyObject): Buffer {
  const tbsDer = toDer(toBeSigned);
  const signature = sign('sha256', tbsDer, key);
  return toDer(seq([fromDerBuffer(tbsDer), signatureAlgorithm(key), bitString(signature)]));
}

/** SHA-1 of the subjectPublicKey bits: the usual keyIdentifier (RFC 5280 §4.2.1.2 method 1). */
export function keyIdentifier(key: KeyObject): Buffer {
  const spki = publicKeyInfo(key).value as Node[];
  const bits = (spki[1] as Node).value as string;
  return createHash('sha1').update(Buffer.from(bits, 'latin1').subarray(1)).digest();
}
