import { refuse } from './instance-error.js';
import type { TableRecord } from './types.js';

/**
 * The encoded-query subset of `sysparm_query`: conditions joined by `^` (AND) and `^OR` (OR with
 * the previous condition), `ORDERBYfield` / `ORDERBYDESCfield`.
 *
 * A condition (or ORDERBY) on a field the table does not have is handled as the vendor documents
 * (SND api-reference/rest-apis/c_TableAPI.md, vendor-facts §1): "By default, if part of a query is
 * invalid, such as an invalid field name, the instance ignores the invalid part. It then returns
 * rows using only the valid portion of the query. Set the property
 * glide.invalid_query.returns_no_rows to true to instead return no rows". Mode `ignore` is the
 * default, `no_rows` the property; `strict` (400 "Invalid query") is the lab's old test mode.
 * Malformed syntax (no operator, a dangling ^OR) stays a 400 in every mode.
 */
export type InvalidQueryMode = 'ignore' | 'no_rows' | 'strict';
export const INVALID_QUERY_PROPERTY = 'glide.invalid_query.returns_no_rows';
const OPERATORS = ['NOT IN', 'NOT LIKE', 'ISNOTEMPTY', 'ISEMPTY', 'STARTSWITH', 'ENDSWITH', 'LIKE', 'IN',
  '!=', '>=', '<=', '=', '>', '<'] as const;
type Operator = (typeof OPERATORS)[number];
const NO_VALUE: readonly Operator[] = ['ISEMPTY', 'ISNOTEMPTY'];

export interface Condition {
  field: string;
  op: Operator;
  value: string;
}

export interface ParsedQuery {
  /** AND of OR-groups. */
  groups: Condition[][];
  order: Array<{ field: string; desc: boolean }>;
  /** Unknown fields met (conditions and orderings on them were dropped). */
  unknownFields: string[];
  /** `no_rows` mode and an unknown field: the query selects nothing. */
  noRows: boolean;
}

const MAX_QUERY_LENGTH = 8192;

export function parseQuery(text: string, fields: readonly string[], mode: InvalidQueryMode = 'strict'): ParsedQuery {
  if (text.length > MAX_QUERY_LENGTH) throw invalid(`the query is longer than ${MAX_QUERY_LENGTH} characters`);
  const known = new Set(fields);
  const query: ParsedQuery = { groups: [], order: [], unknownFields: [], noRows: false };
  const unknown = (field: string, what: string): void => {
    if (mode === 'strict') throw invalid(what);
    query.unknownFields.push(field);
    if (mode === 'no_rows') query.noRows = true;
  };
  let lastDropped = false;
  for (const term of text.split('^')) {
    if (term === '' || term === 'EQ') continue;
    if (term.startsWith('ORDERBY')) {
      const order = parseOrder(term);
      if (known.has(order.field)) query.order.push(order);
      else unknown(order.field, `cannot order by unknown field "${order.field}"`);
    } else if (/^OR[a-z_]/.test(term)) {
      const condition = parseCondition(term.slice(2));
      if (!known.has(condition.field)) { unknown(condition.field, `unknown field "${condition.field}"`); continue; }
      // OR with a dropped condition: the valid part alone remains.
      if (lastDropped) { query.groups.push([condition]); lastDropped = false; } else orGroup(query, term).push(condition);
    } else if (term.startsWith('NQ')) throw invalid('^NQ (new query) is not supported by the lab instance');
    else {
      const condition = parseCondition(term);
      lastDropped = !known.has(condition.field);
      if (lastDropped) unknown(condition.field, `unknown field "${condition.field}"`);
      else query.groups.push([condition]);
    }
  }
  return query;
}

function orGroup(query: ParsedQuery, term: string): Condition[] {
  const last = query.groups[query.groups.length - 1];
  if (!last) throw invalid(`"${term}" has no condition before it to OR with`);
  return last;
}

function parseOrder(term: string): { field: string; desc: boolean } {
  const desc = term.startsWith('ORDERBYDESC');
  const field = term.slice(desc ? 'ORDERBYDESC'.length : 'ORDERBY'.length);
  return { field, desc };
}

function parseCondition(term: string): Condition {
  const match = /^([a-z_][a-z0-9_]*)(.*)$/s.exec(term);
  if (!match) throw invalid(`"${term}" is not a condition`);
  const field = match[1] as string;
  const rest = match[2] as string;
  const op = OPERATORS.find((candidate) => rest.startsWith(candidate));
  if (!op) throw invalid(`"${term}" has no supported operator`);
  const value = rest.slice(op.length);
  if (NO_VALUE.includes(op) && value !== '') throw invalid(`${op} takes no value in "${term}"`);
  return { field, op, value };
}

function invalid(detail: string): Error {
  return refuse.badRequest('Invalid query', detail);
}

export function matches(record: TableRecord, condition: Condition): boolean {
  const actual = record[condition.field] ?? '';
  const { value } = condition;
  switch (condition.op) {
    case '=': return actual === value;
    case '!=': return actual !== value;
    case 'IN': return value.split(',').includes(actual);
    case 'NOT IN': return !value.split(',').includes(actual);
    case 'LIKE': return actual.toLowerCase().includes(value.toLowerCase());
    case 'NOT LIKE': return !actual.toLowerCase().includes(value.toLowerCase());
    case 'STARTSWITH': return actual.toLowerCase().startsWith(value.toLowerCase());
    case 'ENDSWITH': return actual.toLowerCase().endsWith(value.toLowerCase());
    case 'ISEMPTY': return actual === '';
    case 'ISNOTEMPTY': return actual !== '';
    case '>': return compare(actual, value) > 0;
    case '>=': return compare(actual, value) >= 0;
    case '<': return compare(actual, value) < 0;
    case '<=': return compare(actual, value) <= 0;
  }
}

/** Numbers compare as numbers; everything else (including ServiceNow date-times) as text. */
function compare(a: string, b: string): number {
  const numeric = /^-?\d+(\.\d+)?$/;
  if (numeric.test(a) && numeric.test(b)) return Number(a) - Number(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Filters and orders (stable; insertion order otherwise). */
export function runQuery(records: readonly TableRecord[], query: ParsedQuery): TableRecord[] {
  if (query.noRows) return [];
  const selected = records.filter((record) => query.groups.every((group) => group.some((c) => matches(record, c))));
  if (query.order.length === 0) return selected;
  return selected.sort((a, b) => {
    for (const { field, desc } of query.order) {
      const order = compare(a[field] ?? '', b[field] ?? '');
      if (order !== 0) return desc ? -order : order;
    }
    return 0;
  });
}
