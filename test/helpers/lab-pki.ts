import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { parseCertificate } from '../../pki/certificate.js';
import { issueCertificate, PROFILES, type CertificateProfile } from '../../pki/issue.js';
import { generateKey, toPkcs8Pem } from '../../pki/keys.js';
import { toPem } from '../../pki/pem.js';

const DAY = 86_400_000;

/** A lab CA plus a MID client leaf, all made in-process at test time (never committed). */
export interface LabPki {
  ca: LabCa;
  leaf: Identity;
  /** leaf + intermediate + root + PKCS#8 key: the bundle the MID wants. */
  bundle: string;
}

export async function makeLabPki(name = 'midcert Test'): Promise<LabPki> {
  const ca = await createLabCa(name);
  const leaf = await ca.issueIdentity('CN=mid01,O=Acme,OU=ITOM', PROFILES.client, { days: 365 });
  return { ca, leaf, bundle: leaf.certPem + ca.chainPem + leaf.keyPem };
}

export interface LeafOptions {
  profile?: CertificateProfile;
  notBefore?: Date;
  notAfter?: Date;
  key?: KeyObject;
  subject?: string;
}

/** Issues a leaf from the lab's intermediate with arbitrary validity/profile (for defect tests). */
export async function issueLeaf(ca: LabCa, options: LeafOptions = {}): Promise<Identity> {
  const key = options.key ?? (await generateKey());
  const notBefore = options.notBefore ?? new Date(Date.now() - DAY);
  const der = issueCertificate({
    subject: options.subject ?? 'CN=mid01,O=Acme,OU=ITOM',
    publicKey: createPublicKey(key),
    profile: options.profile ?? PROFILES.client,
    notBefore,
    notAfter: options.notAfter ?? new Date(notBefore.getTime() + 365 * DAY),
    issuer: { subject: ca.intermediate.cert.subject, key: ca.intermediate.key, publicKey: ca.intermediate.cert.publicKey },
  });
  return { cert: parseCertificate(der), key, certPem: toPem('CERTIFICATE', der), keyPem: toPkcs8Pem(key) };
}

/** An RSA key below the 2048-bit floor, the way old scripts made them. */
export function weakRsaKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
}

export { DAY };
