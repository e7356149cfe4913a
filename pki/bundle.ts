import type { KeyObject } from 'node:crypto';
import { MidcertError } from '../common/errors.js';
import { assertCertificateCount } from '../common/limits.js';
import { certificateToPem, type Certificate } from './certificate.js';
import { buildChain } from './chain.js';
import { toPkcs8Pem } from './keys.js';
import { lintBundle, type LintOptions, type LintReport } from './lint.js';
import type { Finding } from './lint-codes.js';

/**
 * The exact file `manage-certificates -a` imports: leaf, intermediates, root, then the unencrypted
 * PKCS#8 key; LF endings; no blank lines; nothing outside the PEM blocks.
 */
export function assembleBundle(chain: Certificate[], key: KeyObject): string {
  return [...chain.map(certificateToPem), toPkcs8Pem(key)].map((pem) => pem.trim()).join('\n') + '\n';
}

export interface BuiltBundle {
  pem: string;
  chain: Certificate[];
  /** Inputs left out because they are not on the leaf's chain. */
  dropped: Certificate[];
  report: LintReport;
}

/** A bundle that fails lint with errors; carries every finding for the caller to show. */
export class BundleInvalidError extends MidcertError {
  readonly findings: Finding[];
  constructor(findings: Finding[]) {
    const errors = findings.filter((f) => f.severity === 'error');
    const first = errors[0];
    super('BUNDLE_INVALID', `the bundle would not lint clean: ${errors.map((f) => f.code).join(', ')}${first ? ` (${first.message})` : ''}`);
    this.findings = findings;
  }
}

/**
 * Builds the bundle from certificates in any order plus the key: orders the chain from the
 * certificate matching the key up to a root, assembles, lints. Throws BundleInvalidError rather
 * than return a bundle the MID would reject, INPUT_TOO_LARGE past LIMITS.certsPerInput inputs.
 */
export function buildBundle(certificates: Certificate[], key: KeyObject, options: LintOptions = {}): BuiltBundle {
  if (certificates.length === 0) throw new MidcertError('CHAIN_INVALID', 'no certificate given');
  assertCertificateCount(certificates.length); // all inputs together: the bound of cert show and bundle lint
  const built = buildChain(certificates, key);
  const pem = assembleBundle(built.chain, key);
  const report = lintBundle(Buffer.from(pem), options);
  if (!report.ok) throw new BundleInvalidError(report.findings);
  return { pem, chain: built.chain, dropped: built.unused, report };
}
