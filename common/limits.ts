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
  /** Certificates in one file or chain. */
  certsPerInput: 64,
  /** PBKDF/PKCS#12 iteration count we accept before refusing (hash-DoS guard). */
  kdfIterations: 10_000_000,
} as const;

export function assertSize(bytes: Uint8Array | string, limit: number, what: string): void {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > limit) {
    throw new MidcertError('INPUT_TOO_LARGE', `${what} is ${size} bytes; the limit is ${limit} bytes`);
  }
}
