import type { IncomingMessage, ServerResponse } from 'node:http';
import { assertMayWrite, type Principal } from './auth.js';
import { queryModeOf, type InstanceContext } from './context.js';
import { readJsonObject, sendJson, sendNoContent } from './http.js';
import { refuse } from './instance-error.js';
import { parseQuery, runQuery } from './query.js';
import { renderOptionsFrom, renderRecord } from './render.js';
import { readableFields } from './schema.js';

/** Largest `sysparm_limit` (a real instance's default page size cap is also 10000). */
const MAX_LIMIT = 10_000;

/** `/api/now/table/{table}[/{sys_id}]`: GET (list or one), POST, PATCH/PUT, DELETE. */
export async function handleTable(req: IncomingMessage, res: ServerResponse, url: URL, ctx: InstanceContext, principal: Principal): Promise<void> {
  const [table = '', sysId, extra] = url.pathname.slice('/api/now/table/'.length).split('/');
  if (table === '' || extra !== undefined || sysId === '') throw refuse.invalidUri();
  const schema = ctx.tables.schema(table);
  const render = renderOptionsFrom(url.searchParams, ctx.settings.url);
  const method = req.method ?? 'GET';
  if (method === 'GET') {
    if (sysId === undefined) return list(res, url.searchParams, ctx, table);
    const record = ctx.tables.get(table, sysId);
    if (!record) throw refuse.noRecord();
    return sendJson(res, 200, { result: renderRecord(record, schema, render) });
  }
  if (method === 'POST' && sysId === undefined) {
    assertMayWrite(principal, schema.writeRoles, 'Insert', table);
    const record = ctx.tables.insert(table, await readJsonObject(req, ctx.limits.jsonBytes));
    return sendJson(res, 201, { result: renderRecord(record, schema, render) }, { Location: `${ctx.settings.url}/api/now/table/${table}/${record['sys_id']}` });
  }
  if ((method === 'PATCH' || method === 'PUT') && sysId !== undefined) {
    assertMayWrite(principal, schema.writeRoles, 'Update', table);
    const record = ctx.tables.update(table, sysId, await readJsonObject(req, ctx.limits.jsonBytes));
    return sendJson(res, 200, { result: renderRecord(record, schema, render) });
  }
  if (method === 'DELETE' && sysId !== undefined) {
    assertMayWrite(principal, schema.writeRoles, 'Delete', table);
    ctx.tables.delete(table, sysId);
    return sendNoContent(res);
  }
  throw refuse.methodNotAllowed();
}

function list(res: ServerResponse, params: URLSearchParams, ctx: InstanceContext, table: string): void {
  const schema = ctx.tables.schema(table);
  // Unknown fields: dropped (vendor default) or no rows (glide.invalid_query.returns_no_rows), SND c_TableAPI.md.
  const query = parseQuery(params.get('sysparm_query') ?? '', readableFields(schema), queryModeOf(ctx));
  if (query.unknownFields.length > 0) {
    ctx.log(`GET ${table}: unknown field(s) ${query.unknownFields.join(', ')} in sysparm_query ${query.noRows ? '(no rows returned)' : '(conditions ignored)'}`);
  }
  const limit = boundedInteger(params.get('sysparm_limit'), 'sysparm_limit', MAX_LIMIT, MAX_LIMIT);
  const offset = boundedInteger(params.get('sysparm_offset'), 'sysparm_offset', 0, Number.MAX_SAFE_INTEGER);
  const selected = runQuery(ctx.tables.rows(table), query);
  const render = renderOptionsFrom(params, ctx.settings.url);
  const page = selected.slice(offset, offset + limit).map((r) => renderRecord(r, schema, render));
  sendJson(res, 200, { result: page }, { 'X-Total-Count': String(selected.length) });
}

export function boundedInteger(text: string | null, name: string, fallback: number, max: number): number {
  if (text === null || text === '') return fallback;
  if (!/^\d{1,16}$/.test(text)) throw refuse.badRequest(`Invalid ${name}`, `${name} must be a non-negative integer`);
  return Math.min(Number(text), max);
}
