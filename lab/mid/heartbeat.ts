import { request, type Agent } from 'node:https';
import type { TLSSocket } from 'node:tls';

/**
 * One MID poll of the ECC queue (docs/lab/mid-instance-protocol.md §1–2; vendor-facts §7: "The MID
 * Server polls the ECC queue at the maximum regular interval defined in the mid.poll.time
 * configuration parameter (40 seconds by default)"): `POST /api/mid/heartbeat` (path kept) with
 * `{"name","host_name","version","starting","public_key","responses","credential_ok"}` over the MID's
 * TLS agent, and what came of it, in the words the real (Java) MID would log.
 */

/** An ecc_queue output row the instance hands the MID (queue=output, state=ready). */
export interface EccCommand {
  sys_id: string;
  topic: string;
  name: string;
  source: string;
  payload: string;
}

/** The MID's answer to one command: becomes an ecc_queue input row with response_to. */
export interface EccResponse {
  response_to: string;
  topic: string;
  name: string;
  payload: string;
}

export interface PollBody {
  name: string;
  host_name: string;
  version: string;
  starting: boolean;
  /** SPKI PEM of the pair in defaultsecuritykeypairhandle (absent when the MID has none). */
  public_key?: string;
  responses: EccResponse[];
  credential_ok?: boolean;
}

export type HeartbeatOutcome =
  | { kind: 'up'; sysId: string; status: string; validated?: string; commands: EccCommand[]; credential?: string }
  | { kind: 'unauthorized'; status: number; message: string }
  | { kind: 'http-error'; status: number; message: string }
  /** The TLS handshake failed or the instance dropped the connection right after it. */
  | { kind: 'handshake'; message: string }
  | { kind: 'network'; message: string };

