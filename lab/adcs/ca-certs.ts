import { readCertificates, type Certificate } from '../../pki/certificate.js';
import { issueCertificate, PROFILES } from '../../pki/issue.js';
import { toPem } from '../../pki/pem.js';
import type { LabCa } from '../lab-ca.js';
import type { AdcsStore } from './store.js';

const DAY = 86_400_000;

/**
 * The issuing CA's certificates across renewals. ADCS numbers them 0..nRenewals and serves each
 * via `Renewal=<n>`. A lab renewal re-certifies the same key under the same name (ADCS's "renew
 * with the same key pair"), so leaves issued before and after chain to either certificate.
 */
export class CaCertificates {
  private readonly renewed: Certificate[];

  constructor(private readonly ca: LabCa, private readonly store: AdcsStore) {
    this.renewed = store.renewals().map(parseOne);
  }

  get nRenewals(): number {
    return this.renewed.length;
  }

  /** The issuing CA certificate for `Renewal=<n>`; -1 or omitted = the newest. */
  issuingCert(renewal?: number): Certificate | undefined {
    const index = renewal === undefined || renewal === -1 ? this.nRenewals : renewal;
    if (index === 0) return this.ca.intermediate.cert;
    return this.renewed[index - 1];
  }

  newestNotAfter(): Date {
    return (this.issuingCert() ?? this.ca.intermediate.cert).notAfter;
  }

  /** Issuing CA certificate then root, DER: what the CA-chain .p7b holds. */
  chain(renewal?: number): Buffer[] | undefined {
    const issuing = this.issuingCert(renewal);
    return issuing ? [issuing.der, this.ca.root.cert.der] : undefined;
  }

  renew(): number {
    const { root, intermediate } = this.ca;
    const now = Date.now();
    const der = issueCertificate({
      subject: intermediate.cert.subject,
      publicKey: intermediate.cert.publicKey,
      profile: PROFILES.intermediateCa,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(Math.min(now + 1825 * DAY, root.cert.notAfter.getTime())),
      issuer: { subject: root.cert.subject, key: root.key, publicKey: root.cert.publicKey },
    });
    const pem = toPem('CERTIFICATE', der);
    this.store.addRenewal(pem);
    this.renewed.push(parseOne(pem));
    return this.nRenewals;
  }
}

function parseOne(pem: string): Certificate {
  const cert = readCertificates(Buffer.from(pem))[0];
  if (!cert) throw new Error('a stored CA renewal holds no certificate');
  return cert;
}
