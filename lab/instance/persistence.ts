import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../../common/fs.js';
import type { CredentialSnapshot } from './credentials.js';
import type { Log } from './log.js';
import { schemaOf } from './schema.js';
import { SYS_ID_PATTERN } from './tables.js';
import type { SupportsTls, TableRecord } from './types.js';

export const STATE_FORMAT = 'midcert-lab-instance/1';
const MAX_STATE_BYTES = 512 * 1024 * 1024;
/** Writes are coalesced: 200 MIDs heartbeating must not mean 200 file writes a second. */
const WRITE_DELAY_MS = 250;

export interface InstanceState {
  format: typeof STATE_FORMAT;
  tables: Record<string, TableRecord[]>;
  attachments: Record<string, string>;
  credentials: CredentialSnapshot;
  supportsTls: SupportsTls;
}

/** Reads and checks a state file; undefined when it does not exist yet. */
export async function readState(path: string): Promise<InstanceState | undefined> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!info) return undefined;
  if (info.size > MAX_STATE_BYTES) throw new Error(`state file ${path} is larger than ${MAX_STATE_BYTES} bytes`);
  const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
  return checkState(parsed, path);
}

function checkState(value: unknown, path: string): InstanceState {
  const fail = (why: string): never => { throw new Error(`state file ${path} is not usable: ${why}`); };
  const state = value as Partial<InstanceState> | null;
  if (!state || state.format !== STATE_FORMAT) fail(`format is not ${STATE_FORMAT}`);
  const { tables, attachments, credentials, supportsTls } = state as InstanceState;
  if (typeof tables !== 'object' || tables === null) fail('no tables');
  for (const [name, records] of Object.entries(tables)) {
    if (!schemaOf(name) || !Array.isArray(records)) fail(`unknown table ${name}`);
    for (const record of records) if (!isRecord(record)) fail(`a ${name} record is malformed`);
  }
  if (typeof attachments !== 'object' || attachments === null) fail('no attachments');
  if (!credentials || typeof credentials.passwords !== 'object' || !Array.isArray(credentials.tokens)) fail('no credentials');
  if (!['true', 'mixed', 'false'].includes(supportsTls)) fail('supportsTls is invalid');
  return state as InstanceState;
}

function isRecord(value: unknown): value is TableRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const entries = Object.entries(value);
  return entries.every(([, v]) => typeof v === 'string') && SYS_ID_PATTERN.test((value as TableRecord)['sys_id'] ?? '');
}

/** Debounced, serialized atomic writes of the state file (0600: it holds password hashes). */
export class StateWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;

  constructor(private readonly path: string, private readonly collect: () => InstanceState, private readonly log: Log) {}

  markDirty(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = undefined; void this.flush(); }, WRITE_DELAY_MS);
    this.timer.unref();
  }

  /** Writes now if anything changed; resolves when the file is on disk. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(() => this.writeIfDirty());
    return this.writing;
  }

  private async writeIfDirty(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      await writeFileAtomic(this.path, `${JSON.stringify(this.collect())}\n`, { mode: 0o600 });
    } catch (err) {
      this.dirty = true;
      this.log(`cannot write state file ${this.path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
