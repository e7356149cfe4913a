import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:https';
import { MidcertError } from '../common/errors.js';
import { sleep } from './processes.js';

/**
 * The few ServiceNow REST calls `up` and `status` make against the lab instance, as an
 * administrator would: Table API and Attachment API over HTTPS, trusting only the lab root.
 * (The product's own instance client lives in controller/; the lab does not depend on it.)
 */

export interface Reply {
  status: number;
  text: string;
  json: unknown;
}

export type TableRecord = Record<string, string>;

export class InstanceRest {
  private readonly agent: Agent;
  private readonly authorization: string;

  constructor(readonly url: string, credentials: { username: string; password: string }, caPem: string, private readonly timeoutMs = 15_000) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 8, ca: caPem });
    this.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  }

  close(): void {
    this.agent.destroy();
  }

  call(method: string, path: string, body?: { json: unknown } | { raw: string; contentType: string }, auth = true): Promise<Reply> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (auth) headers['Authorization'] = this.authorization;
    let payload: Buffer | undefined;
    if (body && 'json' in body) {
      payload = Buffer.from(JSON.stringify(body.json));
      headers['Content-Type'] = 'application/json';
    } else if (body) {
      payload = Buffer.from(body.raw);
      headers['Content-Type'] = body.contentType;
    }
    if (payload) headers['Content-Length'] = String(payload.length);
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, this.url), { method, headers, agent: this.agent, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(new MidcertError('LAB_START_FAILED', `${method} ${path}: ${err.message}`)));
      req.end(payload);
    });
  }

  async insert(table: string, fields: Record<string, string>): Promise<TableRecord> {
    const reply = await this.call('POST', `/api/now/table/${table}?sysparm_exclude_reference_link=true`, { json: fields });
    return resultOf(reply, 201, `insert into ${table}`) as TableRecord;
  }

  async get(table: string, sysId: string, fields?: string[]): Promise<TableRecord> {
    const query = `sysparm_exclude_reference_link=true${fields ? `&sysparm_fields=${fields.join(',')}` : ''}`;
    return resultOf(await this.call('GET', `/api/now/table/${table}/${sysId}?${query}`), 200, `read ${table}/${sysId}`) as TableRecord;
  }

  async query(table: string, encodedQuery: string, fields?: string[]): Promise<TableRecord[]> {
    const params = new URLSearchParams({ sysparm_query: encodedQuery, sysparm_exclude_reference_link: 'true', sysparm_limit: '10000' });
    if (fields) params.set('sysparm_fields', fields.join(','));
    return resultOf(await this.call('GET', `/api/now/table/${table}?${params}`), 200, `query ${table}`) as TableRecord[];
  }

  /**
   * The documented order for a certificate record: pick a sys_id, attach the PEM to it, then
   * insert the record with that sys_id (DESIGN §4). Returns the inserted record.
   */
  async uploadCertificate(table: 'sys_ca_certificate' | 'sys_user_certificate', pem: string, fields: Record<string, string>): Promise<TableRecord> {
    const sysId = randomBytes(16).toString('hex');
    const params = new URLSearchParams({ table_name: table, table_sys_id: sysId, file_name: `${fields['name'] ?? 'certificate'}.pem`.replace(/[^\w.-]+/g, '_') });
    const attach = await this.call('POST', `/api/now/attachment/file?${params}`, { raw: pem, contentType: 'application/x-pem-file' });
    resultOf(attach, 201, `attach the certificate to ${table}`);
    return this.insert(table, { sys_id: sysId, ...fields });
  }

  /** Polls until the record's publish_status reads published (Exists or Active, DESIGN §4). */
  async waitPublished(table: string, sysId: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = (await this.get(table, sysId, ['publish_status']))['publish_status'] ?? '';
      if (status === 'Exists' || status === 'Active') return;
      if (Date.now() > deadline) throw new MidcertError('LAB_START_FAILED', `${table} ${sysId} was not published within ${timeoutMs} ms (publish_status "${status}")`);
      await sleep(100);
    }
  }
}

function resultOf(reply: Reply, expected: number, what: string): unknown {
  if (reply.status !== expected) {
    const message = (reply.json as { error?: { message?: string; detail?: string } } | undefined)?.error;
    const why = message ? `${message.message ?? ''}${message.detail ? ` (${message.detail})` : ''}` : reply.text.slice(0, 200);
    throw new MidcertError('LAB_START_FAILED', `the lab instance refused to ${what}: HTTP ${reply.status} ${why}`);
  }
  return (reply.json as { result?: unknown } | undefined)?.result;
}
