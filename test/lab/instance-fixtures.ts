import { request as httpsRequest } from 'node:https';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { startInstance } from '../../lab/instance/index.js';
import type { InstanceOptions, RunningInstance } from '../../lab/instance/index.js';
import { PROFILES } from '../../pki/issue.js';

/** Shared helpers for the lab-instance tests: PKI made at run time, real HTTPS clients. */

export const ADMIN = { username: 'admin', password: 'lab-admin-password' };

export interface LabPki {
  ca: LabCa;
  server: Identity;
}

export async function makePki(name = 'Instance Test'): Promise<LabPki> {
  const ca = await createLabCa(name);
  const server = await ca.issueIdentity('CN=localhost,O=midcert Lab', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  return { ca, server };
}

export interface StartedInstance extends RunningInstance {
  logLines: string[];
  pki: LabPki;
}

export async function start(pki: LabPki, options: Partial<InstanceOptions> = {}): Promise<StartedInstance> {
  const logLines: string[] = [];
  const instance = await startInstance({
    tls: { certPem: pki.server.certPem + pki.ca.intermediate.certPem, keyPem: pki.server.keyPem },
    admin: ADMIN,
    publishDelayMs: 100,
    log: (line) => logLines.push(line),
    ...options,
  });
  return Object.assign(instance, { logLines, pki });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  bytes: Buffer;
  json: any;
}

export interface CallOptions {
  method?: string;
  /** [user, password] for Basic, or a bearer token. */
  auth?: [string, string] | { bearer: string };
  body?: unknown;
  /** Raw body (sent as is). */
  raw?: Buffer | string;
  headers?: Record<string, string>;
  /** Client certificate (leaf, optionally followed by intermediates) and key for mutual TLS. */
  client?: { certPem: string; keyPem: string };
}

/** One HTTPS request on a fresh connection (no agent: no connection or session reuse between calls). */
export function call(instance: StartedInstance, path: string, options: CallOptions = {}): Promise<Reply> {
  const url = new URL(path, instance.url);
  const headers: Record<string, string> = { ...options.headers };
  if (Array.isArray(options.auth)) headers['Authorization'] = `Basic ${Buffer.from(options.auth.join(':')).toString('base64')}`;
  else if (options.auth) headers['Authorization'] = `Bearer ${options.auth.bearer}`;
  let payload: Buffer | undefined;
  if (options.raw !== undefined) payload = Buffer.from(options.raw);
  else if (options.body !== undefined) {
    payload = Buffer.from(JSON.stringify(options.body));
    headers['Content-Type'] ??= 'application/json';
  }
  if (payload) headers['Content-Length'] = String(payload.length);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      method: options.method ?? (payload ? 'POST' : 'GET'),
      headers,
      agent: false,
      ca: instance.pki.ca.root.certPem,
      ...(options.client ? { cert: options.client.certPem, key: options.client.keyPem } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString('utf8');
        let json: unknown;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, bytes, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export const asAdmin: [string, string] = [ADMIN.username, ADMIN.password];

/** Polls until `check` returns a value that is not undefined, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function randomSysId(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The documented upload order: pick a sys_id, attach the PEM to it, then insert the record with
 * that sys_id. Returns the inserted record.
 */
export async function uploadCertificate(instance: StartedInstance, table: 'sys_ca_certificate' | 'sys_user_certificate', pem: string, fields: Record<string, string> = {}): Promise<any> {
  const sysId = randomSysId();
  const attach = await call(instance, `/api/now/attachment/file?table_name=${table}&table_sys_id=${sysId}&file_name=cert.pem`, {
    auth: asAdmin, raw: pem, headers: { 'Content-Type': 'application/x-pem-file' },
  });
  if (attach.status !== 201) throw new Error(`attachment upload failed: ${attach.status} ${attach.text}`);
  const insert = await call(instance, `/api/now/table/${table}?sysparm_exclude_reference_link=true`, {
    auth: asAdmin, body: { sys_id: sysId, name: `cert ${sysId.slice(0, 6)}`, ...fields },
  });
  if (insert.status !== 201) throw new Error(`insert failed: ${insert.status} ${insert.text}`);
  return insert.json.result;
}

/** Publishes a CA chain and waits until it is the client-certificate trust anchor set. */
export async function publishChain(instance: StartedInstance, chainPem: string): Promise<any> {
  const record = await uploadCertificate(instance, 'sys_ca_certificate', chainPem);
  await eventually(() => (instance.admin.tables.get('sys_ca_certificate', record.sys_id)?.['publish_status'] === 'Pending' ? undefined : true));
  return record;
}

/** A MID service user with the mid_server role, and a published leaf mapped to it. */
export async function enrolMid(instance: StartedInstance, name: string, options: { roles?: string[]; identity?: Identity } = {}): Promise<{ identity: Identity; user: Record<string, string>; record: any }> {
  const user = instance.admin.addUser({ userName: `svc_${name}`, roles: options.roles ?? ['mid_server'] });
  const identity = options.identity ?? await instance.pki.ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, { keySpec: { type: 'ec', curve: 'P-256' } });
  const record = await uploadCertificate(instance, 'sys_user_certificate', identity.certPem, { user: user['sys_id'] as string });
  await eventually(() => (instance.admin.tables.get('sys_user_certificate', record.sys_id)?.['publish_status'] === 'Pending' ? undefined : true));
  return { identity, user, record };
}

export function heartbeat(instance: StartedInstance, client: { certPem: string; keyPem: string } | undefined, name: string): Promise<Reply> {
  return call(instance, '/api/mid/heartbeat', { body: { name, host_name: `${name}.lab.invalid`, version: 'Xanadu' }, ...(client ? { client } : {}) });
}

/** Resolves with the error a refused connection produced (and fails if the request succeeded). */
export async function refusedConnection(promise: Promise<Reply>): Promise<NodeJS.ErrnoException> {
  try {
    const reply = await promise;
    throw new Error(`expected the connection to be refused, got HTTP ${reply.status}`);
  } catch (err) {
    if ((err as Error).message.startsWith('expected the connection')) throw err;
    return err as NodeJS.ErrnoException;
  }
}

/** One protocol poll (docs/lab/mid-instance-protocol.md §1) as a MID would send it. */
export function poll(instance: StartedInstance, who: { client?: { certPem: string; keyPem: string }; auth?: [string, string] }, body: Record<string, unknown>): Promise<Reply> {
  return call(instance, '/api/mid/heartbeat', {
    body: { host_name: `${String(body['name'])}.lab.invalid`, version: 'Xanadu', ...body }, ...(who.client ? { client: who.client } : {}), ...(who.auth ? { auth: who.auth } : {}),
  });
}

/**
 * A minimal stand-in MID for protocol tests: polls every `everyMs`, answers every command it is
 * given on the next poll (payload `<result/>`), and records the commands it saw.
 */
export function answeringMid(instance: StartedInstance, who: { client?: { certPem: string; keyPem: string }; auth?: [string, string] }, name: string, options: { everyMs?: number; publicKey?: string } = {}): { seen: any[]; stop(): Promise<void> } {
  const seen: any[] = [];
  let pending: any[] = [];
  let stopped = false;
  let starting = true;
  const loop = (async () => {
    while (!stopped) {
      const responses = pending.map((c) => ({ response_to: c.sys_id, topic: c.topic, name: c.name, payload: '<result/>' }));
      pending = [];
      const reply = await poll(instance, who, { name, starting, responses, ...(options.publicKey ? { public_key: options.publicKey } : {}) }).catch(() => undefined);
      starting = false;
      const commands = reply?.json?.result?.commands ?? [];
      seen.push(...commands);
      pending.push(...commands);
      await new Promise((r) => setTimeout(r, commands.length > 0 ? 5 : options.everyMs ?? 50));
    }
  })();
  return { seen, stop: async () => { stopped = true; await loop; } };
}
