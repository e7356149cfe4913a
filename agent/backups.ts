import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError } from '../common/errors.js';
import { restoreFileAtomic, writeFileAtomic } from '../common/fs.js';

/**
 * Timestamped copies of the MID keystore in the agent's state dir, taken before every change.
 * Restoring writes the saved bytes back atomically, so the keystore is byte-for-byte what it was.
 */
export class KeystoreBackups {
  constructor(private readonly dir: string, private readonly keep: number) {}

  async take(keystorePath: string): Promise<string> {
    let bytes: Buffer;
    try {
      bytes = await readFile(keystorePath);
    } catch (err) {
      throw new MidcertError('KEYSTORE_UNREADABLE', `cannot back up ${keystorePath}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
    const path = join(this.dir, `${stamp}-${digest}.keystore`);
    await writeFileAtomic(path, bytes, { mode: 0o600 });
    await this.prune();
    return path;
  }

  /** Newest first. */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.keystore')).sort().reverse().map((n) => join(this.dir, n));
  }

  async restore(backupPath: string, keystorePath: string): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await readFile(backupPath);
    } catch {
      throw new MidcertError('BACKUP_MISSING', `the keystore backup ${backupPath} is gone`);
    }
    await restoreFileAtomic(keystorePath, bytes);
  }

  private async prune(): Promise<void> {
    const all = await this.list();
    for (const old of all.slice(this.keep)) await rm(old, { force: true });
  }
}
