import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { MidcertError, asMidcertError } from '../common/errors.js';
import { LIMITS, assertCertificateCount, assertSize } from '../common/limits.js';
import { fromDerBuffer } from './asn1.js';
import { childrenOf, descend, readTlv, slice, type Tlv } from './der.js';
import { describeKey, type KeyDescription } from './keys.js';
import { decodeName, formatName, sameName, type DistinguishedName } from './name.js';
import { decodeOid } from './oid.js';
import { looksLikePem, scanPem } from './pem.js';

const asn1 = forge.asn1;

export const OID = {
  clientAuth: '1.3.6.1.5.5.7.3.2',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  pkcs7SignedData: '1.2.840.113549.1.7.2',
  /**
   * midcert's own EKU (a UUID OID, ITU-T X.667 arc 2.25): "may operate midcert agents". Only the
   * fleet CA's controller identity carries it; agent identities never do (docs/security.md).
   */
  midcertOperator: '2.25.300178873001392453727799070494338662938',
} as const;

const EKU_NAMES: Record<string, string> = {
  [OID.serverAuth]: 'serverAuth', [OID.clientAuth]: 'clientAuth', '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection', '1.3.6.1.5.5.7.3.8': 'timeStamping', '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage', [OID.midcertOperator]: 'midcertOperator',
};
const SIGNATURE_NAMES: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption', '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption', '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption', '1.2.840.113549.1.1.10': 'rsassaPss',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1', '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384', '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
};
/** Hash used by each signature algorithm we can verify (RSA PKCS#1 v1.5 and ECDSA). */
export const SIGNATURE_HASHES: Record<string, string> = {
  '1.2.840.113549.1.1.5': 'sha1', '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512', '1.2.840.10045.4.1': 'sha1', '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512',
};
const KU_NAMES = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement',
  'keyCertSign', 'cRLSign', 'encipherOnly', 'decipherOnly'];

export interface Certificate {
  der: Buffer;
  subject: DistinguishedName;
  issuer: DistinguishedName;
  /** RFC 4514 text of subject and issuer. */
  subjectText: string;
  issuerText: string;
  /** Lower-case hex, no leading zero byte. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER, lower-case hex without colons. */
  sha256: string;
  publicKey: KeyObject;
  key: KeyDescription;
  /** Named keyUsage bits; undefined when the extension is absent. */
  keyUsage: string[] | undefined;
  /** Extended key usages (names where known, else OIDs); undefined when absent. */
  extKeyUsage: string[] | undefined;
  basicConstraints: { ca: boolean; pathLen?: number } | undefined;
  subjectAltNames: string[];
  selfSigned: boolean;
  /** e.g. sha256WithRSAEncryption; the dotted OID when unknown. */
  signatureAlgorithm: string;
  x509: X509Certificate;
}

/** Reads every certificate in a PEM text, a DER certificate, or a PKCS#7 (PEM or DER). */
export function readCertificates(bytes: Uint8Array): Certificate[] {
  return certificateDers(bytes).map(parseCertificate);
}

/** The DER of every certificate readCertificates would return, unparsed. */
export function certificateDers(bytes: Uint8Array): Buffer[] {
  assertSize(bytes, LIMITS.pemBytes, 'certificate file');
  const ders = looksLikePem(bytes) ? pemCertificateDers(Buffer.from(bytes).toString('latin1')) : derCertificateDers(Buffer.from(bytes));
  assertCertificateCount(ders.length);
  return ders;
}

/** The first certificate's SHA-256 (lower-case hex, as Certificate.sha256), without parsing it; undefined when there is none. */
export function firstCertificateSha256(bytes: Uint8Array): string | undefined {
  const der = certificateDers(bytes)[0];
  return der && createHash('sha256').update(der).digest('hex');
}

