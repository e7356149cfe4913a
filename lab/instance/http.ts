import type { IncomingMessage, ServerResponse } from 'node:http';
import { InstanceError, errorBody, refuse } from './instance-error.js';

/** ADCv2 instances answer with this header; preflight checks for it (DESIGN §4). */
export const SERVER_HEADER = 'snow_adc';

/** Past this many bytes an oversized body is no longer drained for a clean 413; the socket is cut. */
const DRAIN_CAP = 16 * 1024 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json;charset=UTF-8', 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

export function sendBytes(res: ServerResponse, status: number, body: Uint8Array | string, contentType: string): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(bytes.length) });
  res.end(bytes);
}

export function sendNoContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

export function sendError(res: ServerResponse, err: InstanceError): void {
  sendJson(res, err.status, errorBody(err), err.headers);
}

/**
 * Reads a request body of at most `limit` bytes. An oversized body is drained (up to DRAIN_CAP)
 * before the 413 so the client reads the answer instead of a reset while it is still sending.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > DRAIN_CAP) {
    const { message, detail } = refuse.tooLarge(limit);
    return Promise.reject(new InstanceError(413, message, { detail, reason: `declared body of ${declared} bytes`, headers: { Connection: 'close' } }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (size > DRAIN_CAP) req.socket.destroy();
    });
    req.on('end', () => (size > limit ? reject(refuse.tooLarge(limit)) : resolve(Buffer.concat(chunks, size))));
    req.on('error', reject);
    req.on('close', () => { if (!req.complete) reject(new InstanceError(400, 'Request aborted', { reason: 'the client aborted the request' })); });
  });
}

/** Reads a JSON object body (400 for anything else, 413 when over `limit`). */
export async function readJsonObject(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const bytes = await readBody(req, limit);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw refuse.badRequest('Exception while reading request', 'The payload is not valid JSON.');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw refuse.badRequest('Exception while reading request', 'The payload must be a JSON object.');
  }
  return value as Record<string, unknown>;
}
