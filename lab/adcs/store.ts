import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../common/fs.js';
import type { AdcsRequestRecord, TemplateMode } from './types.js';

/** What the state file holds: the CA database rows plus the CA-side settings that change at run time. */
interface AdcsState {
  version: 1;
  nextRequestId: number;
  requests: AdcsRequestRecord[];
  /** PEM of each renewed issuing-CA certificate; renewal 0 is the lab CA's own intermediate. */
  caRenewals: string[];
  templateModes: Record<string, TemplateMode>;
}

/** Bounds that keep a long benchmark or a hostile client from growing the state without limit. */
export const STORE_LIMITS = { requests: 50_000, stateFileBytes: 256 * 1024 * 1024, renewals: 100 } as const;

/**
 * The simulated CA database. Every change is written (atomically, in order) before the caller
 * answers, so a restarted simulator sees exactly what its clients were told.
 */
export class AdcsStore {
  private readonly rows = new Map<number, AdcsRequestRecord>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly file: string | undefined, private state: AdcsState) {
    for (const row of state.requests) this.rows.set(row.id, row);
  }

  static async open(file: string | undefined, firstRequestId: number): Promise<AdcsStore> {
    const fresh: AdcsState = { version: 1, nextRequestId: firstRequestId, requests: [], caRenewals: [], templateModes: {} };
    if (!file) return new AdcsStore(undefined, fresh);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const loaded = await readState(file);
    return new AdcsStore(file, loaded ?? fresh);
  }

  /** Hands out the next request id; undefined when the database is full. */
  nextId(): number | undefined {
    if (this.rows.size >= STORE_LIMITS.requests) return undefined;
    return this.state.nextRequestId++;
  }

  add(row: AdcsRequestRecord): void {
    this.rows.set(row.id, row);
  }

  /** The live row (callers mutate it, then persist). */
  row(id: number): AdcsRequestRecord | undefined {
    return this.rows.get(id);
  }

  list(): AdcsRequestRecord[] {
    return [...this.rows.values()].map((r) => structuredClone(r));
  }

  renewals(): readonly string[] {
    return this.state.caRenewals;
  }

  addRenewal(pem: string): void {
    if (this.state.caRenewals.length >= STORE_LIMITS.renewals) throw new Error(`at most ${STORE_LIMITS.renewals} CA renewals`);
    this.state.caRenewals.push(pem);
  }

  templateModes(): Readonly<Record<string, TemplateMode>> {
    return this.state.templateModes;
  }

  setTemplateMode(name: string, mode: TemplateMode): void {
    this.state.templateModes[name] = mode;
  }

  /** Queues a write of the whole state; resolves when this change is on disk. */
  persist(): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    const snapshot = JSON.stringify({ ...this.state, requests: [...this.rows.values()] }, null, 1);
    const write = this.writing.then(() => writeFileAtomic(file, snapshot, { mode: 0o600 }));
    this.writing = write.catch(() => undefined); // one failed write must not block later ones
    return write;
  }

  async flushed(): Promise<void> {
    await this.writing;
  }
}

async function readState(file: string): Promise<AdcsState | undefined> {
  const info = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!info) return undefined;
  if (info.size > STORE_LIMITS.stateFileBytes) throw new Error(`ADCS state file ${file} is larger than ${STORE_LIMITS.stateFileBytes} bytes`);
  const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<AdcsState>;
  if (parsed.version !== 1 || !Array.isArray(parsed.requests) || !Array.isArray(parsed.caRenewals) || typeof parsed.nextRequestId !== 'number') {
    throw new Error(`ADCS state file ${file} is not a version 1 simulator state`);
  }
  return { version: 1, nextRequestId: parsed.nextRequestId, requests: parsed.requests, caRenewals: parsed.caRenewals, templateModes: parsed.templateModes ?? {} };
}
