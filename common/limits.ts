import { MidcertError } from './errors.js';

/**
 * Size bounds for untrusted input. A MID bundle is a few KiB; a keystore with a handful of
 * entries is a few tens of KiB. These bounds are generous for real files and small enough that a
 * hostile file cannot exhaust memory or CPU.
 */
export const LIMITS = {
  /** PEM/DER certificates, keys, CSRs, bundles, PKCS#7 files. */
  pemBytes: 1024 * 1024,
  /** PKCS#12/PFX files. */
  pfxBytes: 1024 * 1024,
  /** JKS/PKCS12 keystores. */
  keystoreBytes: 4 * 1024 * 1024,
  /** Certificates in one file or chain: `cert show`, `bundle build` and `bundle lint` alike. */
  certsPerInput: 64,
  /** The MID's agent/config.xml (a real one is a few KiB). */
  configXmlBytes: 256 * 1024,
  /** The agent's own config file (agent.yaml). */
  agentConfigBytes: 256 * 1024,
  /** A password file (store password, PFX or key password). */
  passwordFileBytes: 4096,
  /**
   * One JSON file of the agent's state dir (journal.json, last-result.json). A last result can
   * carry manage-certificates' output (at most 1 MiB each of stdout and stderr), JSON-escaped.
   */
  journalBytes: 16 * 1024 * 1024,
  /** The agent's state-dir lock file (a pid and a few words). */
  lockFileBytes: 4096,
  /** PBKDF/PKCS#12 iteration count we accept before refusing (hash-DoS guard). */
  kdfIterations: 10_000_000,
} as const;

/** Refuses more certificates in one input than LIMITS.certsPerInput (before they are parsed). */
export function assertCertificateCount(count: number): void {
  if (count > LIMITS.certsPerInput) {
    throw new MidcertError('INPUT_TOO_LARGE', `${count} certificates in one input; the limit is ${LIMITS.certsPerInput}`);
  }
}

export function assertSize(bytes: Uint8Array | string, limit: number, what: string): void {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > limit) {
    throw new MidcertError('INPUT_TOO_LARGE', `${what} is ${size} bytes; the limit is ${limit} bytes`);
  }
}
