/**
 * PKI toolkit benchmarks: key+CSR generation against `openssl req -newkey rsa:2048` on the same
 * machine (goal: within 1.5×), bundle build and lint times. Run with `make bench`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildBundle } from '../pki/bundle.js';
import { readCertificates } from '../pki/certificate.js';
import { buildCsr } from '../pki/csr.js';
import { generateKey } from '../pki/keys.js';
import { lintBundle } from '../pki/lint.js';
import { makeLabPki } from '../test/helpers/lab-pki.js';

interface Stat { name: string; runs: number; meanMs: number; medianMs: number; p95Ms: number }

async function measure(name: string, runs: number, fn: () => unknown): Promise<Stat> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / runs;
  return { name, runs, meanMs: round(mean), medianMs: round(times[Math.floor(runs / 2)] as number), p95Ms: round(times[Math.floor(runs * 0.95)] as number) };
}

const round = (n: number): number => Math.round(n * 100) / 100;

export async function benchPki(): Promise<Stat[]> {
  const dir = mkdtempSync(join(tmpdir(), 'midcert-bench-'));
  const runs = Number(process.env.BENCH_RUNS ?? 40);
  try {
    const ours = await measure('key+CSR RSA-2048 (midcert, in-process)', runs, async () => {
      buildCsr(await generateKey(), { subject: 'CN=mid01,O=Org,OU=ITOM' });
    });
    const openssl = await measure('key+CSR RSA-2048 (openssl req -newkey, process)', runs, () =>
      execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/OU=ITOM/O=Org/CN=mid01', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.csr')], { stdio: 'pipe' }));
    const oursEc = await measure('key+CSR EC P-256 (midcert, in-process)', runs, async () => {
      buildCsr(await generateKey({ type: 'ec', curve: 'P-256' }), { subject: 'CN=mid01' });
    });
    const pki = await makeLabPki();
    const certs = readCertificates(Buffer.from(pki.ca.root.certPem + pki.leaf.certPem + pki.ca.intermediate.certPem));
    const build = await measure('bundle build (3 certs, any order)', runs * 5, () => buildBundle(certs, pki.leaf.key));
    const lint = await measure('bundle lint (clean bundle)', runs * 5, () => lintBundle(Buffer.from(pki.bundle)));
    return [ours, openssl, oursEc, build, lint];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
