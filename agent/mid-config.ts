import { readFile, stat } from 'node:fs/promises';
import { XMLParser } from 'fast-xml-parser';
import { MidcertError } from '../common/errors.js';
import { assertSize } from '../common/limits.js';

/**
 * The MID Server's `agent/config.xml` (DESIGN.md §4): `<parameters>` of
 * `<parameter name=".." value=".."/>`, `secure="true"` on values the MID encrypts on restart
 * (they then read `encrypted:…`). Read-only here: the MID's own manage-certificates script edits it.
 */

/** The vendor's placeholders for values an administrator has not filled in yet. */
export const PLACEHOLDERS = {
  url: 'https://YOUR_INSTANCE.service-now.com/',
  username: 'YOUR_INSTANCE_USER_NAME_HERE',
  password: 'YOUR_INSTANCE_PASSWORD_HERE',
  name: 'YOUR_MIDSERVER_NAME_GOES_HERE',
  proxyHost: 'YOUR_PROXY_HOST',
  proxyPort: 'YOUR_PROXY_PORT',
  proxyUsername: 'YOUR_PROXY_USER_NAME',
  proxyPassword: 'YOUR_PROXY_PASSWORD',
} as const;

const PLACEHOLDER_VALUES = new Set<string>(Object.values(PLACEHOLDERS));

/** A real config.xml is a few KiB; anything near this bound is not one. */
export const CONFIG_XML_MAX_BYTES = 256 * 1024;

export interface ConfigParameter {
  name: string;
  value: string;
  secure: boolean;
}

/**
 * Parses config.xml text into its parameters, in file order. External entities are never
 * resolved: a DOCTYPE is refused outright (the vendor file has none) and entity processing is off,
 * so only the five predefined XML entities and character references in values are decoded.
 */
export function parseConfigXml(text: string): ConfigParameter[] {
  assertSize(text, CONFIG_XML_MAX_BYTES, 'config.xml');
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw new MidcertError('MID_CONFIG_INVALID', 'config.xml holds a DOCTYPE or ENTITY declaration; refusing to parse it');
  let doc: unknown;
  try {
    doc = new XMLParser({
      ignoreAttributes: false, attributeNamePrefix: '', processEntities: false, parseAttributeValue: false,
      parseTagValue: false, ignoreDeclaration: true, isArray: (tag) => tag === 'parameter',
    }).parse(text, true);
  } catch (err) {
    throw new MidcertError('MID_CONFIG_INVALID', `config.xml is not well-formed XML: ${(err as Error).message.split('\n')[0]}`);
  }
  const root = (doc as { parameters?: unknown }).parameters;
  if (root === undefined || typeof root !== 'object' || root === null) {
    throw new MidcertError('MID_CONFIG_INVALID', 'config.xml has no <parameters> root element');
  }
  const items = (root as { parameter?: unknown[] }).parameter ?? [];
  return items.map(toParameter);
}

function toParameter(item: unknown): ConfigParameter {
  const attrs = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
  if (typeof attrs.name !== 'string') throw new MidcertError('MID_CONFIG_INVALID', 'config.xml has a <parameter> without a name');
  return { name: attrs.name, value: decodeAttribute(typeof attrs.value === 'string' ? attrs.value : ''), secure: attrs.secure === 'true' };
}

/** Decodes the predefined entities and numeric character references (nothing else exists here). */
export function decodeAttribute(raw: string): string {
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return raw.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return safeCodePoint(parseInt(ref.slice(2), 16), whole);
    if (ref.startsWith('#')) return safeCodePoint(parseInt(ref.slice(1), 10), whole);
    return named[ref] ?? whole;
  });
}

function safeCodePoint(code: number, fallback: string): string {
  return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : fallback;
}

/** Reads and parses a config.xml file, checking its size before reading it. */
export async function readConfigXml(path: string): Promise<ConfigParameter[]> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new MidcertError('MID_CONFIG_INVALID', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (size > CONFIG_XML_MAX_BYTES) {
    throw new MidcertError('INPUT_TOO_LARGE', `config.xml is ${size} bytes; the limit is ${CONFIG_XML_MAX_BYTES} bytes`);
  }
  return parseConfigXml(await readFile(path, 'utf8'));
}

/** The value of a parameter, or undefined when the file does not have it. */
export function parameterValue(params: ConfigParameter[], name: string): string | undefined {
  return params.find((p) => p.name === name)?.value;
}

export type AuthMode = 'mutual' | 'basic' | 'unconfigured';

/** What the agent reports about config.xml; never includes a credential value. */
export interface MidConfigSummary {
  instanceUrl: string;
  midName: string;
  midSysId: string;
  proxy: { enabled: boolean; host: string; port: number; credentialsPresent: boolean };
  basicCredentialsPresent: boolean;
  authMode: AuthMode;
  /** Parameter names still holding a vendor placeholder. */
  placeholders: string[];
}

export function summarizeMidConfig(params: ConfigParameter[]): MidConfigSummary {
  const value = (name: string): string => parameterValue(params, name) ?? '';
  const filled = (name: string): boolean => {
    const v = parameterValue(params, name);
    return v !== undefined && v !== '' && !PLACEHOLDER_VALUES.has(v);
  };
  const placeholders = params.filter((p) => PLACEHOLDER_VALUES.has(p.value)).map((p) => p.name);
  const hasUser = params.some((p) => p.name === 'mid.instance.username');
  const basicCredentialsPresent = filled('mid.instance.username') && filled('mid.instance.password');
  const authMode: AuthMode = basicCredentialsPresent ? 'basic' : hasUser ? 'unconfigured' : 'mutual';
  const proxyEnabled = value('mid.proxy.use_proxy').toLowerCase() === 'true';
  const port = Number.parseInt(value('mid.proxy.port'), 10);
  return {
    instanceUrl: filled('url') ? value('url') : '',
    midName: filled('name') ? value('name') : '',
    midSysId: value('mid_sys_id'),
    proxy: {
      enabled: proxyEnabled,
      host: filled('mid.proxy.host') ? value('mid.proxy.host') : '',
      port: Number.isFinite(port) ? port : 0,
      credentialsPresent: filled('mid.proxy.username') && filled('mid.proxy.password'),
    },
    basicCredentialsPresent,
    authMode,
    placeholders,
  };
}
