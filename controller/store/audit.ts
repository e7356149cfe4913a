import { MidcertError, isMidcertError } from '../../common/errors.js';
import type { StoreContext } from './db.js';
import type { SqlParam } from './sql.js';

/**
 * The append-only audit log: who did what to which target, when, and how it ended. Triggers in
 * the schema refuse UPDATE and DELETE. Params are sanitised on the way in — keys that name a
 * secret are replaced, long strings cut — so a careless caller cannot leak a password into it.
 */
export type AuditResult = 'ok' | 'error';

export interface AuditEntry {
  /** Dotted verb, e.g. `agent.add`, `job.transition`, `agent-identity.sign`. */
  action: string;
  /** What was acted on, e.g. `agent:mid01`, `job:42`. */
  target?: string;
  params?: Record<string, unknown>;
  result?: AuditResult;
  errorCode?: string;
  /** Defaults to the store's actor. */
  actor?: string;
}

export interface AuditRecord {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  params: Record<string, unknown>;
  result: AuditResult;
  errorCode: string | null;
}

export interface AuditQuery {
  /** Newest first; default 100, at most 10,000. */
  limit?: number;
  target?: string;
  action?: string;
  /** Only entries with a larger id (for tailing). */
  afterId?: number;
}

export interface AuditRepo {
  record(entry: AuditEntry): Promise<AuditRecord>;
  /**
   * Several `ok`-or-error rows in one statement, no transaction of its own: atomic alone, or part
   * of the caller's write transaction (which then needs no savepoint per row).
   */
  append(entries: AuditEntry[]): Promise<void>;
  /**
   * `VALUES (…), (…)` of checked, sanitised rows (columns AUDIT_COLUMNS, in order) with their
   * parameters, for a statement that inserts them itself as one part of a larger statement.
   */
  valuesOf(entries: AuditEntry[]): { sql: string; params: SqlParam[] };
  list(query?: AuditQuery): Promise<AuditRecord[]>;
  /**
   * Runs a mutation and its `ok` audit row in one write transaction, so the log and the data
   * never disagree; when the mutation throws, an `error` row with the error code is written
   * instead and the error rethrown. `refine` adds what is known only afterwards (a new job id).
   */
  audited<T>(entry: Omit<AuditEntry, 'result' | 'errorCode'>, fn: () => Promise<T>, refine?: (result: T) => Partial<AuditEntry>): Promise<T>;
}

interface AuditRow {
  id: number; at: string; actor: string; action: string; target: string | null;
  params: string; result: AuditResult; error_code: string | null;
}

/** The audit table's columns a row is written with, in the order valuesOf() gives their values. */
export const AUDIT_COLUMNS = 'at, actor, action, target, params, result, error_code';

const ACTION = /^[a-z][a-z0-9.-]{0,63}$/;
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|credential|private|^key$|keypem|key_pem|cookie/i;
const MAX_STRING = 512;
const MAX_PARAMS_BYTES = 16 * 1024;

export function createAuditRepo(ctx: StoreContext): AuditRepo {
  const { sql } = ctx;
  const values = (entry: AuditEntry, at: string): Array<string | null> => {
    if (!ACTION.test(entry.action)) throw new MidcertError('INTERNAL', `audit action "${entry.action.slice(0, 80)}" is not a dotted lower-case verb`);
    return [at, (entry.actor ?? ctx.actor).slice(0, 128), entry.action, entry.target?.slice(0, 256) ?? null, sanitizeParams(entry.params ?? {}), entry.result ?? 'ok', entry.errorCode ?? null];
  };
  const valuesOf = (entries: AuditEntry[]): { sql: string; params: SqlParam[] } => {
    const at = ctx.now();
    return { sql: `VALUES ${entries.map(() => '(?, ?, ?, ?, ?, ?, ?)').join(', ')}`, params: entries.flatMap((e) => values(e, at)) };
  };
  const INSERT = `INSERT INTO audit (${AUDIT_COLUMNS})`;
  const record = async (entry: AuditEntry): Promise<AuditRecord> => {
    const rows = valuesOf([entry]);
    const row = await sql.get<AuditRow>(`${INSERT} ${rows.sql} RETURNING *`, rows.params);
    return toRecord(row as AuditRow);
  };
  const append = async (entries: AuditEntry[]): Promise<void> => {
    if (entries.length === 0) return;
    const rows = valuesOf(entries);
    await sql.run(`${INSERT} ${rows.sql}`, rows.params);
  };

  return {
    record: (entry) => sql.write(() => record(entry)),
    append,
    valuesOf,
    async list(query = {}) {
      const where = ['id > ?'];
      const params: Array<string | number> = [query.afterId ?? 0];
      if (query.target !== undefined) { where.push('target = ?'); params.push(query.target); }
      if (query.action !== undefined) { where.push('action = ?'); params.push(query.action); }
      params.push(Math.min(Math.max(1, query.limit ?? 100), 10_000));
      const rows = await sql.all<AuditRow>(`SELECT * FROM audit WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`, params);
      return rows.map(toRecord);
    },
    async audited(entry, fn, refine) {
      try {
        return await sql.write(async () => {
          const result = await fn();
          await record({ ...entry, ...(refine ? refine(result) : {}), result: 'ok' });
          return result;
        });
      } catch (err) {
        const code = isMidcertError(err) ? err.code : 'INTERNAL';
        // When the database itself is the problem, the error row cannot be written either.
        if (code !== 'STORE_BUSY' && code !== 'STORE_UNAVAILABLE') {
          try {
            await sql.write(() => record({ ...entry, result: 'error', errorCode: code }));
          } catch {
            // The original error matters more than the audit row about it.
          }
        }
        throw err;
      }
    },
  };
}

function toRecord(row: AuditRow): AuditRecord {
  return {
    id: row.id, at: row.at, actor: row.actor, action: row.action, target: row.target,
    params: JSON.parse(row.params) as Record<string, unknown>, result: row.result, errorCode: row.error_code,
  };
}

/** JSON of `params` with secret-named keys replaced and long strings cut, at most 16 KiB. */
export function sanitizeParams(params: Record<string, unknown>): string {
  const clean = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value;
    if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
    if (depth > 6) return '[nested too deep]';
    if (Array.isArray(value)) return value.slice(0, 200).map((v) => clean(v, depth + 1));
    if (typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === undefined) continue;
        out[k] = SECRET_KEY.test(k) ? '[redacted]' : clean(v, depth + 1);
      }
      return out;
    }
    return String(value);
  };
  const json = JSON.stringify(clean(params, 0));
  return Buffer.byteLength(json) > MAX_PARAMS_BYTES ? JSON.stringify({ truncated: true, bytes: Buffer.byteLength(json) }) : json;
}
