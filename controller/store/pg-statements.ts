import { createHash } from 'node:crypto';
import type { SqlParam } from './sql.js';

/**
 * Statements with more parameters are long `IN` lists (fleet-wide reads, one text per list
 * length): rare, and each would hold a plan in every connection of the server, so they stay unnamed.
 */
const MAX_NAMED_PARAMS = 64;

/**
 * The repositories' parameterised statements as PostgreSQL prepared statements: each text gets a
 * stable name, so a connection parses and plans it once and afterwards only binds and executes
 * it (a rotation sends the same dozen statements for every MID). A script without parameters
 * (migrations, BEGIN …) stays an unnamed simple query: it may hold several statements.
 *
 * A prepared `SELECT *` fails with 0A000 ("cached plan must not change result type") once
 * another process has changed the table under it (a newer midcert migrating the schema); then
 * `renew()` moves every text to new names, which the connections parse afresh.
 */
export class PreparedStatements {
  private readonly known = new Map<string, { text: string; name: string }>();
  private generation = 0;

  /** `limit`: distinct texts given names; later ones (none in our code today) run unnamed, as do texts without parameters. */
  constructor(private readonly toDollars: (sql: string) => string, private readonly limit = 512) {}

  config(sql: string, params: readonly SqlParam[]): { text: string; name?: string; values: SqlParam[] } {
    const values = [...params];
    if (params.length === 0 || params.length > MAX_NAMED_PARAMS) return { text: this.toDollars(sql), values };
    let entry = this.known.get(sql);
    if (!entry) {
      const text = this.toDollars(sql);
      if (this.known.size >= this.limit) return { text, values };
      entry = { text, name: `midcert_${this.generation}_${createHash('sha256').update(text).digest('hex').slice(0, 24)}` };
      this.known.set(sql, entry);
    }
    return { text: entry.text, name: entry.name, values };
  }

  renew(): void {
    this.generation += 1;
    this.known.clear();
  }
}

/** PostgreSQL's "cached plan must not change result type": a prepared statement outlived a schema change. */
export function isStalePlan(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === '0A000' && /cached plan/i.test(String((err as Error).message));
}
