import { randomBytes } from 'node:crypto';
import { InstanceError, refuse } from './instance-error.js';
import { hidingFields, schemaOf, tableNames, type TableSchema } from './schema.js';
import { snowDateTime } from './time.js';
import type { TableRecord } from './types.js';

/**
 * Business rules run inside every write, whether it came over REST or through the admin handle,
 * so the two paths cannot disagree. `previous` is undefined on insert.
 */
export interface TableRules {
  /** May adjust `record` or throw an InstanceError to refuse the write. `system`: the instance's own write. */
  beforeWrite?(table: string, record: TableRecord, previous: TableRecord | undefined, system: boolean): void;
  afterWrite?(table: string, record: TableRecord, previous: TableRecord | undefined, system: boolean): void;
  afterDelete?(table: string, record: TableRecord): void;
  /** Lets computed state (e.g. ecc_agent Down) settle before anyone reads a table. */
  beforeRead?(table: string): void;
}

export interface WriteOptions {
  /** A write by the instance itself: read-only fields are accepted. */
  system?: boolean;
}

export const SYS_ID_PATTERN = /^[0-9a-f]{32}$/;

export function newSysId(): string {
  return randomBytes(16).toString('hex');
}

/** In-memory tables: one Map per table, insertion-ordered, records replaced (not mutated) on update. */
export class TableStore {
  private readonly data = new Map<string, Map<string, TableRecord>>();
  private readonly rules: TableRules[] = [];
  private readonly listeners: Array<() => void> = [];

  /** `hidden`: per table, fields stored but not rendered or queryable (e.g. the invented fingerprint). */
  constructor(private readonly now: () => Date, private readonly hidden: Readonly<Record<string, readonly string[]>> = {}) {
    for (const name of tableNames()) this.data.set(name, new Map());
  }

  use(rules: TableRules): void {
    this.rules.push(rules);
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  has(table: string): boolean {
    return this.data.has(table);
  }

  schema(table: string): TableSchema {
    const schema = schemaOf(table);
    if (!schema) throw refuse.invalidTable(table);
    const hidden = this.hidden[table];
    return hidden ? hidingFields(schema, hidden) : schema;
  }

  /** All records of a table after read rules ran. Live objects: callers must not mutate them. */
  rows(table: string): TableRecord[] {
    const rows = this.table(table);
    for (const rule of this.rules) rule.beforeRead?.(table);
    return [...rows.values()];
  }

  /** Like rows() without read rules, for the rules themselves. */
  rawRows(table: string): TableRecord[] {
    return [...this.table(table).values()];
  }

  get(table: string, sysId: string): TableRecord | undefined {
    const rows = this.table(table);
    for (const rule of this.rules) rule.beforeRead?.(table);
    return rows.get(sysId);
  }

  insert(table: string, input: Record<string, unknown>, options: WriteOptions = {}): TableRecord {
    const schema = this.schema(table);
    const rows = this.table(table);
    const sysId = this.pickSysId(rows, input['sys_id']);
    const stamp = snowDateTime(this.now());
    const record: TableRecord = { sys_id: sysId };
    for (const field of schema.fields) record[field] = schema.defaults?.[field] ?? '';
    Object.assign(record, cleanInput(schema, input, options.system === true));
    record['sys_created_on'] = stamp;
    record['sys_updated_on'] = stamp;
    const system = options.system === true;
    for (const rule of this.rules) rule.beforeWrite?.(table, record, undefined, system);
    rows.set(sysId, record);
    for (const rule of this.rules) rule.afterWrite?.(table, record, undefined, system);
    this.changed();
    return record;
  }

  update(table: string, sysId: string, input: Record<string, unknown>, options: WriteOptions = {}): TableRecord {
    const schema = this.schema(table);
    const rows = this.table(table);
    const previous = rows.get(sysId);
    if (!previous) throw refuse.noRecord();
    const record: TableRecord = { ...previous, ...cleanInput(schema, input, options.system === true) };
    record['sys_updated_on'] = snowDateTime(this.now());
    const system = options.system === true;
    for (const rule of this.rules) rule.beforeWrite?.(table, record, previous, system);
    rows.set(sysId, record);
    for (const rule of this.rules) rule.afterWrite?.(table, record, previous, system);
    this.changed();
    return record;
  }

  delete(table: string, sysId: string): TableRecord {
    const rows = this.table(table);
    const record = rows.get(sysId);
    if (!record) throw refuse.noRecord();
    rows.delete(sysId);
    for (const rule of this.rules) rule.afterDelete?.(table, record);
    this.changed();
    return record;
  }

  snapshot(): Record<string, TableRecord[]> {
    const out: Record<string, TableRecord[]> = {};
    for (const [name, rows] of this.data) out[name] = [...rows.values()];
    return out;
  }

  /** Loads saved records as they are (no rules run: they already ran when the records were written). */
  restore(saved: Record<string, TableRecord[]>): void {
    for (const [name, records] of Object.entries(saved)) {
      const rows = this.data.get(name);
      if (!rows) continue;
      rows.clear();
      for (const record of records) rows.set(record['sys_id'] as string, record);
    }
  }

  private table(name: string): Map<string, TableRecord> {
    const rows = this.data.get(name);
    if (!rows) throw refuse.invalidTable(name);
    return rows;
  }

  private pickSysId(rows: Map<string, TableRecord>, requested: unknown): string {
    if (requested === undefined || requested === null || requested === '') return newSysId();
    if (typeof requested !== 'string' || !SYS_ID_PATTERN.test(requested)) {
      throw refuse.badRequest('Invalid sys_id', 'sys_id must be 32 lower-case hexadecimal characters');
    }
    if (rows.has(requested)) throw refuse.badRequest('Operation Failed', `a record with sys_id ${requested} already exists`);
    return requested;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/** Keeps known, writable fields and turns JSON scalars into the strings the API stores. */
function cleanInput(schema: TableSchema, input: Record<string, unknown>, system: boolean): TableRecord {
  const out: TableRecord = {};
  for (const field of schema.fields) {
    if (!Object.hasOwn(input, field)) continue;
    if (!system && schema.readOnly?.includes(field)) continue;
    out[field] = toFieldValue(field, input[field]);
  }
  return out;
}

function toFieldValue(field: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === null) return '';
  throw new InstanceError(400, 'Invalid value', {
    detail: `field "${field}" must be a string, number or boolean`, reason: `non-scalar value for ${field}`,
  });
}
