import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAdmin } from './admin.js';
import { AgentMonitor } from './agents.js';
import { AttachmentStore } from './attachments.js';
import { CertificateRules } from './certificates.js';
import { ClientTrust, secureContextOptions } from './client-trust.js';
import type { InstanceContext } from './context.js';
import { Credentials } from './credentials.js';
import { FaultInjector } from './faults.js';
import { openLog } from './log.js';
import { OAuthServer } from './oauth.js';
import { STATE_FORMAT, StateWriter, readState, type InstanceState } from './persistence.js';
import { handleRequest } from './router.js';
import { pluginViewRules, seedInstance } from './seed.js';
import { TableStore } from './tables.js';
import type { InstanceOptions, PublishWord, RunningInstance } from './types.js';
import { userRules } from './users.js';

const DEFAULTS = { host: '127.0.0.1', port: 0, publishDelayMs: 1000, publishWord: 'Exists' as PublishWord, jsonBytes: 1024 * 1024, attachmentBytes: 64 * 1024 };

/** Starts the simulated ServiceNow instance (HTTPS + mTLS heartbeat on one listener). */
export async function startInstance(options: InstanceOptions): Promise<RunningInstance> {
  const settings = resolveOptions(options);
  const log = openLog(options.log);
  // fingerprintField=false: the invented sha256_fingerprint is stored but never shown (vendor-facts §12).
  const hidden: Record<string, string[]> = options.fingerprintField === false ? { sys_ca_certificate: ['sha256_fingerprint'], sys_user_certificate: ['sha256_fingerprint'] } : {};
  const tables = new TableStore(() => new Date(), hidden);
  const credentials = new Credentials();
  const attachments = new AttachmentStore(tables);
  const server = createServer({ ...secureContextOptions(options.tls, []), requestCert: true, rejectUnauthorized: false });
  const trust = new ClientTrust(server, options.tls, log.write);
  const certificates: CertificateRules = new CertificateRules({
    tables, attachments, publishDelayMs: settings.publishDelayMs, publishWord: settings.publishWord, log: log.write,
    oneActiveChain: options.oneActiveChain === true,
    onTrustChange: () => trust.apply(certificates.trustAnchors()),
  });
  const agents = new AgentMonitor(tables, {
    timeScale: settings.timeScale, autoValidate: options.autoValidate !== false, mtlsKeyUpdate: options.mtlsKeyUpdate ?? 'update', log: log.write,
  });
  for (const rules of [userRules(tables, credentials), attachments, certificates, agents, pluginViewRules(tables)]) tables.use(rules);

  const ctx: InstanceContext = {
    tables, attachments, credentials, certificates, agents, faults: new FaultInjector(), log: log.write,
    oauth: new OAuthServer({ accessSeconds: options.oauthTokenSeconds, refreshSeconds: options.oauthRefreshSeconds, timeScale: settings.timeScale }),
    limits: { jsonBytes: settings.jsonBytes, attachmentBytes: settings.attachmentBytes },
    settings: {
      supportsTls: options.supportsTls ?? 'true', url: '', invalidQuery: options.invalidQuery ?? 'ignore',
      attachmentToMissingRecord: options.attachmentToMissingRecord ?? 'accept', pluginActiveStyle: options.pluginActiveStyle ?? 'true',
    },
    markDirty: () => undefined,
  };
  let writer: StateWriter | undefined;
  try {
    writer = await loadState(ctx, options.stateFile);
    seedInstance(tables, options.admin, ctx.settings.pluginActiveStyle);
    for (const client of options.oauthClients ?? []) ctx.oauth.addClient(client);
    certificates.resumePending();
    trust.apply(certificates.trustAnchors());
    server.on('request', (req, res) => void handleRequest(req, res, ctx));
    server.on('tlsClientError', (err, socket) => log.write(`TLS handshake failed from ${socket.remoteAddress}: ${err.message}`));
    const port = await listen(server, settings.host, settings.port);
    ctx.settings.url = `https://${urlHost(settings.host)}:${port}`;
  } catch (err) {
    agents.stop();
    certificates.stop();
    await log.close();
    throw err;
  }
  log.write(`listening on ${ctx.settings.url}`);
  const stateWriter = writer;
  const flush = async (): Promise<void> => { await stateWriter?.flush(); };
  return {
    url: ctx.settings.url,
    port: Number(new URL(ctx.settings.url).port),
    admin: createAdmin(ctx, trust, flush),
    close: async () => {
      agents.stop();
      certificates.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await flush();
      log.write('stopped');
      await log.close();
    },
  };
}

