import { createHash, type KeyObject } from 'node:crypto';
import { isMidcertError } from '../../common/errors.js';
import { buildChain, type BuiltChain } from '../../pki/chain.js';
import { type Certificate } from '../../pki/certificate.js';
import { parseCsr, type ParsedCsr } from '../../pki/csr.js';
import { publicKeysEqual } from '../../pki/keys.js';
import { toPem } from '../../pki/pem.js';
import { spkiDer } from '../../pki/spki.js';
import { rejected, type CaOutcome } from './adapter.js';

/** The CSR as every adapter needs it: bytes to send, and the key the result must carry. */
export interface SubmittedCsr {
  pem: string;
  der: Buffer;
  subjectText: string;
  publicKey: KeyObject;
  /** SHA-256 of the SubjectPublicKeyInfo DER, base64url: the key as a string (ADCS cookies); computed only when read. */
  readonly keyId: string;
  /** All of it, for a CA that signs in process. */
  parsed: ParsedCsr;
}

/** Parses and self-verifies the CSR before anything is sent; a bad one is `rejected`. */
export function readSubmittedCsr(csrPemOrDer: string | Buffer): SubmittedCsr {
  let csr;
  try {
    csr = parseCsr(typeof csrPemOrDer === 'string' ? Buffer.from(csrPemOrDer) : csrPemOrDer);
  } catch (err) {
    throw rejected(`the CSR cannot be parsed${isMidcertError(err) ? `: ${err.message}` : ''}`);
  }
  if (!csr.signatureValid) throw rejected('the CSR signature does not verify (corrupted, or not signed by its own key)');
  const { publicKey } = csr;
  return { pem: toPem('CERTIFICATE REQUEST', csr.der), der: csr.der, subjectText: csr.subjectText, publicKey, get keyId() { return keyIdOf(publicKey); }, parsed: csr };
}

export function keyIdOf(key: KeyObject): string {
  return createHash('sha256').update(spkiDer(key)).digest('base64url');
}

/** More issuer certificates, fetched or read only when the CA's answer lacks them. */
export type IssuerSource = () => Promise<{ certs: Certificate[]; source: string }>;

export interface IssuedCheck {
  /**
   * The CSR's public key, which the certificate must carry: the key itself while the CSR is at
   * hand (compared without encoding it), or its keyId (a request polled later, from its cookie).
   */
  key: { publicKey: KeyObject } | { keyId: string };
  /** How the leaf was asked for ("template WebServer", "profile client"): named when EKU is wrong. */
  issuedUnder?: string;
  /** Where missing chain certificates come from (chainFile, certnew.p7b, EST cacerts…). */
  moreIssuers?: IssuerSource;
  now?: Date;
}

/**
 * The gate every issued certificate passes before an adapter returns it: the leaf parses, holds
 * the CSR's public key, has EKU clientAuth and is in date, and a chain builds from it to a
 * self-signed root. Anything else is `rejected` with the precise reason.
 */
export async function verifyIssued(returned: Certificate[], check: IssuedCheck): Promise<CaOutcome> {
  if (returned.length === 0) throw rejected('the CA answer holds no certificate');
  const { key } = check;
  const leaf = returned.find('publicKey' in key ? (c) => publicKeysEqual(c.publicKey, key.publicKey) : (c) => keyIdOf(c.publicKey) === key.keyId);
  if (!leaf) {
    const first = returned[0] as Certificate;
    throw rejected(`the CA returned a certificate for a different public key than the CSR's (${first.subjectText}, serial ${first.serial})`);
  }
  const eku = leaf.extKeyUsage;
  if (!eku || !eku.includes('clientAuth')) {
    const has = eku ? `EKU: ${eku.join(', ')}` : 'no EKU extension';
    const hint = check.issuedUnder ? `; ${check.issuedUnder}?` : '';
    throw rejected(`the CA issued a certificate without Client Authentication (${has}${hint})`);
  }
  const now = check.now ?? new Date();
  if (leaf.notAfter.getTime() <= now.getTime()) throw rejected(`the CA issued a certificate that expired on ${leaf.notAfter.toISOString()}`);
  if (leaf.basicConstraints?.ca) throw rejected('the CA issued a CA certificate, not an end-entity certificate');

  const others = returned.filter((c) => c !== leaf);
  let built = buildChain([leaf, ...others], leaf.publicKey);
  let source = 'the CA answer';
  if (!built.complete && check.moreIssuers) {
    const more = await check.moreIssuers();
    built = buildChain([leaf, ...others, ...more.certs], leaf.publicKey);
    source = more.source;
  }
  if (!built.complete || built.chain[0] !== leaf) throw rejected(chainProblem(built, source));
  return {
    kind: 'issued',
    certificatePem: toPem('CERTIFICATE', leaf.der),
    chainPem: built.chain.slice(1).map((c) => toPem('CERTIFICATE', c.der)).join(''),
  };
}

function chainProblem(built: BuiltChain, source: string): string {
  const gap = built.gap;
  if (gap?.kind === 'missing-issuer') return `no chain to a root: the issuer of ${gap.cert.subjectText} (${gap.cert.issuerText}) is not in ${source}`;
  if (gap?.kind === 'bad-signature') return `no chain to a root: ${gap.candidate.subjectText} in ${source} did not sign ${gap.cert.subjectText} (renewed CA key?)`;
  return `no chain to a self-signed root from ${source}`;
}
