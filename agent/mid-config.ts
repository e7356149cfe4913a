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

/**
 * Settings the MID reads under either of two names in config.xml (docs/vendor-facts.md §9):
 * "mid.instance.username or glide.glidesoap.username", "mid.instance.password or
 * glide.glidesoap.password", "mid.instance.use_proxy or mid.proxy.use_proxy", and for the
 * *upgrade* proxy (not the instance proxy) "glide.mid.autoupgrade.proxy_host or
 * glide.glidesoap.proxy_host", "glide.mid.autoupgrade.proxy_port or glide.glidesoap.proxy_port" —
 * SND:servicenow-platform/mid-server/mid-server-parameters.md. mid.proxy.host/port/username/password
 * have no alias. Which name wins when both are present is not documented: both present with
 * different values is a conflict (CONFIG_ALIAS_CONFLICT), never a guess.
 */
export const CONFIG_ALIASES = {
  username: ['mid.instance.username', 'glide.glidesoap.username'],
  password: ['mid.instance.password', 'glide.glidesoap.password'],
  useProxy: ['mid.instance.use_proxy', 'mid.proxy.use_proxy'],
  upgradeProxyHost: ['glide.mid.autoupgrade.proxy_host', 'glide.glidesoap.proxy_host'],
  upgradeProxyPort: ['glide.mid.autoupgrade.proxy_port', 'glide.glidesoap.proxy_port'],
} as const;

export type AliasedSetting = keyof typeof CONFIG_ALIASES;

/** Which config.xml name is in force for one aliased setting; never its value (it may be a credential). */
export interface SettingKey {
  /** The name in force; '' when none is present, or when the names present conflict. */
  key: string;
  /** Present with a non-empty value that is not a vendor placeholder. */
  set: boolean;
  /** Every alias present in the file, in CONFIG_ALIASES order. */
  present: string[];
}

export interface AliasConflict {
  setting: AliasedSetting;
  keys: string[];
  /** error for the credentials, warning otherwise (vendor-facts §9). */
  severity: 'error' | 'warning';
  message: string;
}

/** The in-force name and the conflicts of every aliased setting. */
export function resolveAliases(params: ConfigParameter[]): { settings: Record<AliasedSetting, SettingKey & { value: string }>; conflicts: AliasConflict[] } {
  const settings = {} as Record<AliasedSetting, SettingKey & { value: string }>;
  const conflicts: AliasConflict[] = [];
  for (const [setting, names] of Object.entries(CONFIG_ALIASES) as [AliasedSetting, readonly string[]][]) {
    const present = names.filter((n) => params.some((p) => p.name === n));
    const values = [...new Set(present.map((n) => parameterValue(params, n) ?? ''))];
    if (values.length > 1) {
      const severity = setting === 'username' || setting === 'password' ? 'error' : 'warning';
      conflicts.push({
        setting, keys: present, severity,
        message: `config.xml sets both ${present.join(' and ')} to different values; ServiceNow does not document which one the MID uses: keep only one`,
      });
      settings[setting] = { key: '', set: false, present, value: '' };
      continue;
    }
    const key = present[0] ?? '';
    const value = key ? parameterValue(params, key) ?? '' : '';
    settings[setting] = { key, set: value !== '' && !PLACEHOLDER_VALUES.has(value), present, value };
  }
  return { settings, conflicts };
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
  /** Which config.xml name is in force for each aliased setting (no values). */
  keys: {
    username: SettingKey;
    password: SettingKey;
    /** The instance proxy: use_proxy under either name; host and port are mid.proxy.host / mid.proxy.port (no alias). */
    proxy: { useProxy: SettingKey; host: string; port: number };
    upgradeProxy: { host: SettingKey; port: SettingKey };
  };
  /** Aliases present with different values (CONFIG_ALIAS_CONFLICT). */
  conflicts: AliasConflict[];
}

export function summarizeMidConfig(params: ConfigParameter[]): MidConfigSummary {
  const value = (name: string): string => parameterValue(params, name) ?? '';
  const filled = (name: string): boolean => {
    const v = parameterValue(params, name);
    return v !== undefined && v !== '' && !PLACEHOLDER_VALUES.has(v);
  };
  const placeholders = params.filter((p) => PLACEHOLDER_VALUES.has(p.value)).map((p) => p.name);
  const { settings, conflicts } = resolveAliases(params);
  // A credential name present at all (even conflicting) means the MID is not on mutual auth.
  const hasUser = settings.username.present.length > 0;
  const basicCredentialsPresent = settings.username.set && settings.password.set;
  const authMode: AuthMode = basicCredentialsPresent ? 'basic' : hasUser ? 'unconfigured' : 'mutual';
  const proxyEnabled = settings.useProxy.value.toLowerCase() === 'true';
  const strip = ({ key, set, present }: SettingKey): SettingKey => ({ key, set, present });
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
    keys: {
      username: strip(settings.username),
      password: strip(settings.password),
      proxy: { useProxy: strip(settings.useProxy), host: filled('mid.proxy.host') ? value('mid.proxy.host') : '', port: Number.isFinite(port) ? port : 0 },
      upgradeProxy: { host: strip(settings.upgradeProxyHost), port: strip(settings.upgradeProxyPort) },
    },
    conflicts,
  };
}
