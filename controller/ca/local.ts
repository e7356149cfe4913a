import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { createTwoTierCa, type TwoTierCa } from '../../pki/two-tier-ca.js';
import { CA_FILES, loadCaFiles, saveCaFiles } from './local-files.js';
import { readCertificates } from '../../pki/certificate.js';
import { PROFILES } from '../../pki/issue.js';
import type { CaConfig } from '../config.js';
import { rejected, settle, type CaAdapter } from './adapter.js';
import { readSubmittedCsr, verifyIssued } from './verify.js';

/**
 * `local`: a file CA (root → issuing intermediate) in the data dir, the embedded default for labs
 * and the demo. Same layout as the lab CA (controller/ca/local-files.ts, which the lab uses too), so `ca.dir` can point the
 * controller at a lab's CA directory.
 */
const DAY = 86_400_000;

export function localCaDir(dataDir: string, dir?: string): string {
  return dir ?? join(dataDir, 'ca');
}

/**
 * Creates the local CA unless one is there (keys 0600, directory 0700). Never overwrites: a
 * directory holding only some of the files is refused rather than "repaired" with new keys.
 */
export async function initLocalCa(dataDir: string, options: { dir?: string; name?: string } = {}): Promise<{ dir: string; created: boolean }> {
  const dir = localCaDir(dataDir, options.dir);
  const present = await presentFiles(dir);
  if (present.length === CA_FILES.length) {
    await openLocalCa(dir);
    return { dir, created: false };
  }
  if (present.length > 0) {
    throw new MidcertError('CONFIG_INVALID', `${dir} holds an incomplete local CA (missing ${CA_FILES.filter((f) => !present.includes(f)).join(', ')}); restore it or remove the directory`);
  }
  await saveCaFiles(await createTwoTierCa(options.name ?? 'midcert Local', 'midcert'), dir);
  return { dir, created: true };
}

async function presentFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of CA_FILES) if (await access(join(dir, name)).then(() => true, () => false)) found.push(name);
  return found;
}

async function openLocalCa(dir: string): Promise<TwoTierCa> {
  try {
    return await loadCaFiles(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no local CA there; run `midcert init`' : code ? `cannot read it (${code})` : (err as Error).message.split('\n')[0];
    throw new MidcertError('CONFIG_INVALID', `local CA ${dir}: ${why}`);
  }
}

export async function createLocalAdapter(cfg: CaConfig, ctx: { dataDir: string }): Promise<CaAdapter> {
  const ca = await openLocalCa(localCaDir(ctx.dataDir, cfg.dir));
  // Parsed once: every issued leaf is checked against the same two certificates.
  const chain = readCertificates(Buffer.from(ca.chainPem));
  return {
    type: 'local',
    submit: (csrPem) => settle(async () => {
      const csr = readSubmittedCsr(csrPem);
      // Like ADCS, never issue past the issuing CA's own expiry.
      const notBefore = new Date(Date.now() - 60_000);
      const notAfter = new Date(Math.min(notBefore.getTime() + cfg.validityDays * DAY, ca.intermediate.cert.notAfter.getTime()));
      const leafPem = ca.signCsr(csr.parsed, { profile: PROFILES.client, notBefore, notAfter });
      return verifyIssued([...readCertificates(Buffer.from(leafPem)), ...chain], { key: { publicKey: csr.publicKey }, issuedUnder: 'local CA profile client' });
    }),
    poll: async () => rejected('the local CA never leaves a request pending; there is nothing to poll').outcome,
  };
}
