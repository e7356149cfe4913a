import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/fs.js';
import { buildCsr } from '../../pki/csr.js';
import { BundleInvalidError } from '../../pki/bundle.js';
import { generateKey, isKeyLabel, keySpecFrom, readKeyBlock, toPkcs8Pem } from '../../pki/keys.js';
import { lintBundle } from '../../pki/lint.js';
import { scanPem, toPem } from '../../pki/pem.js';
import type { Journal } from '../journal.js';
import { keyTypeLabel } from '../../pki/lint.js';
import { assertKeyTypeAllowed } from './install.js';

export interface PrepareRequest {
  renewalId: string;
  subject: string;
  sans: string[];
  keyType: string;
  keyBits?: number;
}

export interface PreparedRenewal {
  renewalId: string;
  csrPem: string;
  publicKeySha256: string;
}

const RENEWAL_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function assertRenewalId(id: string): void {
  if (!RENEWAL_ID.test(id) || id === '.' || id === '..') {
    throw new MidcertError('USAGE', 'renewal_id must be 1-64 characters of letters, digits, ".", "_" or "-"');
  }
}

/** New key (0600, in the renewal's own folder under the state dir) and CSR; only the CSR leaves. */
export async function prepareKeyAndCsr(journal: Journal, request: PrepareRequest): Promise<PreparedRenewal> {
  const spec = keySpecFrom(request.keyType || 'rsa', request.keyBits || undefined);
  const key = await generateKey(spec);
  const csrPem = buildCsr(key, { subject: request.subject, sans: request.sans });
  const dir = await journal.renewalDir(request.renewalId);
  await writeFileAtomic(join(dir, 'key.pem'), toPkcs8Pem(key), { mode: 0o600 });
  await writeFileAtomic(join(dir, 'csr.pem'), csrPem, { mode: 0o644 });
  return { renewalId: request.renewalId, csrPem, publicKeySha256: publicKeySha256(key) };
}

/** The same answer again for a repeated PrepareRenewal with the same id (idempotency). */
export async function readPrepared(journal: Journal, renewalId: string): Promise<PreparedRenewal | undefined> {
  try {
    const csrPem = (await journal.readRenewalFile(renewalId, 'csr.pem')).toString('utf8');
    const keyPem = (await journal.readRenewalFile(renewalId, 'key.pem')).toString('utf8');
    return { renewalId, csrPem, publicKeySha256: publicKeySha256(createPrivateKey(keyPem)) };
  } catch {
    return undefined;
  }
}

export function publicKeySha256(key: KeyObject): string {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex');
}

/**
 * Splits a complete bundle (certificates + one key) for the install path: the key goes to the
 * renewal folder (0600) as if PrepareRenewal had made it; the certificates are handed back.
 * A bundle with error findings is refused before anything is written.
 */
export async function stageBundleKey(journal: Journal, renewalId: string, bundlePem: string, allowKeyTypes: readonly string[] = []): Promise<{ certificatePem: string; chainPem: string }> {
  const report = lintBundle(Buffer.from(bundlePem));
  if (!report.ok) throw new BundleInvalidError(report.findings);
  const blocks = scanPem(bundlePem.replace(/\r/g, ''));
  const keyBlock = blocks.find((b) => isKeyLabel(b.label));
  if (!keyBlock) throw new MidcertError('BUNDLE_INVALID', 'the bundle holds no private key');
  const key = readKeyBlock(keyBlock).key;
  // A key type the vendor does not document is refused before anything is written.
  assertKeyTypeAllowed(report.findings, keyTypeLabel(key), allowKeyTypes);
  const dir = await journal.renewalDir(renewalId);
  await writeFileAtomic(join(dir, 'key.pem'), toPkcs8Pem(key), { mode: 0o600 });
  const certs = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => toPem('CERTIFICATE', b.der));
  return { certificatePem: certs[0] ?? '', chainPem: certs.slice(1).join('') };
}
