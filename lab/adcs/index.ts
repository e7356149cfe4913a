import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Authenticator } from './auth.js';
import { CaCertificates } from './ca-certs.js';
import { Enrollment } from './enroll.js';
import { AccessLog, certsrvHandler } from './server.js';
import { AdcsStore } from './store.js';
import { DEFAULT_TEMPLATES, TemplateSet } from './templates.js';
import type { AdcsOptions, RunningAdcs, TemplateMode } from './types.js';

export { DEFAULT_TEMPLATES, TEMPLATE_PROFILE_NAMES } from './templates.js';
export type * from './types.js';

/**
 * Starts the simulated ADCS web enrollment (certsrv) over HTTPS and resolves once it listens.
 * See docs/lab/adcs.md for what it imitates and how faithfully.
 */
export async function startAdcs(options: AdcsOptions): Promise<RunningAdcs> {
  const host = options.host ?? '127.0.0.1';
  const store = await AdcsStore.open(options.stateFile, options.firstRequestId ?? 100);
  const templates = new TemplateSet(options.templates ?? DEFAULT_TEMPLATES);
  for (const [name, mode] of Object.entries(store.templateModes())) if (templates.find(name)) templates.setMode(name, mode);
  const caCerts = new CaCertificates(options.ca, store);
  const enrollment = new Enrollment(options.ca, caCerts, store, templates);
  const accessLog = new AccessLog();
  const server = createServer(tlsOptions(options), certsrvHandler({
    caName: options.ca.intermediate.cert.subject.flat().find((a) => a.type === 'CN')?.value ?? 'Lab CA',
    auth: new Authenticator(options.users ?? [], host),
    enrollment, caCerts, store, accessLog,
    requireBrowserUserAgent: options.requireBrowserUserAgent ?? true,
  }));
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  const port = await listen(server, host, options.port ?? 0);
  const urlHost = host.includes(':') ? `[${host}]` : host;

  const admin = async <T>(change: () => T): Promise<T> => {
    const result = change();
    await store.persist();
    return result;
  };
  let closing: Promise<void> | undefined;
  return {
    url: `https://${urlHost}:${port}/certsrv`,
    port,
    close: () => (closing ??= close(server, store)),
    approve: (reqId) => admin(() => enrollment.approve(reqId)),
    deny: (reqId, reason) => admin(() => enrollment.deny(reqId, reason)),
    setTemplateMode: (name: string, mode: TemplateMode) => admin(() => {
      templates.setMode(name, mode);
      store.setTemplateMode(templates.find(name)?.name ?? name, mode);
    }),
    requests: () => store.list(),
    renewCa: () => admin(() => caCerts.renew()),
    accessLog: () => accessLog.list(),
  };
}

function tlsOptions(options: AdcsOptions): Parameters<typeof createServer>[0] {
  const base = { cert: options.tls.certPem, key: options.tls.keyPem, minVersion: 'TLSv1.2' as const };
  if (!options.clientCaPem) return base;
  // Ask for a client certificate but let the handshake finish without one (IIS "Accept"), so
  // the request can fall back to Basic; the TLS layer still verifies any certificate sent.
  return { ...base, requestCert: true, rejectUnauthorized: false, ca: options.clientCaPem };
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

async function close(server: Server, store: AdcsStore): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  await store.flushed();
}
