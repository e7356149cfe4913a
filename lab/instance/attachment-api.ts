import type { IncomingMessage, ServerResponse } from 'node:http';
import { assertMayWrite, type Principal } from './auth.js';
import { queryModeOf, type InstanceContext } from './context.js';
import { readBody, sendBytes, sendJson, sendNoContent } from './http.js';
import { InstanceError, refuse } from './instance-error.js';
import { parseQuery, runQuery } from './query.js';
import { renderOptionsFrom, renderRecord } from './render.js';
import { readableFields } from './schema.js';
import { boundedInteger } from './table-api.js';
import type { TableRecord } from './types.js';

const PREFIX = '/api/now/attachment';

/**
 * The Attachment API subset: `POST /file?table_name=&table_sys_id=&file_name=` (raw body),
 * `GET ?sysparm_query=` (list), `GET /{sys_id}` (metadata), `GET /{sys_id}/file`, `DELETE /{sys_id}`.
 */
export async function handleAttachment(req: IncomingMessage, res: ServerResponse, url: URL, ctx: InstanceContext, principal: Principal): Promise<void> {
  const rest = url.pathname.slice(PREFIX.length);
  const method = req.method ?? 'GET';
  if (rest === '/file' && method === 'POST') return upload(req, res, url, ctx, principal);
  if (rest === '' && method === 'GET') return list(res, url.searchParams, ctx);
  const match = /^\/([0-9a-f]{32})(\/file)?$/.exec(rest);
  if (!match) throw refuse.invalidUri();
  const record = ctx.tables.get('sys_attachment', match[1] as string);
  if (!record) throw refuse.noRecord();
  if (method === 'GET' && match[2]) {
    return sendBytes(res, 200, ctx.attachments.contentOf(record['sys_id'] as string) ?? Buffer.alloc(0), record['content_type'] as string);
  }
  if (method === 'GET') return sendJson(res, 200, { result: view(record, ctx) });
  if (method === 'DELETE' && !match[2]) {
    assertMayWrite(principal, ctx.tables.schema(record['table_name'] as string).writeRoles, 'Delete', 'sys_attachment');
    ctx.tables.delete('sys_attachment', record['sys_id'] as string);
    return sendNoContent(res);
  }
  throw refuse.methodNotAllowed();
}

async function upload(req: IncomingMessage, res: ServerResponse, url: URL, ctx: InstanceContext, principal: Principal): Promise<void> {
  const params = url.searchParams;
  const tableName = params.get('table_name') ?? '';
  if (!ctx.tables.has(tableName)) throw refuse.badRequest('Invalid table name', `table_name "${tableName.slice(0, 80)}" is not a table`);
  // Attaching is writing to the target table: the same roles apply (SND c_AttachmentAPI.md: "roles
  // required to read and write records on the target table"; vendor-facts §3).
  assertMayWrite(principal, ctx.tables.schema(tableName).writeRoles, 'Insert', tableName);
  const body = await readBody(req, ctx.limits.attachmentBytes);
  const tableSysId = params.get('table_sys_id') ?? '';
  // SND c_AttachmentAPI.md: 404 "the record specified by the table_name and table_sys_id
  // parameters does not exist" — mode '404'; 'accept' is what public automation relies on (vendor-facts §13).
  if (ctx.settings.attachmentToMissingRecord === '404' && /^[0-9a-f]{32}$/.test(tableSysId) && !ctx.tables.rawRows(tableName).some((r) => r['sys_id'] === tableSysId)) {
    throw new InstanceError(404, 'No Record found', {
      detail: "Record doesn't exist or ACL restricts the record retrieval", reason: `attachment for ${tableName} ${tableSysId}: no such record`,
    });
  }
  const record = ctx.attachments.add({
    tableName,
    tableSysId,
    fileName: params.get('file_name') ?? '',
    contentType: req.headers['content-type'] ?? '',
    body,
  });
  ctx.log(`attachment ${record['sys_id']} "${record['file_name']}" added to ${tableName} ${record['table_sys_id']}`);
  sendJson(res, 201, { result: view(record, ctx) }, { Location: `${ctx.settings.url}${PREFIX}/${record['sys_id']}` });
}

function list(res: ServerResponse, params: URLSearchParams, ctx: InstanceContext): void {
  const schema = ctx.tables.schema('sys_attachment');
  const query = parseQuery(params.get('sysparm_query') ?? '', readableFields(schema), queryModeOf(ctx));
  const limit = boundedInteger(params.get('sysparm_limit'), 'sysparm_limit', 10_000, 10_000);
  const selected = runQuery(ctx.tables.rows('sys_attachment'), query);
  sendJson(res, 200, { result: selected.slice(0, limit).map((r) => view(r, ctx, params)) }, { 'X-Total-Count': String(selected.length) });
}

function view(record: TableRecord, ctx: InstanceContext, params = new URLSearchParams()): Record<string, unknown> {
  const schema = ctx.tables.schema('sys_attachment');
  const rendered = renderRecord(record, schema, renderOptionsFrom(params, ctx.settings.url));
  return { ...rendered, download_link: `${ctx.settings.url}${PREFIX}/${record['sys_id']}/file` };
}
