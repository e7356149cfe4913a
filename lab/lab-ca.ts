import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/fs.js';
import { parseCertificate, readCertificates, type Certificate } from '../pki/certificate.js';
import { parseCsr, assertCsrSignature } from '../pki/csr.js';
import { issueCertificate, PROFILES, type CertificateProfile } from '../pki/issue.js';
import { generateKey, readPrivateKey, toPkcs8Pem, type KeySpec } from '../pki/keys.js';
import { toPem } from '../pki/pem.js';

/** A certificate with its private key, as the lab keeps them. */
export interface Identity {
  cert: Certificate;
  key: KeyObject;
  certPem: string;
  keyPem: string;
}

/**
 * The lab's two-tier CA (root → issuing intermediate), standing in for a company CA such as
 * ADCS. Tests, the simulators and the demo all issue from it; nothing is committed to the repo.
 */
export interface LabCa {
  root: Identity;
  intermediate: Identity;
  /** Intermediate then root, PEM: what gets published to the instance as the CA chain. */
  chainPem: string;
  /** Issues a certificate for a CSR (PEM or DER); the profile decides KU/EKU like a CA template. */
  signCsr(csr: Uint8Array | string, options?: SignOptions): string;
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

export async function createLabCa(name = 'midcert Lab'): Promise<LabCa> {
  const now = Date.now();
  const rootKey = await generateKey();
  const rootDer = issueCertificate({
    subject: `CN=${name} Root CA,O=midcert Lab`, publicKey: createPublicKey(rootKey), selfSignKey: rootKey,
    profile: PROFILES.rootCa, notBefore: new Date(now - DAY), notAfter: new Date(now + 3650 * DAY),
  });
  const root = identity(rootDer, rootKey);
  const intKey = await generateKey();
  const intDer = issueCertificate({
    subject: `CN=${name} Issuing CA,O=midcert Lab`, publicKey: createPublicKey(intKey), profile: PROFILES.intermediateCa,
    notBefore: new Date(now - DAY), notAfter: new Date(now + 1825 * DAY), issuer: signerOf(root),
  });
  return labCaFrom(root, identity(intDer, intKey));
}

function identity(der: Buffer, key: KeyObject): Identity {
  const cert = parseCertificate(der);
  return { cert, key, certPem: toPem('CERTIFICATE', der), keyPem: toPkcs8Pem(key) };
}

function signerOf(ca: Identity): { subject: Certificate['subject']; key: KeyObject; publicKey: KeyObject } {
  return { subject: ca.cert.subject, key: ca.key, publicKey: ca.cert.publicKey };
}

function labCaFrom(root: Identity, intermediate: Identity): LabCa {
  const issuer = signerOf(intermediate);
  return {
    root,
    intermediate,
    chainPem: intermediate.certPem + root.certPem,
    signCsr(csr, options = {}) {
      const parsed = parseCsr(typeof csr === 'string' ? Buffer.from(csr) : csr);
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
      return identity(der, key);
    },
  };
}

/** Writes root.pem, root.key, intermediate.pem, intermediate.key, chain.pem (keys 0600). */
export async function saveLabCa(ca: LabCa, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, 'root.pem'), ca.root.certPem);
  await writeFileAtomic(join(dir, 'root.key'), ca.root.keyPem, { mode: 0o600 });
  await writeFileAtomic(join(dir, 'intermediate.pem'), ca.intermediate.certPem);
  await writeFileAtomic(join(dir, 'intermediate.key'), ca.intermediate.keyPem, { mode: 0o600 });
  await writeFileAtomic(join(dir, 'chain.pem'), ca.chainPem);
}

export async function loadLabCa(dir: string): Promise<LabCa> {
  const load = async (name: string): Promise<Identity> => {
    const certPem = await readFile(join(dir, `${name}.pem`), 'utf8');
    const keyPem = await readFile(join(dir, `${name}.key`), 'utf8');
    const cert = readCertificates(Buffer.from(certPem))[0];
    if (!cert) throw new Error(`${name}.pem holds no certificate`);
    return { cert, key: readPrivateKey(Buffer.from(keyPem)).key, certPem, keyPem };
  };
  return labCaFrom(await load('root'), await load('intermediate'));
}