function pemCertificateDers(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (const block of scanPem(text)) {
    // Microsoft CAs label base64 PKCS#7 chains "CERTIFICATE" too (certnew.p7b?Enc=b64).
    if (block.label === 'CERTIFICATE' && isPkcs7(block.der)) out.push(...pkcs7CertificateDers(block.der));
    else if (block.label === 'CERTIFICATE' || block.label === 'X509 CERTIFICATE' || block.label === 'TRUSTED CERTIFICATE') out.push(block.der);
    else if (block.label === 'PKCS7' || block.label === 'CMS') out.push(...pkcs7CertificateDers(block.der));
  }
  return out;
}

/** ContentInfo starts with an OID (tag 6); a Certificate starts with the TBS SEQUENCE. */
function isPkcs7(der: Buffer): boolean {
  try {
    return childrenOf(der, readTlv(der))[0]?.tag === 0x06;
  } catch {
    return false;
  }
}

function derCertificateDers(der: Buffer): Buffer[] {
  try {
    const top = readTlv(der);
    if (isPkcs7(der)) return pkcs7CertificateDers(der);
    assertNoTrailingBytes(der, top, 'the certificate');
    return [slice(der, top)];
  } catch (err) {
    throw asMidcertError(err, 'CERT_MALFORMED', 'not a certificate: the data is truncated, or is not a DER certificate or PKCS#7');
  }
}

/** DER is exactly one value: bytes after it are a damaged or concatenated file, never ignored. */
function assertNoTrailingBytes(der: Buffer, top: Tlv, what: string): void {
  const trailing = der.length - top.end;
  if (trailing > 0) throw new MidcertError('CERT_MALFORMED', `${trailing} trailing byte${trailing === 1 ? '' : 's'} after ${what}`);
}

/** Certificates from a PKCS#7 SignedData (certs-only, as ADCS and EST return). */
export function pkcs7CertificateDers(der: Buffer): Buffer[] {
  try {
    const contentInfo = readTlv(der);
    assertNoTrailingBytes(der, contentInfo, 'the PKCS#7 data');
    const [oid, explicit] = childrenOf(der, contentInfo);
    if (!oid || !explicit || asn1.derToOid(der.subarray(oid.contentStart, oid.end).toString('latin1')) !== OID.pkcs7SignedData) {
      throw new Error('not a PKCS#7 SignedData');
    }
    const signedData = descend(der, explicit, [0]);
    const certSet = childrenOf(der, signedData).find((c) => c.tag === 0xa0);
    return certSet ? childrenOf(der, certSet).filter((c) => c.tag === 0x30).map((c) => slice(der, c)) : [];
  } catch (err) {
    throw asMidcertError(err, 'CERT_MALFORMED', 'cannot read the PKCS#7 certificates: the data is truncated or is not a PKCS#7 SignedData');
  }
}

/**
 * Certificates parsed lately, by DER. A rotation meets each new leaf several times (the CA's check,
 * the store's record, the report) and parsing is the costly part. Entries are frozen: shared, never changed.
 */
const parsed = new Map<string, Certificate>();
const MAX_PARSED = 256;

export function parseCertificate(der: Buffer): Certificate {
  const key = der.toString('base64');
  const known = parsed.get(key);
  if (known) return known;
  const cert = Object.freeze(parseUncached(der));
  if (parsed.size >= MAX_PARSED) parsed.delete(parsed.keys().next().value as string);
  parsed.set(key, cert);
  return cert;
}

function parseUncached(der: Buffer): Certificate {
  try {
    assertNoTrailingBytes(der, readTlv(der), 'the certificate');
    const x509 = new X509Certificate(der);
    const tbs = parseTbs(der);
    const publicKey = x509.publicKey;
    return {
      der, x509, publicKey, ...tbs,
      subjectText: formatName(tbs.subject),
      issuerText: formatName(tbs.issuer),
      sha256: x509.fingerprint256.replace(/:/g, '').toLowerCase(),
      key: describeKey(publicKey),
      selfSigned: sameName(tbs.subject, tbs.issuer) && verifiesWith(x509, publicKey),
    };
  } catch (err) {
    throw asMidcertError(err, 'CERT_MALFORMED', 'cannot parse the certificate: it is truncated or is not a DER-encoded X.509 certificate');
  }
}

