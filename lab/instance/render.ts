import { readableFields, type TableSchema } from './schema.js';
import type { TableRecord } from './types.js';

export interface RenderOptions {
  /** `sysparm_fields`; all readable fields when undefined. Unknown names are left out. */
  fields: string[] | undefined;
  /** false when `sysparm_exclude_reference_link=true`. */
  referenceLinks: boolean;
  baseUrl: string;
}

/** Reads the rendering parameters shared by the Table and Attachment APIs. */
export function renderOptionsFrom(params: URLSearchParams, baseUrl: string): RenderOptions {
  const fields = params.get('sysparm_fields');
  return {
    fields: fields ? fields.split(',').map((f) => f.trim()).filter((f) => f !== '') : undefined,
    referenceLinks: params.get('sysparm_exclude_reference_link') !== 'true',
    baseUrl,
  };
}

/**
 * A record as the Table API returns it. Like a real instance, a non-empty reference field reads
 * `{"link": ".../api/now/table/<table>/<sys_id>", "value": "<sys_id>"}` unless the client asks
 * for `sysparm_exclude_reference_link=true`, in which case every value is a plain string.
 */
export function renderRecord(record: TableRecord, schema: TableSchema, options: RenderOptions): Record<string, unknown> {
  const readable = readableFields(schema);
  const names = options.fields ? options.fields.filter((f) => readable.includes(f)) : readable;
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const value = record[name] ?? '';
    const target = schema.references?.[name];
    out[name] = target && value !== '' && options.referenceLinks
      ? { link: `${options.baseUrl}/api/now/table/${target}/${value}`, value }
      : value;
  }
  return out;
}