function resolveOptions(options: InstanceOptions): typeof DEFAULTS & { timeScale: number } {
  const resolved = {
    host: options.host ?? DEFAULTS.host,
    port: options.port ?? DEFAULTS.port,
    publishDelayMs: options.publishDelayMs ?? DEFAULTS.publishDelayMs,
    publishWord: options.publishWord ?? DEFAULTS.publishWord,
    timeScale: options.timeScale ?? 1,
    jsonBytes: options.limits?.jsonBytes ?? DEFAULTS.jsonBytes,
    attachmentBytes: options.limits?.attachmentBytes ?? DEFAULTS.attachmentBytes,
  };
  if (!options.admin?.username || !options.admin.password) throw new Error('startInstance needs admin.username and admin.password');
  if (!options.tls?.certPem || !options.tls.keyPem) throw new Error('startInstance needs tls.certPem and tls.keyPem');
  if (resolved.publishWord !== 'Exists' && resolved.publishWord !== 'Active') throw new Error('publishWord must be "Exists" or "Active"');
  if (!Number.isFinite(resolved.timeScale) || resolved.timeScale <= 0 || resolved.timeScale > 100) throw new Error('timeScale must be a number in (0, 100]');
  if (options.invalidQuery !== undefined && !['ignore', 'no_rows', 'strict'].includes(options.invalidQuery)) throw new Error('invalidQuery must be ignore, no_rows or strict');
  if (options.attachmentToMissingRecord !== undefined && !['accept', '404'].includes(options.attachmentToMissingRecord)) throw new Error('attachmentToMissingRecord must be accept or 404');
  if (options.mtlsKeyUpdate !== undefined && !['update', 'keep'].includes(options.mtlsKeyUpdate)) throw new Error('mtlsKeyUpdate must be update or keep');
  for (const name of ['publishDelayMs', 'jsonBytes', 'attachmentBytes', 'port'] as const) {
    if (!Number.isInteger(resolved[name]) || resolved[name] < 0) throw new Error(`${name} must be a non-negative integer`);
  }
  return resolved;
}

/** Restores the state file (if any) and wires change tracking to a debounced writer. */
async function loadState(ctx: InstanceContext, stateFile: string | undefined): Promise<StateWriter | undefined> {
  if (!stateFile) return undefined;
  const saved = await readState(stateFile);
  if (saved) {
    ctx.tables.restore(saved.tables);
    ctx.attachments.restore(saved.attachments);
    ctx.credentials.restore(saved.credentials);
    ctx.settings.supportsTls = saved.supportsTls;
    ctx.log(`state restored from ${stateFile}`);
  }
  const collect = (): InstanceState => ({
    format: STATE_FORMAT, tables: ctx.tables.snapshot(), attachments: ctx.attachments.snapshot(),
    credentials: ctx.credentials.snapshot(), supportsTls: ctx.settings.supportsTls,
  });
  const writer = new StateWriter(stateFile, collect, ctx.log);
  ctx.markDirty = () => writer.markDirty();
  ctx.tables.onChange(ctx.markDirty);
  writer.markDirty();
  return writer;
}

async function listen(server: Server, host: string, port: number): Promise<number> {
  server.listen(port, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
