import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator } from './auth.js';
import type { CaCertificates } from './ca-certs.js';
import { DISPOSITION, LAB_OFFICER, LAST_STATUS_ADMIN_DENIED, LAST_STATUS_OK } from './dispositions.js';
import { certsOnlyPkcs7, windowsPem } from './encoding.js';
import type { Enrollment, Principal, RetrieveOutcome } from './enroll.js';
import { CONTENT_TYPE, queryOf, readForm, send } from './http.js';
import * as pages from './pages.js';
import type { AdcsStore } from './store.js';
import type { AccessLogEntry } from './types.js';

export interface CertsrvContext {
  caName: string;
  auth: Authenticator;
  enrollment: Enrollment;
  caCerts: CaCertificates;
  store: AdcsStore;
  accessLog: AccessLog;
  requireBrowserUserAgent: boolean;
}

/** The most recent requests, for tests and operators: method, path, status, user, User-Agent. */
export class AccessLog {
  private readonly entries: AccessLogEntry[] = [];
  constructor(private readonly max = 1000) {}
  add(entry: AccessLogEntry): void {
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.shift();
  }
  list(): AccessLogEntry[] {
    return this.entries.map((e) => ({ ...e }));
  }
}

type Route = (ctx: CertsrvContext, req: IncomingMessage, res: ServerResponse, url: URL, who: Principal) => Promise<void>;

/** IIS paths are case-insensitive; keys are lower-case. */
const ROUTES: Record<string, { method: 'GET' | 'POST'; route: Route }> = {
  '/certsrv/': { method: 'GET', route: home },
  '/certsrv/default.asp': { method: 'GET', route: home },
  '/certsrv/certfnsh.asp': { method: 'POST', route: submit },
  '/certsrv/certnew.cer': { method: 'GET', route: certnewCer },
  '/certsrv/certnew.p7b': { method: 'GET', route: certnewP7b },
  '/certsrv/certcarc.asp': { method: 'GET', route: certcarc },
};

export function certsrvHandler(ctx: CertsrvContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const userAgent = String(req.headers['user-agent'] ?? '').slice(0, 512);
    let user: string | null = null;
    const url = new URL(req.url ?? '/', 'https://certsrv.invalid');
    res.on('finish', () => ctx.accessLog.add({ time: new Date().toISOString(), method: req.method ?? '', path: `${url.pathname}${url.search}`.slice(0, 512), status: res.statusCode, user, userAgent }));
    dispatch(ctx, req, res, url, userAgent, (name) => (user = name)).catch((err: unknown) => {
      // Never echo internals (or anything a client sent) into the page; the operator gets one line.
      process.stderr.write(`adcs-lab: internal error on ${req.method} ${url.pathname}: ${err instanceof Error ? err.message : String(err)}\n`);
      if (!res.headersSent) send(res, 500, CONTENT_TYPE.html, pages.iisErrorPage('500 - Internal server error.', 'There is a problem with the resource you are looking for, and it cannot be displayed.'));
      else res.destroy();
    });
  };
}

async function dispatch(ctx: CertsrvContext, req: IncomingMessage, res: ServerResponse, url: URL, userAgent: string, setUser: (name: string) => void): Promise<void> {
  const path = url.pathname.toLowerCase();
  if (path !== '/certsrv' && !path.startsWith('/certsrv/')) return notFound(res);
  const auth = ctx.auth.authenticate(req);
  if (!auth.ok) return refuse(ctx, res, auth.status);
  setUser(auth.principal.name);
  if (ctx.requireBrowserUserAgent && !/mozilla/i.test(userAgent)) {
    return send(res, 400, CONTENT_TYPE.html, pages.iisErrorPage('400 - Bad Request', 'The ADCS lab requires a browser-like User-Agent (real certsrv changes its answers for non-browsers).'));
  }
  if (path === '/certsrv') return send(res, 301, CONTENT_TYPE.html, pages.iisErrorPage('301 - Moved Permanently', 'Object moved to /certsrv/'), { Location: '/certsrv/' });
  const entry = ROUTES[path];
  if (!entry) return notFound(res);
  if (req.method !== entry.method) {
    return send(res, 405, CONTENT_TYPE.html, pages.iisErrorPage('405 - HTTP verb used to access this page is not allowed.', `Use ${entry.method}.`), { Allow: entry.method });
  }
  await entry.route(ctx, req, res, url, auth.principal);
}

function refuse(ctx: CertsrvContext, res: ServerResponse, status: 401 | 403): void {
  if (status === 403) {
    return send(res, 403, CONTENT_TYPE.html, pages.iisErrorPage('403.16 - Forbidden: Client certificate is untrusted or invalid.', 'The client certificate used for this request is not trusted by the Web server.'));
  }
  send(res, 401, CONTENT_TYPE.html, pages.iisErrorPage('401 - Unauthorized: Access is denied due to invalid credentials.', 'You do not have permission to view this directory or page using the credentials that you supplied.'), {
    'WWW-Authenticate': ctx.auth.challenges(),
  });
}

function notFound(res: ServerResponse): void {
  send(res, 404, CONTENT_TYPE.html, pages.iisErrorPage('404 - File or directory not found.', 'The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.'));
}

async function home(ctx: CertsrvContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  send(res, 200, CONTENT_TYPE.html, pages.homePage(ctx.caName));
}

