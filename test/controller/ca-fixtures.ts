import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CaOutcome } from '../../controller/ca/adapter.js';
import type { CaConfig } from '../../controller/config.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { generateKey, publicKeysEqual } from '../../pki/keys.js';

/** Shared by the ca-*.test.ts files: configs, CSRs, ports, and outcome assertions. */

export function caConfig(partial: Partial<CaConfig> & Pick<CaConfig, 'type'>): CaConfig {
  return { timeoutSeconds: 30, validityDays: 365, ...partial };
}

export async function newCsr(subject = 'CN=mid01.lab.local,O=midcert Lab'): Promise<{ key: KeyObject; csr: string }> {
  const key = await generateKey();
  return { key, csr: buildCsr(key, { subject }) };
}

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `midcert-${prefix}-`));
}

/** A TCP port that was free a moment ago (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export type Issued = Extract<CaOutcome, { kind: 'issued' }>;

/**
 * Asserts an issued outcome and returns the parsed leaf and chain; checks the leaf carries `key`
 * and the chain is leaf → … → `rootPem`'s certificate.
 */
export function assertIssued(outcome: CaOutcome, key: KeyObject, rootSha256?: string): { leaf: Certificate; chain: Certificate[] } {
  assert.equal(outcome.kind, 'issued', `expected issued, got ${JSON.stringify(outcome)}`);
  const issued = outcome as Issued;
  const [leaf, ...extra] = readCertificates(Buffer.from(issued.certificatePem));
  assert.ok(leaf);
  assert.equal(extra.length, 0, 'certificatePem holds the leaf only');
  assert.ok(publicKeysEqual(leaf.publicKey, key), 'the leaf carries the CSR key');
  assert.ok(leaf.extKeyUsage?.includes('clientAuth'));
  const chain = readCertificates(Buffer.from(issued.chainPem));
  assert.ok(chain.length >= 1, 'a chain is returned');
  const root = chain[chain.length - 1] as Certificate;
  assert.ok(root.selfSigned, 'the chain ends at a self-signed root');
  if (rootSha256) assert.equal(root.sha256, rootSha256);
  assert.equal(leaf.issuerText, chain[0]?.subjectText, 'the chain starts with the leaf issuer');
  return { leaf, chain };
}

export function assertOutcome<K extends CaOutcome['kind']>(outcome: CaOutcome, kind: K, reason?: RegExp): Extract<CaOutcome, { kind: K }> {
  assert.equal(outcome.kind, kind, `expected ${kind}, got ${JSON.stringify(outcome)}`);
  if (reason) assert.match((outcome as { reason: string }).reason, reason);
  return outcome as Extract<CaOutcome, { kind: K }>;
}
