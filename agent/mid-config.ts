import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { readBoundedFile } from '../common/bounded-read.js';
import { MidcertError } from '../common/errors.js';
import { LIMITS, assertSize } from '../common/limits.js';

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

/** A real config.xml is a few KiB; anything near this bound is not one (LIMITS.configXmlBytes). */
export const CONFIG_XML_MAX_BYTES = LIMITS.configXmlBytes;

export interface ConfigParameter {
  name: string;
  value: string;
  secure: boolean;
}

/**
 * Parses config.xml text into its parameters, in file order. External entities are never
 * resolved: a DOCTYPE is refused outright (the vendor file has none) and entity processing is off,
 * so only the five predefined XML entities and character references in values are decoded.
 *
 * `source` names the file in errors (its path). A file that is not a MID config.xml (binary data,
 * text that is not XML, XML without `<parameters>`) is refused without echoing any of its content:
 * the path may point anywhere (a symlink to /etc/shadow), and the parser's own messages quote it.
 */
export function parseConfigXml(text: string, source = 'config.xml'): ConfigParameter[] {
  assertSize(text, CONFIG_XML_MAX_BYTES, source);
  // XML 1.0 allows no C0 control character but tab, LF and CR (nor U+FFFE/U+FFFF).
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.test(text)) throw notMidConfig(source, 'it holds binary data');
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw new MidcertError('MID_CONFIG_INVALID', `${source} holds a DOCTYPE or ENTITY declaration; refusing to parse it`);
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const where = Number.isInteger(valid.err?.line) ? ` (line ${valid.err.line}, column ${valid.err.col})` : '';
    throw notMidConfig(source, `it is not well-formed XML${where}`);
  }
  let doc: unknown;
  try {
    doc = new XMLParser({
      ignoreAttributes: false, attributeNamePrefix: '', processEntities: false, parseAttributeValue: false,
      parseTagValue: false, ignoreDeclaration: true, isArray: (tag) => tag === 'parameter',
    }).parse(text);
  } catch (err) {
    throw new MidcertError('MID_CONFIG_INVALID', `${source} is not a MID config.xml: it is not well-formed XML`, { cause: err });
  }
  const root = (doc as { parameters?: unknown }).parameters;
  if (root === undefined || typeof root !== 'object' || root === null) {
    throw notMidConfig(source, 'it has no <parameters> root element');
  }
  const items = (root as { parameter?: unknown[] }).parameter ?? [];
  return items.map(toParameter);
}

function notMidConfig(source: string, why: string): MidcertError {
  return new MidcertError('MID_CONFIG_INVALID', `${source} is not a MID config.xml: ${why}`);
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

/**
 * The bytes of a config.xml (or a saved copy of one) through the bounded reader: a regular file
 * of at most LIMITS.configXmlBytes, else MID_CONFIG_INVALID (INPUT_TOO_LARGE past the bound).
 */
export async function readConfigXmlBytes(path: string): Promise<Buffer> {
  return readBoundedFile(path, { what: 'config.xml', maxBytes: CONFIG_XML_MAX_BYTES, unreadableCode: 'MID_CONFIG_INVALID' });
}

/** Reads and parses a config.xml file, refusing special files and checking its size before reading it. */
export async function readConfigXml(path: string): Promise<ConfigParameter[]> {
  return parseConfigXml((await readConfigXmlBytes(path)).toString('utf8'), path);
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
