import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readBoundedFile, readBoundedFileIfExists } from '../common/bounded-read.js';
import { MidcertError } from '../common/errors.js';
import { restoreFileAtomic, writeFileAtomic } from '../common/fs.js';
import { LIMITS } from '../common/limits.js';

/**
 * Timestamped copies of the MID keystore in the agent's state dir, taken before every change.
 * Restoring writes the saved bytes back atomically, so the keystore is byte-for-byte what it was.
 */
export class KeystoreBackups {
  constructor(private readonly dir: string, private readonly keep: number) {}

  /**
   * Copies the keystore into the backup folder. Only a regular file within LIMITS.keystoreBytes
   * is backed up (KEYSTORE_UNREADABLE, INPUT_TOO_LARGE otherwise): a FIFO or a device in its place
   * is refused, never read without end.
   */
  async take(keystorePath: string): Promise<string> {
    const bytes = await readBoundedFile(keystorePath, { what: 'the keystore to back up', maxBytes: LIMITS.keystoreBytes, unreadableCode: 'KEYSTORE_UNREADABLE' });
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

  /**
   * The bytes of a backup, bounded like the keystore: BACKUP_MISSING when it is gone,
   * ROLLBACK_FAILED when it is not a regular file, INPUT_TOO_LARGE past LIMITS.keystoreBytes.
   */
  async read(backupPath: string): Promise<Buffer> {
    const bytes = await readBoundedFileIfExists(backupPath, { what: 'the keystore backup', maxBytes: LIMITS.keystoreBytes, unreadableCode: 'ROLLBACK_FAILED' });
    if (!bytes) throw new MidcertError('BACKUP_MISSING', `the keystore backup ${backupPath} is gone`);
    return bytes;
  }

  async restore(backupPath: string, keystorePath: string): Promise<void> {
    await restoreFileAtomic(keystorePath, await this.read(backupPath));
  }

  private async prune(): Promise<void> {
    const all = await this.list();
    for (const old of all.slice(this.keep)) await rm(old, { force: true });
  }
}
