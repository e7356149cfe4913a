import { join } from 'node:path';
import type { OwnerRepo } from './owners.js';
import type { SqlDatabase } from './sql.js';

export const STORE_FILE = 'midcert.db';
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

export function storePath(dataDir: string): string {
  return join(dataDir, STORE_FILE);
}

/** What every repository needs: the database, the clock, who is acting, and this process's ownership. */
export interface StoreContext {
  sql: SqlDatabase;
  /** Who is recorded in the audit log and as created_by (e.g. `user:alice`, `daemon`). */
  actor: string;
  /** Now, as an ISO-8601 UTC string. */
  now(): string;
  owner: OwnerRepo;
}