type TbsFields = Pick<Certificate, 'signatureAlgorithm' | 'subject' | 'issuer' | 'serial' | 'notBefore' | 'notAfter' | 'keyUsage' | 'extKeyUsage' | 'basicConstraints' | 'subjectAltNames'>;

function parseTbs(der: Buffer): TbsFields {
  const cert = fromDerBuffer(der);
  const [tbs, algorithm] = cert.value as forge.asn1.Asn1[];
  if (!tbs || !algorithm) throw new Error('truncated Certificate');
  const sigOid = asn1.derToOid((algorithm.value as forge.asn1.Asn1[])[0]?.value as string);
  const fields = tbs.value as forge.asn1.Asn1[];
  const offset = (fields[0] as forge.asn1.Asn1).tagClass === asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  const at = (i: number): forge.asn1.Asn1 => {
    const node = fields[i + offset];
    if (!node) throw new Error('truncated TBSCertificate');
    return node;
  };
  const validity = at(3).value as forge.asn1.Asn1[];
  const extensions = readExtensions(fields.find((f) => f.tagClass === asn1.Class.CONTEXT_SPECIFIC && f.type === 3));
  return {
    signatureAlgorithm: SIGNATURE_NAMES[sigOid] ?? sigOid,
    serial: Buffer.from(at(0).value as string, 'latin1').toString('hex').replace(/^(00)+(?=.)/, ''),
    issuer: decodeName(at(2)),
    notBefore: decodeTime(validity[0]),
    notAfter: decodeTime(validity[1]),
    subject: decodeName(at(4)),
    ...extensions,
  };
}

function decodeTime(node: forge.asn1.Asn1 | undefined): Date {
  if (!node) throw new Error('missing validity time');
  const text = node.value as string;
  return node.type === asn1.Type.UTCTIME ? asn1.utcTimeToDate(text) : asn1.generalizedTimeToDate(text);
}

function readExtensions(wrapper: forge.asn1.Asn1 | undefined): Pick<TbsFields, 'keyUsage' | 'extKeyUsage' | 'basicConstraints' | 'subjectAltNames'> {
  const result: ReturnType<typeof readExtensions> = { keyUsage: undefined, extKeyUsage: undefined, basicConstraints: undefined, subjectAltNames: [] };
  const list = wrapper ? ((wrapper.value as forge.asn1.Asn1[])[0]?.value as forge.asn1.Asn1[] | undefined) ?? [] : [];
  for (const ext of list) {
    const parts = ext.value as forge.asn1.Asn1[];
    const oid = asn1.derToOid((parts[0] as forge.asn1.Asn1).value as string);
    const inner = fromDerBuffer(Buffer.from((parts[parts.length - 1] as forge.asn1.Asn1).value as string, 'latin1'));
    if (oid === OID.keyUsage) result.keyUsage = decodeKeyUsage(inner.value as string);
    else if (oid === OID.extKeyUsage) result.extKeyUsage = (inner.value as forge.asn1.Asn1[]).map((n) => ekuName(decodeOid(n.value as string)));
    else if (oid === OID.basicConstraints) result.basicConstraints = decodeBasicConstraints(inner.value as forge.asn1.Asn1[]);
    else if (oid === OID.subjectAltName) result.subjectAltNames = (inner.value as forge.asn1.Asn1[]).map(decodeGeneralName);
  }
  return result;
}