async function submit(ctx: CertsrvContext, req: IncomingMessage, res: ServerResponse, _url: URL, who: Principal): Promise<void> {
  const form = await readForm(req);
  if (!form.ok) {
    return send(res, 413, CONTENT_TYPE.html, pages.iisErrorPage('413 - Request Entity Too Large', 'The page was not displayed because the request entity is too large.'), { Connection: 'close' });
  }
  const field = (name: string): string => form.fields.get(name) ?? '';
  const mode = field('mode');
  const outcome = ctx.enrollment.submit({ mode, certRequest: field('certrequest'), certAttrib: field('certattrib') }, who, String(req.headers['user-agent'] ?? ''));
  await ctx.store.persist();
  const html = outcome.kind === 'issued' ? pages.issuedPage(ctx.caName, outcome.id)
    : outcome.kind === 'pending' ? pages.pendingPage(ctx.caName, outcome.id)
    : outcome.kind === 'denied' ? pages.deniedPage(ctx.caName, outcome.message)
    : pages.errorPage(ctx.caName, outcome.message, mode);
  // Like the real server, every outcome is a 200 page; only its content says what happened.
  send(res, 200, CONTENT_TYPE.html, html);
}

async function certnewCer(ctx: CertsrvContext, _req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const query = queryOf(url);
  const encoding = encodingOf(query);
  const reqId = query.get('reqid') ?? '';
  if (reqId.toLowerCase() === 'cacert') {
    const cert = ctx.caCerts.issuingCert(renewalOf(query));
    return cert ? sendDer(res, CONTENT_TYPE.cert, cert.der, encoding) : noSuchRenewal(ctx, res);
  }
  const outcome = await retrieve(ctx, reqId);
  if (outcome.kind !== 'issued') return sendNotIssued(ctx, res, outcome);
  sendDer(res, CONTENT_TYPE.cert, outcome.certDer, encoding);
}

async function certnewP7b(ctx: CertsrvContext, _req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const query = queryOf(url);
  const encoding = encodingOf(query);
  const reqId = query.get('reqid') ?? '';
  if (reqId.toLowerCase() === 'cacert') {
    const chain = ctx.caCerts.chain(renewalOf(query));
    return chain ? sendDer(res, CONTENT_TYPE.pkcs7, certsOnlyPkcs7(chain), encoding) : noSuchRenewal(ctx, res);
  }
  const outcome = await retrieve(ctx, reqId);
  if (outcome.kind !== 'issued') return sendNotIssued(ctx, res, outcome);
  const chain = ctx.caCerts.chain() ?? [];
  sendDer(res, CONTENT_TYPE.pkcs7, certsOnlyPkcs7([outcome.certDer, ...chain]), encoding);
}

async function certcarc(ctx: CertsrvContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  send(res, 200, CONTENT_TYPE.html, pages.certcarcPage(ctx.caName, ctx.caCerts.nRenewals));
}

async function retrieve(ctx: CertsrvContext, reqId: string): Promise<RetrieveOutcome> {
  if (!/^\d{1,9}$/.test(reqId)) return { kind: 'unknown' };
  const outcome = ctx.enrollment.retrieve(Number(reqId));
  if (outcome.kind !== 'unknown') await ctx.store.persist(); // poll counts and auto-approval
  return outcome;
}

function sendNotIssued(ctx: CertsrvContext, res: ServerResponse, outcome: Exclude<RetrieveOutcome, { kind: 'issued' }>): void {
  const html = outcome.kind === 'pending' ? pages.retrievalPage(ctx.caName, 'Certificate Pending', outcome.message, LAST_STATUS_OK)
    : outcome.kind === 'denied' ? pages.retrievalPage(ctx.caName, 'Certificate Request Denied', outcome.message, lastStatusOfDenial(outcome.message))
    : outcome.kind === 'failed' ? pages.retrievalPage(ctx.caName, 'Error', outcome.message, outcome.message)
    : pages.retrievalPage(ctx.caName, 'Error', DISPOSITION.emptyProperty, DISPOSITION.emptyProperty);
  send(res, 200, CONTENT_TYPE.html, html);
}

function lastStatusOfDenial(message: string): string {
  return message.startsWith(`Denied by ${LAB_OFFICER}`) ? LAST_STATUS_ADMIN_DENIED : message;
}

function noSuchRenewal(ctx: CertsrvContext, res: ServerResponse): void {
  send(res, 200, CONTENT_TYPE.html, pages.retrievalPage(ctx.caName, 'Error', DISPOSITION.emptyProperty, DISPOSITION.emptyProperty));
}

/** `Enc=bin` → DER; anything else (b64, or absent) → Base64 with CRLF lines. */
function encodingOf(query: Map<string, string>): 'bin' | 'b64' {
  return (query.get('enc') ?? 'b64').toLowerCase() === 'bin' ? 'bin' : 'b64';
}

/** `Renewal=<n>`; absent or -1 = the newest; anything unparseable = a renewal that does not exist. */
function renewalOf(query: Map<string, string>): number | undefined {
  const raw = query.get('renewal');
  if (raw === undefined || raw === '') return undefined;
  return /^-?\d{1,4}$/.test(raw) ? Number(raw) : Number.MAX_SAFE_INTEGER;
}

function sendDer(res: ServerResponse, contentType: string, der: Buffer, encoding: 'bin' | 'b64'): void {
  send(res, 200, contentType, encoding === 'bin' ? der : windowsPem(der));
}
