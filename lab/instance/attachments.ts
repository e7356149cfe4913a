import { createHash } from 'node:crypto';
import { InstanceError, refuse } from './instance-error.js';
import { holdsPrivateKey } from './private-key.js';
import { SYS_ID_PATTERN, type TableRules, type TableStore } from './tables.js';
import type { NewAttachment, TableRecord } from './types.js';

/** Total bytes the instance keeps in attachments; more is refused with 413. */
const TOTAL_BYTES_CAP = 256 * 1024 * 1024;

export interface StoredAttachment {
  record: TableRecord;
  content: Buffer;
}

/**
 * Attachments: metadata as sys_attachment rows (so the Table API and queries see them, as on a
 * real instance), content in a Map beside them.
 */
export class AttachmentStore implements TableRules {
  private readonly content = new Map<string, Buffer>();
  private totalBytes = 0;

  constructor(private readonly tables: TableStore) {}

  add(input: NewAttachment): TableRecord {
    const body = typeof input.body === 'string' ? Buffer.from(input.body) : Buffer.from(input.body);
    assertAttachment(this.tables, input, body);
    if (this.totalBytes + body.length > TOTAL_BYTES_CAP) {
      throw new InstanceError(413, 'Request entity too large', { detail: 'The instance attachment store is full', reason: 'attachment store full' });
    }
    const record = this.tables.insert('sys_attachment', {
      table_name: input.tableName,
      table_sys_id: input.tableSysId,
      file_name: input.fileName,
      content_type: input.contentType,
      size_bytes: String(body.length),
      hash: createHash('sha256').update(body).digest('hex'),
    }, { system: true });
    this.content.set(record['sys_id'] as string, body);
    this.totalBytes += body.length;
    return record;
  }

  contentOf(sysId: string): Buffer | undefined {
    return this.content.get(sysId);
  }

  /** Attachments of one record, oldest first. */
  listFor(tableName: string, tableSysId: string): StoredAttachment[] {
    return this.tables.rawRows('sys_attachment')
      .filter((a) => a['table_name'] === tableName && a['table_sys_id'] === tableSysId)
      .map((record) => ({ record, content: this.content.get(record['sys_id'] as string) ?? Buffer.alloc(0) }));
  }

  afterDelete(table: string, record: TableRecord): void {
    if (table !== 'sys_attachment') return;
    const id = record['sys_id'] as string;
    this.totalBytes -= this.content.get(id)?.length ?? 0;
    this.content.delete(id);
  }

  snapshot(): Record<string, string> {
    return Object.fromEntries([...this.content].map(([id, bytes]) => [id, bytes.toString('base64')]));
  }

  restore(saved: Record<string, string>): void {
    for (const [id, base64] of Object.entries(saved)) {
      const bytes = Buffer.from(base64, 'base64');
      this.content.set(id, bytes);
      this.totalBytes += bytes.length;
    }
  }
}

function assertAttachment(tables: TableStore, input: NewAttachment, body: Buffer): void {
  if (!tables.has(input.tableName) || input.tableName === 'sys_attachment') {
    throw refuse.badRequest('Invalid table name', `table_name "${input.tableName.slice(0, 80)}" is not a table`);
  }
  if (!SYS_ID_PATTERN.test(input.tableSysId)) throw refuse.badRequest('Invalid table_sys_id', 'table_sys_id must be a sys_id');
  if (input.fileName === '' || input.fileName.length > 255) throw refuse.badRequest('Invalid file_name', 'file_name must be 1 to 255 characters');
  if (input.contentType === '' || input.contentType.length > 255) throw refuse.badRequest('Invalid Content-Type', 'a Content-Type header is required');
  if (body.length === 0) throw refuse.badRequest('Invalid attachment', 'the attachment is empty');
  if (holdsPrivateKey(body)) {
    throw new InstanceError(400, 'Invalid attachment', {
      detail: 'The file holds a private key; only certificates may be uploaded',
      reason: `refused attachment "${input.fileName.slice(0, 80)}" for ${input.tableName}: it holds a private key`,
    });
  }
}
