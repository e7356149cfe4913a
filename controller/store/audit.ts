import { MidcertError, isMidcertError } from '../../common/errors.js';
import { writeTx, type StoreContext } from './db.js';

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
  record(entry: AuditEntry): AuditRecord;
  list(query?: AuditQuery): AuditRecord[];
  /**
   * Runs a mutation and its `ok` audit row in one write transaction, so the log and the data
   * never disagree; when the mutation throws, an `error` row with the error code is written
   * instead and the error rethrown. `refine` adds what is known only afterwards (a new job id).
   */
  audited<T>(entry: Omit<AuditEntry, 'result' | 'errorCode'>, fn: () => T, refine?: (result: T) => Partial<AuditEntry>): T;
}

interface AuditRow {
  id: number; at: string; actor: string; action: string; target: string | null;
  params: string; result: AuditResult; error_code: string | null;
}

const ACTION = /^[a-z][a-z0-9.-]{0,63}$/;
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|credential|private|^key$|keypem|key_pem|cookie/i;
const MAX_STRING = 512;
const MAX_PARAMS_BYTES = 16 * 1024;

export function createAuditRepo(ctx: StoreContext): AuditRepo {
  const insert = ctx.db.prepare(`INSERT INTO audit (at, actor, action, target, params, result, error_code)
    VALUES (@at, @actor, @action, @target, @params, @result, @error_code) RETURNING *`);
  const select = ctx.db.prepare(`SELECT * FROM audit
    WHERE (@target IS NULL OR target = @target) AND (@action IS NULL OR action = @action) AND id > @after
    ORDER BY id DESC LIMIT @limit`);

  const record = (entry: AuditEntry): AuditRecord => {
    if (!ACTION.test(entry.action)) throw new MidcertError('INTERNAL', `audit action "${entry.action.slice(0, 80)}" is not a dotted lower-case verb`);
    const row = insert.get({
      at: ctx.now(),
      actor: (entry.actor ?? ctx.actor).slice(0, 128),
      action: entry.action,
      target: entry.target?.slice(0, 256) ?? null,
      params: sanitizeParams(entry.params ?? {}),
      result: entry.result ?? 'ok',
      error_code: entry.errorCode ?? null,
    }) as AuditRow;
    return toRecord(row);
  };

  return {
    record: (entry) => writeTx(ctx.db, () => record(entry)),
    list(query = {}) {
      const rows = select.all({
        target: query.target ?? null,
        action: query.action ?? null,
        after: query.afterId ?? 0,
        limit: Math.min(Math.max(1, query.limit ?? 100), 10_000),
      }) as AuditRow[];
      return rows.map(toRecord);
    },
    audited(entry, fn, refine) {
      try {
        return writeTx(ctx.db, () => {
          const result = fn();
          record({ ...entry, ...(refine ? refine(result) : {}), result: 'ok' });
          return result;
        });
      } catch (err) {
        const code = isMidcertError(err) ? err.code : 'INTERNAL';
        // When the database itself is the problem, the error row cannot be written either.
        if (code !== 'STORE_BUSY' && code !== 'STORE_UNAVAILABLE') {
          try {
            writeTx(ctx.db, () => record({ ...entry, result: 'error', errorCode: code }));
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
