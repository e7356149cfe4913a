import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeOwner, type Store, type StoreConfig } from '../store/index.js';
import type { GlobalOptions } from './context.js';

/**
 * The PostgreSQL settings `store migrate` uses: its flags, else controller.yaml's `store:` (when
 * the data dir has one), else pg's own defaults (PGPASSFILE, ~/.pgpass).
 */
export async function loadStoreSettings(globals: GlobalOptions, o: { passwordFile?: string; tlsMode?: 'disable' | 'require' | 'verify-full'; tlsCaFile?: string }): Promise<Omit<StoreConfig, 'url'>> {
  const { loadControllerConfig, resolveDataDir, readSecretFile } = await import('../config.js');
  const dataDir = resolveDataDir(globals.dataDir);
  const configured = existsSync(join(dataDir, 'controller.yaml')) ? (await loadControllerConfig(dataDir)).store : undefined;
  const passwordFile = o.passwordFile ?? configured?.passwordFile;
  // Read here so an unreadable file fails before either database is opened.
  await readSecretFile(passwordFile, 'store password');
  const tls = o.tlsMode || o.tlsCaFile
    ? { mode: o.tlsMode ?? 'verify-full', caFile: o.tlsCaFile ?? configured?.tls?.caFile, certFile: configured?.tls?.certFile, keyFile: configured?.tls?.keyFile }
    : configured?.tls;
  return { passwordFile, tls, busyTimeoutMs: configured?.busyTimeoutMs };
}

export interface StoreStatus {
  backend: string;
  location: string;
  schemaVersion: number;
  leader: { owner: string; ownerId: string; since: string; leaseExpiresAt: string } | null;
  unfinishedJobs: Array<{ id: number; kind: string; state: string; owner: string; ownerId: string | null }>;
}

export async function storeStatus(store: Store): Promise<StoreStatus> {
  const leader = await store.leadership().current();
  const jobs = await store.jobs.unfinished();
  return {
    backend: store.backend,
    location: store.path,
    schemaVersion: store.migrations.version,
    leader: leader && leader.owner?.live ? { owner: describeOwner(leader.owner), ownerId: leader.ownerId, since: leader.since, leaseExpiresAt: leader.leaseExpiresAt } : null,
    unfinishedJobs: await Promise.all(jobs.map(async (j) => ({ id: j.id, kind: j.kind, state: j.state, ownerId: j.ownerId, owner: describeOwner(await store.owner.describe(j.ownerId)) }))),
  };
}
