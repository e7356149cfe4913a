import { randomBytes, type KeyObject } from 'node:crypto';
import { explicit, integer, publicKeyInfo, seq, signStructure, signatureAlgorithm, smallInt } from './asn1.js';
import forge from 'node-forge';
import { OID } from './certificate.js';
import {
  authorityKeyIdExtension, basicConstraintsExtension, extKeyUsageExtension, keyUsageExtension,
  subjectAltNameExtension, subjectKeyIdExtension, type KeyUsageName,
} from './extensions.js';
import { encodeName, parseSubject, type DistinguishedName } from './name.js';
import { toPem } from './pem.js';

const asn1 = forge.asn1;

/**
 * What a CA puts in a certificate. Used by the lab CA, the `local` CA adapter and tests; a real CA
 * decides this itself, which is why the linter checks what comes back.
 */
export interface CertificateProfile {
  ca: boolean;
  pathLen?: number;
  keyUsage: KeyUsageName[];
  extKeyUsage?: string[];
  sans?: string[];
}

export const PROFILES = {
  rootCa: { ca: true, keyUsage: ['keyCertSign', 'cRLSign'] },
  intermediateCa: { ca: true, pathLen: 0, keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'] },
  client: { ca: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extKeyUsage: [OID.clientAuth] },
  server: { ca: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extKeyUsage: [OID.serverAuth] },
  /** A midcert operator (the controller dialling agents): clientAuth plus midcert's operator EKU. */
  operator: { ca: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extKeyUsage: [OID.clientAuth, OID.midcertOperator] },
} satisfies Record<string, CertificateProfile>;

export interface IssueRequest {
  subject: string | DistinguishedName;
  publicKey: KeyObject;
  profile: CertificateProfile;
  notBefore: Date;
  notAfter: Date;
  /** The signer; omit both for a self-signed certificate. */
  issuer?: { subject: DistinguishedName; key: KeyObject; publicKey: KeyObject };
  /** Key to sign a self-signed certificate with. */
  selfSignKey?: KeyObject;
  serial?: Buffer;
}

/** Issues an X.509 v3 certificate; returns DER. */
export function issueCertificate(req: IssueRequest): Buffer {
  const subject = typeof req.subject === 'string' ? parseSubject(req.subject) : req.subject;
  const signer = req.issuer ?? (req.selfSignKey ? { subject, key: req.selfSignKey, publicKey: req.publicKey } : undefined);
  if (!signer) throw new Error('issueCertificate needs an issuer or a selfSignKey');
  const serial = req.serial ?? positiveSerial();
  const tbs = seq([
    explicit(0, smallInt(2)),
    integer(serial),
    signatureAlgorithm(signer.key),
    encodeName(signer.subject),
    seq([encodeTime(req.notBefore), encodeTime(req.notAfter)]),
    encodeName(subject),
    publicKeyInfo(req.publicKey),
    explicit(3, seq(extensionsFor(req.profile, req.publicKey, signer.publicKey))),
  ]);
  return signStructure(tbs, signer.key);
}

export function issueCertificatePem(req: IssueRequest): string {
  return toPem('CERTIFICATE', issueCertificate(req));
}

function extensionsFor(profile: CertificateProfile, subjectKey: KeyObject, issuerKey: KeyObject): forge.asn1.Asn1[] {
  const exts = [basicConstraintsExtension(profile.ca, profile.pathLen), keyUsageExtension(profile.keyUsage)];
  if (profile.extKeyUsage && profile.extKeyUsage.length > 0) exts.push(extKeyUsageExtension(profile.extKeyUsage));
  if (profile.sans && profile.sans.length > 0) exts.push(subjectAltNameExtension(profile.sans));
  exts.push(subjectKeyIdExtension(subjectKey), authorityKeyIdExtension(issuerKey));
  return exts;
}

function positiveSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] as number) & 0x7f) | 0x01;
  return serial;
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function encodeTime(date: Date): forge.asn1.Asn1 {
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  if (whole.getUTCFullYear() < 2050) return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(whole));
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(whole));
}
