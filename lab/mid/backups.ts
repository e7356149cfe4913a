import { appendFile, copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BACKUP_AUDIT_LOG, BACKUP_DIR_NAME } from './constants.js';

/**
 * The MID's own keystore backups (docs/vendor-facts.md §14, SND:servicenow-platform/mid-server/mid-unified-keystore.md,
 * SND:…/r_MIDServerProperties.md): "the MID Server automatically makes a backup of the agent_keystore
 * file when it is changed. Backups are stored in security_backup under the agent folder", with
 * "a dedicated backup log file: keystore_backup_audit_trail.log … backup file name with a time stamp,
 * a matching keypairs.mid_id, and a list of aliases". Properties: mid.keystore.max_backups (manual,
 * through manage-certificates; default 3; 0 or negative = no backup), mid.keystore.max_live_backups
 * (from the running MID; default 2), mid.keystore.backup_overwrite_timespan (seconds; default 60: a
 * backup made within that span of the most recent one replaces it).
 *
 * The file naming is not documented; the lab's is `<keystore>.<yyyyMMddTHHmmssZ>` for manual backups
 * (manage-certificates.sh, same scheme) and `<keystore>.live.<stamp>` for the running MID's. This module
 * makes the live ones; manage-certificates.sh makes the manual ones with the same rules.
 */

export interface BackupPolicy {
  max: number;
  overwriteSpanSeconds: number;
}

export const DEFAULT_LIVE_POLICY: BackupPolicy = { max: 2, overwriteSpanSeconds: 60 };

function stamp(when: Date): string {
  return when.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** Backs up `keystorePath` before the running MID changes it; returns the backup's path, or undefined when none was made. */
export async function liveBackup(agentDir: string, keystorePath: string, info: { midId: string; aliases: string[] }, policy: BackupPolicy = DEFAULT_LIVE_POLICY, now = new Date()): Promise<string | undefined> {
  if (policy.max <= 0) return undefined;
  if (!(await stat(keystorePath).then((s) => s.isFile(), () => false))) return undefined;
  const dir = join(agentDir, BACKUP_DIR_NAME);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const prefix = `${basename(keystorePath)}.live.`;
  const existing = await ownBackups(dir, prefix);
  const newest = existing.at(-1);
  if (newest && now.getTime() - newest.mtimeMs < policy.overwriteSpanSeconds * 1000) {
    await rm(join(dir, newest.name), { force: true });
    existing.pop();
  }
  let target = join(dir, `${prefix}${stamp(now)}`);
  for (let n = 1; await stat(target).then(() => true, () => false); n++) target = join(dir, `${prefix}${stamp(now)}.${n}`);
  await copyFile(keystorePath, target);
  existing.push({ name: basename(target), mtimeMs: now.getTime() });
  for (const old of existing.slice(0, Math.max(0, existing.length - policy.max))) await rm(join(dir, old.name), { force: true });
  await appendFile(join(dir, BACKUP_AUDIT_LOG),
    `${now.toISOString()} live backup ${basename(target)} keypairs.mid_id=${info.midId || '(none)'} aliases=${info.aliases.join(',')}\n`);
  return target;
}

async function ownBackups(dir: string, prefix: string): Promise<{ name: string; mtimeMs: number }[]> {
  const names = (await readdir(dir)).filter((n) => n.startsWith(prefix));
  const withTimes = await Promise.all(names.map(async (name) => ({ name, mtimeMs: (await stat(join(dir, name))).mtimeMs })));
  return withTimes.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
}
