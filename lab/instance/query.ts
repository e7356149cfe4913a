import { refuse } from './instance-error.js';
import type { TableRecord } from './types.js';

/**
 * The encoded-query subset of `sysparm_query`: conditions joined by `^` (AND) and `^OR` (OR with
 * the previous condition), `ORDERBYfield` / `ORDERBYDESCfield`. Unlike a default real instance,
 * which silently ignores a condition on an unknown field (and so returns every row), the lab
 * answers 400: a client bug must not pass tests here and delete too much in production.
 */
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
}

const MAX_QUERY_LENGTH = 8192;

export function parseQuery(text: string, fields: readonly string[]): ParsedQuery {
  if (text.length > MAX_QUERY_LENGTH) throw invalid(`the query is longer than ${MAX_QUERY_LENGTH} characters`);
  const known = new Set(fields);
  const query: ParsedQuery = { groups: [], order: [] };
  for (const term of text.split('^')) {
    if (term === '' || term === 'EQ') continue;
    if (term.startsWith('ORDERBY')) query.order.push(parseOrder(term, known));
    else if (/^OR[a-z_]/.test(term)) orGroup(query, term).push(parseCondition(term.slice(2), known));
    else if (term.startsWith('NQ')) throw invalid('^NQ (new query) is not supported by the lab instance');
    else query.groups.push([parseCondition(term, known)]);
  }
  return query;
}

function orGroup(query: ParsedQuery, term: string): Condition[] {
  const last = query.groups[query.groups.length - 1];
  if (!last) throw invalid(`"${term}" has no condition before it to OR with`);
  return last;
}

function parseOrder(term: string, known: Set<string>): { field: string; desc: boolean } {
  const desc = term.startsWith('ORDERBYDESC');
  const field = term.slice(desc ? 'ORDERBYDESC'.length : 'ORDERBY'.length);
  if (!known.has(field)) throw invalid(`cannot order by unknown field "${field}"`);
  return { field, desc };
}

function parseCondition(term: string, known: Set<string>): Condition {
  const match = /^([a-z_][a-z0-9_]*)(.*)$/s.exec(term);
  if (!match) throw invalid(`"${term}" is not a condition`);
  const field = match[1] as string;
  const rest = match[2] as string;
  if (!known.has(field)) throw invalid(`unknown field "${field}"`);
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