function decodeKeyUsage(bitString: string): string[] {
  // First content byte = unused bits; the rest are the flags, most significant bit first.
  const bytes = Buffer.from(bitString, 'latin1').subarray(1);
  return KU_NAMES.filter((_, bit) => ((bytes[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0);
}

function ekuName(oid: string): string {
  return EKU_NAMES[oid] ?? oid;
}

function decodeBasicConstraints(values: forge.asn1.Asn1[]): { ca: boolean; pathLen?: number } {
  let ca = false;
  let pathLen: number | undefined;
  for (const v of values) {
    if (v.type === asn1.Type.BOOLEAN) ca = (v.value as string).charCodeAt(0) !== 0;
    if (v.type === asn1.Type.INTEGER) pathLen = Buffer.from(v.value as string, 'latin1').readUIntBE(0, Math.min(6, (v.value as string).length) || 1);
  }
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

function decodeGeneralName(node: forge.asn1.Asn1): string {
  const raw = typeof node.value === 'string' ? node.value : '';
  switch (node.type) {
    case 1: return `email:${raw}`;
    case 2: return `DNS:${raw}`;
    case 6: return `URI:${raw}`;
    case 7: return `IP:${formatIp(Buffer.from(raw, 'latin1'))}`;
    default: return `othername:${node.type}`;
  }
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  return (bytes.toString('hex').match(/.{4}/g) ?? []).join(':');
}

/** Certificate as PEM text. */
export function certificateToPem(cert: Certificate): string {
  return cert.x509.toString().replace(/\r\n/g, '\n');
}

/**
 * True when `issuer` issued `cert`: issuer name matches and the signature verifies with its key.
 * Deliberately not X509Certificate.checkIssued, which also rejects issuers whose keyUsage lacks
 * keyCertSign; the linter reports such CA defects as their own findings instead.
 */
export function isIssuedBy(cert: Certificate, issuer: Certificate): boolean {
  if (!sameName(cert.issuer, issuer.subject)) return false;
  if (verifiedIssuers.get(cert)?.has(issuer)) return true;
  const ok = verifiesWith(cert.x509, issuer.publicKey);
  if (ok && Object.isFrozen(cert) && Object.isFrozen(issuer)) {
    const known = verifiedIssuers.get(cert) ?? new WeakSet<Certificate>();
    known.add(issuer);
    verifiedIssuers.set(cert, known);
  }
  return ok;
}

/**
 * Signatures already verified, per certificate: its issuers that did sign it. Parsed certificates
 * are frozen and shared (parseCertificate), so a CA's own chain, checked under every leaf it
 * issues, is verified once. Only successes of frozen pairs are kept (an object that can still
 * change, such as a spread copy, is checked every time), and a failure is checked again.
 */
const verifiedIssuers = new WeakMap<Certificate, WeakSet<Certificate>>();

function verifiesWith(x509: X509Certificate, key: KeyObject): boolean {
  try {
    return x509.verify(key);
  } catch {
    return false; // e.g. an EC signature checked against an RSA key
  }
}

export function daysLeft(cert: Certificate, now: Date): number {
  return Math.floor((cert.notAfter.getTime() - now.getTime()) / 86_400_000);
}

/** The JSON summary shape used by `cert show --json` and keystore chains. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  sha256: string;
  keyType: string;
  keyBits: number;
  keyUsage: string[] | null;
  extKeyUsage: string[] | null;
  basicConstraints: { ca: boolean; pathLen?: number } | null;
  subjectAltNames: string[];
  selfSigned: boolean;
}

export function summarize(cert: Certificate): CertificateSummary {
  return {
    subject: cert.subjectText,
    issuer: cert.issuerText,
    serial: cert.serial,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    sha256: cert.sha256,
    keyType: cert.key.type,
    keyBits: cert.key.bits,
    keyUsage: cert.keyUsage ?? null,
    extKeyUsage: cert.extKeyUsage ?? null,
    basicConstraints: cert.basicConstraints ?? null,
    subjectAltNames: cert.subjectAltNames,
    selfSigned: cert.selfSigned,
  };
}
