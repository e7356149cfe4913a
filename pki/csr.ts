import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { MidcertError, asMidcertError } from '../common/errors.js';
import { LIMITS, assertSize } from '../common/limits.js';
import { fromDerBuffer, implicitSet, toDer, oid, publicKeyInfo, seq, set, signStructure, smallInt } from './asn1.js';
import { OID, SIGNATURE_HASHES } from './certificate.js';
import { extKeyUsageExtension, keyUsageExtension, subjectAltNameExtension, type KeyUsageName } from './extensions.js';
import { decodeName, encodeName, formatName, parseSubject, type DistinguishedName } from './name.js';
import { childrenOf, readTlv, slice, type Tlv } from './der.js';
import { looksLikePem, scanPem, toPem } from './pem.js';

const asn1 = forge.asn1;
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

export interface CsrRequest {
  /** RFC 4514 (`CN=mid01,O=Org`) or slash form (`/O=Org/CN=mid01`). */
  subject: string;
  sans?: string[];
}

/** The keyUsage a MID client certificate needs for the key's algorithm. */
export function clientKeyUsage(key: KeyObject): KeyUsageName[] {
  // keyEncipherment only has meaning for RSA key transport.
  return key.asymmetricKeyType === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'];
}

/** Builds a PKCS#10 CSR (SHA-256) asking for keyUsage + EKU clientAuth (+ SANs). Returns PEM. */
export function buildCsr(key: KeyObject, request: CsrRequest): string {
  const subject = parseSubject(request.subject);
  const extensions = [keyUsageExtension(clientKeyUsage(key)), extKeyUsageExtension([OID.clientAuth])];
  if (request.sans && request.sans.length > 0) extensions.push(subjectAltNameExtension(request.sans));
  const info = seq([
    smallInt(0),
    encodeName(subject),
    publicKeyInfo(key),
    implicitSet(0, [seq([oid(EXTENSION_REQUEST), set([seq(extensions)])])]),
  ]);
  return toPem('CERTIFICATE REQUEST', signStructure(info, key));
}

export interface ParsedCsr {
  der: Buffer;
  subject: DistinguishedName;
  subjectText: string;
  publicKey: KeyObject;
  /** Raw requested extensions (DER of each Extension), copied as-is by a signing CA only when it wants. */
  requestedExtensionOids: string[];
  signatureValid: boolean;
}

/** Reads a PEM or DER CSR and checks its self-signature. */
export function parseCsr(bytes: Uint8Array): ParsedCsr {
  assertSize(bytes, LIMITS.pemBytes, 'CSR');
  const text = Buffer.from(bytes).toString('latin1');
  const blocks = looksLikePem(bytes) ? scanPem(text) : [];
  const block = blocks.find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
  if (!block && blocks.length > 0) {
    throw new MidcertError('CERT_MALFORMED', `no CERTIFICATE REQUEST block found (found: ${blocks.map((b) => b.label).join(', ')})`);
  }
  const der = block ? block.der : Buffer.from(bytes);
  try {
    const root = fromDerBuffer(der);
    const [info, algorithm, signature] = root.value as forge.asn1.Asn1[];
    if (!info || !algorithm || !signature) throw new Error('truncated CertificationRequest');
    const fields = info.value as forge.asn1.Asn1[];
    const subject = decodeName(fields[1] as forge.asn1.Asn1);
    const spkiDer = toDer(fields[2] as forge.asn1.Asn1);
    const publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
    // The signature covers the bytes as sent, so verify those, not a re-encoding.
    const infoDer = slice(der, childrenOf(der, readTlv(der))[0] as Tlv);
    const sigBytes = Buffer.from(signature.value as string, 'latin1').subarray(1);
    const hash = SIGNATURE_HASHES[asn1.derToOid((algorithm.value as forge.asn1.Asn1[])[0]?.value as string)];
    return {
      der, subject, publicKey,
      subjectText: formatName(subject),
      requestedExtensionOids: requestedExtensions(fields[3]),
      signatureValid: hash !== undefined && verify(hash, infoDer, publicKey, sigBytes),
    };
  } catch (err) {
    throw asMidcertError(err, 'CERT_MALFORMED', 'cannot parse the CSR: it is truncated or is not a PKCS#10 certificate request');
  }
}

function requestedExtensions(attributes: forge.asn1.Asn1 | undefined): string[] {
  if (!attributes || !Array.isArray(attributes.value)) return [];
  const out: string[] = [];
  for (const attr of attributes.value) {
    const [type, values] = attr.value as forge.asn1.Asn1[];
    if (!type || asn1.derToOid(type.value as string) !== EXTENSION_REQUEST || !values) continue;
    for (const ext of ((values.value as forge.asn1.Asn1[])[0]?.value as forge.asn1.Asn1[]) ?? []) {
      out.push(asn1.derToOid((ext.value as forge.asn1.Asn1[])[0]?.value as string));
    }
  }
  return out;
}

export function assertCsrSignature(csr: ParsedCsr): void {
  if (!csr.signatureValid) throw new MidcertError('CERT_MALFORMED', 'the CSR signature does not verify');
}