export interface HeartbeatRequest {
  url: URL;
  agent: Agent;
  body: PollBody;
  /** `Basic ...` for a basic-auth MID; absent under mutual auth. */
  authorization?: string;
  /** Whether a client certificate is offered (decides how a dropped handshake reads). */
  presentsCertificate: boolean;
  timeoutMs: number;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

export async function sendHeartbeat(req: HeartbeatRequest): Promise<HeartbeatOutcome> {
  const first = await attempt(req);
  // A kept-alive socket the server closed while idle fails the next request; Java's HTTP client
  // retries that once on a fresh connection, and so do we.
  return first.retry ? (await attempt(req)).outcome : first.outcome;
}

function attempt(hb: HeartbeatRequest): Promise<{ outcome: HeartbeatOutcome; retry: boolean }> {
  const payload = JSON.stringify(hb.body);
  return new Promise((done) => {
    let handshakeDone = false;
    let settled = false;
    const finish = (outcome: HeartbeatOutcome, retry = false): void => {
      if (!settled) { settled = true; done({ outcome, retry }); }
    };
    const req = request(new URL('api/mid/heartbeat', hb.url), {
      method: 'POST', agent: hb.agent,
      headers: {
        'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': Buffer.byteLength(payload),
        'User-Agent': 'ServiceNow MID Server (midcert lab)', ...(hb.authorization ? { Authorization: hb.authorization } : {}),
      },
    }, (res) => {
      let size = 0;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) { res.destroy(); return; }
        chunks.push(chunk);
      });
      res.on('end', () => finish(interpretResponse(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      res.on('error', (err) => finish({ kind: 'network', message: javaIoMessage(err) }));
      res.on('close', () => finish({ kind: 'network', message: 'java.io.IOException: response truncated' }));
    });
    req.on('socket', (socket) => {
      if (req.reusedSocket) handshakeDone = true;
      else (socket as TLSSocket).once('secureConnect', () => { handshakeDone = true; });
    });
    req.setTimeout(hb.timeoutMs, () => req.destroy(Object.assign(new Error('Read timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => {
      if (req.reusedSocket && isReset(err)) { finish({ kind: 'network', message: '' }, true); return; }
      finish(classifyError(err, { handshakeDone, presentsCertificate: hb.presentsCertificate, host: hb.url.hostname }));
    });
    req.end(payload);
  });
}

function interpretResponse(status: number, text: string): HeartbeatOutcome {
  const body = safeJson(text);
  if (status === 200) {
    const result = (body as { result?: Record<string, unknown> } | undefined)?.result;
    if (!result || typeof result['sys_id'] !== 'string') return { kind: 'http-error', status, message: 'unexpected heartbeat response' };
    const commands = Array.isArray(result['commands']) ? result['commands'].filter(isCommand).slice(0, 100) : [];
    return {
      kind: 'up', sysId: result['sys_id'], status: typeof result['status'] === 'string' ? result['status'] : 'Up', commands,
      ...(typeof result['validated'] === 'string' ? { validated: result['validated'] } : {}),
      ...(typeof result['credential'] === 'string' && result['credential'] !== '' ? { credential: result['credential'] } : {}),
    };
  }
  const error = (body as { error?: { message?: unknown; detail?: unknown } } | undefined)?.error;
  const message = [error?.message, error?.detail].filter((s): s is string => typeof s === 'string' && s !== '').join(': ').slice(0, 300);
  if (status === 401 || status === 403) return { kind: 'unauthorized', status, message: message || 'Unauthorized' };
  return { kind: 'http-error', status, message: message || `HTTP ${status}` };
}

function isCommand(value: unknown): value is EccCommand {
  if (typeof value !== 'object' || value === null) return false;
  const row = value as Record<string, unknown>;
  if (typeof row['sys_id'] !== 'string') return false;
  for (const field of ['topic', 'name', 'source', 'payload']) if (row[field] === undefined || row[field] === null) row[field] = '';
  return ['topic', 'name', 'source', 'payload'].every((f) => typeof row[f] === 'string');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isReset(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || /socket hang up/.test(err.message);
}

const SERVER_NOT_TRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED',
]);

/** What the JVM would say: the agent's log watcher looks for these words. */
export function classifyError(err: NodeJS.ErrnoException, ctx: { handshakeDone: boolean; presentsCertificate: boolean; host: string }): HeartbeatOutcome {
  const code = err.code ?? '';
  const ssl = 'javax.net.ssl.SSLHandshakeException';
  const alert = /ALERT_([A-Z_]+)$/.exec(code)?.[1];
  if (alert) return { kind: 'handshake', message: `${ssl}: Received fatal alert: ${alert.toLowerCase()} (lab: ${code})` };
  if (SERVER_NOT_TRUSTED.has(code)) {
    return { kind: 'handshake', message: `${ssl}: PKIX path building failed: sun.security.provider.certpath.SunCertPathBuilderException: unable to find valid certification path to requested target (lab: ${code})` };
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return { kind: 'handshake', message: `${ssl}: PKIX path validation failed: java.security.cert.CertPathValidatorException: validity check failed (lab: ${code})` };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { kind: 'handshake', message: `${ssl}: No subject alternative names matching ${ctx.host} found (lab: ${code})` };
  }
  if (isReset(err)) {
    // The instance destroys a connection whose client certificate it does not accept right
    // after the handshake: for the MID that is the instance's fatal alert.
    const why = ctx.presentsCertificate ? 'bad_certificate' : 'certificate_required';
    return { kind: 'handshake', message: `${ssl}: Received fatal alert: ${why} (lab: ${code || 'socket hang up'}${ctx.handshakeDone ? ' after handshake' : ''})` };
  }
  return { kind: 'network', message: javaIoMessage(err, ctx.host) };
}

function javaIoMessage(err: NodeJS.ErrnoException, host = ''): string {
  switch (err.code) {
    case 'ECONNREFUSED': return 'java.net.ConnectException: Connection refused';
    case 'ETIMEDOUT': return 'java.net.SocketTimeoutException: Read timed out';
    case 'ENOTFOUND': case 'EAI_AGAIN': return `java.net.UnknownHostException: ${host}`;
    case 'EHOSTUNREACH': case 'ENETUNREACH': return 'java.net.NoRouteToHostException: No route to host';
    default: return `java.io.IOException: ${err.message.split('\n')[0]}${err.code ? ` (lab: ${err.code})` : ''}`;
  }
}
