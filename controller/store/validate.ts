import { isIP } from 'node:net';
import { MidcertError } from '../../common/errors.js';

/**
 * Input checks for inventory records. Agent names double as the TLS name the controller expects
 * by default and as the CN/DNS SAN of the agent's fleet identity, so they follow DNS label
 * rules (plus `_` and `.`), which also keeps them safe in file names, logs and CLI tables.
 */
const AGENT_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;
const TAG = /^[A-Za-z0-9][A-Za-z0-9._:/=-]{0,63}$/;
const MAX_TAGS = 32;

function invalid(message: string): MidcertError {
  return new MidcertError('AGENT_INVALID', message);
}

export function isAgentName(name: string): boolean {
  return AGENT_NAME.test(name);
}

export function checkAgentName(name: string): string {
  if (!isAgentName(name)) throw invalid(`agent name "${name.slice(0, 80)}" must be 1-64 letters, digits, ".", "_" or "-", starting and ending with a letter or digit`);
  return name;
}

/** `host:port`, `[v6]:port`; host a DNS name or an IP address. Returns the normalised form. */
export function checkAddress(address: string): string {
  const text = address.trim();
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : 0;
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const hostOk = m?.[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || DNS_NAME.test(host);
  if (!m || !hostOk || port < 1 || port > 65535) {
    throw invalid(`agent address "${text.slice(0, 80)}" must be host:port (a DNS name or IPv4, or [IPv6]:port)`);
  }
  return text;
}

export function checkServerName(name: string): string {
  if (!DNS_NAME.test(name)) throw invalid(`server name "${name.slice(0, 80)}" is not a DNS name`);
  return name;
}

/** Accepts hex with or without colons, any case; stores 64 lower-case hex digits. */
export function normalizeFingerprint(value: string): string {
  const hex = value.replace(/:/g, '').trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw invalid('TLS fingerprint must be a SHA-256 (64 hex digits, colons allowed)');
  return hex;
}

/** Trims, drops duplicates, sorts: tags are a set. */
export function normalizeTags(tags: readonly string[]): string[] {
  const out = [...new Set(tags.map((t) => t.trim()))].sort();
  for (const tag of out) if (!TAG.test(tag)) throw invalid(`tag "${tag.slice(0, 80)}" must be 1-64 of letters, digits and . _ : / = -, starting with a letter or digit`);
  if (out.length > MAX_TAGS) throw invalid(`an agent may carry at most ${MAX_TAGS} tags`);
  return out;
}

export function checkOptionalText(value: string | null | undefined, what: string, max = 256): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (value.length > max || /[\u0000-\u001f\u007f]/.test(value)) throw invalid(`${what} must be at most ${max} printable characters`);
  return value;
}

export function checkInstanceUrl(value: string | null | undefined): string | null {
  const text = checkOptionalText(value, 'instance URL', 2048);
  if (text === null) return null;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`instance URL "${text.slice(0, 80)}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('instance URL must be http(s)');
  return text;
}

/** Cuts free text (error messages, details) to a bound; the store never holds unbounded text. */
export function bounded(value: string | null | undefined, max: number): string | null {
  if (value === undefined || value === null) return null;
  return value.length > max ? `${value.slice(0, max)}…` : value;
}
