import { createPublicKey, type KeyObject } from 'node:crypto';
import { parseCertificate, type Certificate } from './certificate.js';
import { assertCsrSignature, parseCsr, type ParsedCsr } from './csr.js';
import { issueCertificate, PROFILES, type CertificateProfile } from './issue.js';
import { generateKey, toPkcs8Pem, type KeySpec } from './keys.js';
import { toPem } from './pem.js';

/** A certificate with its private key. */
export interface Identity {
  cert: Certificate;
  key: KeyObject;
  certPem: string;
  keyPem: string;
}

/**
 * A two-tier CA (root → issuing intermediate) held in memory: the `local` CA adapter's issuer,
 * and the lab's stand-in for a company CA such as ADCS. Pure: files are the caller's business
 * (controller/ca/local-files.ts).
 */
export interface TwoTierCa {
  root: Identity;
  intermediate: Identity;
  /** Intermediate then root, PEM: what gets published to the instance as the CA chain. */
  chainPem: string;
  /** Issues a certificate for a CSR (PEM, DER, or already parsed); the profile decides KU/EKU like a CA template. */
  signCsr(csr: Uint8Array | string | ParsedCsr, options?: SignOptions): string;
  /** A fresh key + certificate (e.g. TLS server identity for a simulator). */
  issueIdentity(subject: string, profile: CertificateProfile, options?: { days?: number; keySpec?: KeySpec }): Promise<Identity>;
}

export interface SignOptions {
  profile?: CertificateProfile;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
}

const DAY = 86_400_000;

/** A new root (10 years) and issuing intermediate (5 years): `CN=<name> Root CA,O=<organization>`. */
export async function createTwoTierCa(name: string, organization: string): Promise<TwoTierCa> {
  const now = Date.now();
  const rootKey = await generateKey();
  const rootDer = issueCertificate({
    subject: `CN=${name} Root CA,O=${organization}`, publicKey: createPublicKey(rootKey), selfSignKey: rootKey,
    profile: PROFILES.rootCa, notBefore: new Date(now - DAY), notAfter: new Date(now + 3650 * DAY),
  });
  const root = identityOf(rootDer, rootKey);
  const intKey = await generateKey();
  const intDer = issueCertificate({
    subject: `CN=${name} Issuing CA,O=${organization}`, publicKey: createPublicKey(intKey), profile: PROFILES.intermediateCa,
    notBefore: new Date(now - DAY), notAfter: new Date(now + 1825 * DAY), issuer: signerOf(root),
  });
  return twoTierCaFrom(root, identityOf(intDer, intKey));
}

function identityOf(der: Buffer, key: KeyObject): Identity {
  const cert = parseCertificate(der);
  return { cert, key, certPem: toPem('CERTIFICATE', der), keyPem: toPkcs8Pem(key) };
}

function signerOf(ca: Identity): { subject: Certificate['subject']; key: KeyObject; publicKey: KeyObject } {
  return { subject: ca.cert.subject, key: ca.key, publicKey: ca.cert.publicKey };
}

/** The CA of an existing root and intermediate (e.g. read back from files). */
export function twoTierCaFrom(root: Identity, intermediate: Identity): TwoTierCa {
  const issuer = signerOf(intermediate);
  return {
    root,
    intermediate,
    chainPem: intermediate.certPem + root.certPem,
    signCsr(csr, options = {}) {
      const parsed = typeof csr === 'string' ? parseCsr(Buffer.from(csr)) : csr instanceof Uint8Array ? parseCsr(csr) : csr;
      assertCsrSignature(parsed);
      const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
      const notAfter = options.notAfter ?? new Date(notBefore.getTime() + (options.days ?? 365) * DAY);
      const der = issueCertificate({ subject: parsed.subject, publicKey: parsed.publicKey, profile: options.profile ?? PROFILES.client, notBefore, notAfter, issuer });
      return toPem('CERTIFICATE', der);
    },
    async issueIdentity(subject, profile, options = {}) {
      const key = await generateKey(options.keySpec);
      const notBefore = new Date(Date.now() - 60_000);
      const der = issueCertificate({ subject, publicKey: createPublicKey(key), profile, notBefore, notAfter: new Date(notBefore.getTime() + (options.days ?? 365) * DAY), issuer });
      return identityOf(der, key);
    },
  };
}
