import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/fs.js';
import { LIMITS, assertSize } from '../../common/limits.js';
import { readCertificates } from '../../pki/certificate.js';
import { readPrivateKey } from '../../pki/keys.js';
import { twoTierCaFrom, type Identity, type TwoTierCa } from '../../pki/two-tier-ca.js';

/** The files of a two-tier CA directory, in the order they are written. */
export const CA_FILES = ['root.pem', 'root.key', 'intermediate.pem', 'intermediate.key', 'chain.pem'] as const;

/** Writes root.pem, root.key, intermediate.pem, intermediate.key, chain.pem (keys 0600, dir 0700). */
export async function saveCaFiles(ca: TwoTierCa, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, 'root.pem'), ca.root.certPem);
  await writeFileAtomic(join(dir, 'root.key'), ca.root.keyPem, { mode: 0o600 });
  await writeFileAtomic(join(dir, 'intermediate.pem'), ca.intermediate.certPem);
  await writeFileAtomic(join(dir, 'intermediate.key'), ca.intermediate.keyPem, { mode: 0o600 });
  await writeFileAtomic(join(dir, 'chain.pem'), ca.chainPem);
}

export async function loadCaFiles(dir: string): Promise<TwoTierCa> {
  const load = async (name: string): Promise<Identity> => {
    const certPem = await readFile(join(dir, `${name}.pem`), 'utf8');
    const keyPem = await readFile(join(dir, `${name}.key`), 'utf8');
    assertSize(certPem, LIMITS.pemBytes, `${name}.pem`);
    assertSize(keyPem, LIMITS.pemBytes, `${name}.key`);
    const cert = readCertificates(Buffer.from(certPem))[0];
    if (!cert) throw new Error(`${name}.pem holds no certificate`);
    return { cert, key: readPrivateKey(Buffer.from(keyPem)).key, certPem, keyPem };
  };
  return twoTierCaFrom(await load('root'), await load('intermediate'));
}
