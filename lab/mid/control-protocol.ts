import { createConnection } from 'node:net';
import { isAbsolute } from 'node:path';
import type { MidStatus } from './unit-status.js';

/** Environment variable holding the keystore password for `register` (else changeit); from constants.ts so midctl stays light. */
export { STOREPASS_ENV } from './constants.js';

/**
 * The MID runner's control channel: JSON lines over a Unix socket, one request per line, one
 * response line per request, in order. Verbs follow systemctl (start, stop, restart, status,
 * is-active) plus the runner's own (register, unregister, list, shutdown).
 */

export type ControlRequest =
  | { verb: 'register'; unit: string; home: string; storepass?: string }
  | { verb: 'unregister' | 'start' | 'stop' | 'restart' | 'status' | 'is-active'; unit: string }
  | { verb: 'list' | 'shutdown' };

export type ControlErrorCode = 'BAD_REQUEST' | 'UNIT_NOT_FOUND' | 'UNIT_EXISTS' | 'INTERNAL';

export type ControlResponse =
  | { ok: true; status?: MidStatus; units?: MidStatus[] }
  | { ok: false; error: { code: ControlErrorCode; message: string } };

export const MAX_CONTROL_LINE_BYTES = 16 * 1024;
const UNIT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$/;
const UNIT_VERBS = new Set(['unregister', 'start', 'stop', 'restart', 'status', 'is-active']);

export class ControlRequestError extends Error {
  constructor(readonly code: ControlErrorCode, message: string) {
    super(message);
  }
}

/** `mid01.service` and `mid01` name the same unit, as with systemctl. */
export function unitName(text: string): string {
  const name = text.endsWith('.service') ? text.slice(0, -'.service'.length) : text;
  if (!UNIT_NAME.test(name)) throw new ControlRequestError('BAD_REQUEST', `invalid unit name "${text.slice(0, 100)}"`);
  return name;
}

/** Validates one decoded request line; throws ControlRequestError with BAD_REQUEST. */
export function parseControlRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ControlRequestError('BAD_REQUEST', 'request is not JSON');
  }
  const req = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const verb = req.verb;
  if (verb === 'list' || verb === 'shutdown') return { verb };
  if (typeof req.unit !== 'string') throw new ControlRequestError('BAD_REQUEST', 'request needs a "unit"');
  const unit = unitName(req.unit);
  if (verb === 'register') {
    if (typeof req.home !== 'string' || !isAbsolute(req.home) || req.home.length > 1024) {
      throw new ControlRequestError('BAD_REQUEST', 'register needs an absolute "home" path');
    }
    if (req.storepass !== undefined && (typeof req.storepass !== 'string' || req.storepass.length > 256)) {
      throw new ControlRequestError('BAD_REQUEST', '"storepass" must be a string');
    }
    return { verb, unit, home: req.home, ...(req.storepass !== undefined ? { storepass: req.storepass as string } : {}) };
  }
  if (typeof verb === 'string' && UNIT_VERBS.has(verb)) return { verb: verb as 'start', unit };
  throw new ControlRequestError('BAD_REQUEST', `unknown verb "${String(verb).slice(0, 40)}"`);
}

/** Sends one request to a runner and returns its response. Rejects if the socket cannot be reached. */
export function sendControlRequest(socketPath: string, request: ControlRequest, timeoutMs = 60_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let buffer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from the MID runner within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\n');
      if (end >= 0) {
        clearTimeout(timer);
        socket.end();
        try {
          resolve(JSON.parse(buffer.slice(0, end)) as ControlResponse);
        } catch {
          reject(new Error('the MID runner sent an unreadable answer'));
        }
      } else if (buffer.length > 4 * 1024 * 1024) {
        socket.destroy(new Error('the MID runner answer is too large'));
      }
    });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.on('close', () => { clearTimeout(timer); reject(new Error('the MID runner closed the connection without answering')); });
  });
}
