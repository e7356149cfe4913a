import { readFile, stat } from 'node:fs/promises';
import { MidcertError } from '../../common/errors.js';

/*
 * The lab MID's own reader and writer of config.xml, written from the vendor's documents, not
 * from the product's reader (agent/mid-config.ts): a bug there must not sit on both sides of every
 * test (issue 11 item A). Vendor basis (docs/vendor-facts.md §6, §9):
 * - `<parameters>` holding `<parameter name=".." value=".."/>` lines, `secure="true"` on values
 *   the MID encrypts (SND:servicenow-platform/mid-server/mid-server-parameters.md);
 * - placeholders of a fresh install: url "https://YOUR_INSTANCE.service-now.com" (install prereqs
 *   page, no trailing slash; the vendor container recipe checks it with a trailing slash),
 *   name "YOUR_MIDSERVER_NAME_GOES_HERE", YOUR_INSTANCE_USER_NAME_HERE / YOUR_INSTANCE_PASSWORD_HERE;
 * - "Changes to parameters only take effect when the MID Server is started (or restarted)."
 */

/** The vendor's placeholder values (a fresh install before anyone edits config.xml). */
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

/** Both URL placeholders the vendor documents (with and without the trailing slash). */
export function isPlaceholderUrl(value: string): boolean {
  return value.replace(/\/+$/, '') === PLACEHOLDERS.url.replace(/\/+$/, '');
}

/** The lab MID refuses a larger config.xml (a real one is a few KiB). */
export const CONFIG_XML_MAX_BYTES = 256 * 1024;

export interface ConfigParameter {
  name: string;
  value: string;
  secure: boolean;
}

/**
 * Reads the `<parameter>` elements of a config.xml text. A hand-rolled scanner, on purpose: no
 * DOCTYPE (so no entity can be defined, let alone resolved), comments skipped, the five XML entities
 * and numeric references decoded, any other `&name;` kept as written.
 */
export function parseConfigXml(text: string, source = 'config.xml'): ConfigParameter[] {
  if (Buffer.byteLength(text) > CONFIG_XML_MAX_BYTES) {
    throw new MidcertError('INPUT_TOO_LARGE', `${source} is larger than the ${CONFIG_XML_MAX_BYTES}-byte limit`);
  }
  const body = text.replace(/<!--[\s\S]*?(-->|$)/g, ' ');
  if (/<!DOCTYPE/i.test(body)) throw new MidcertError('MID_CONFIG_INVALID', `${source} holds a DOCTYPE; refusing to read it`);
  const open = /<parameters(\s[^>]*)?>/.exec(body);
  if (!open) throw new MidcertError('MID_CONFIG_INVALID', `${source} has no <parameters> element`);
  const close = body.indexOf('</parameters>', open.index);
  const inside = body.slice(open.index + open[0].length, close < 0 ? body.length : close);
  const params: ConfigParameter[] = [];
  for (const element of inside.matchAll(/<parameter\b([^>]*?)\/?>/g)) {
    const attrs = attributes(element[1] ?? '');
    const name = attrs.get('name');
    if (name === undefined) continue;
    params.push({ name, value: attrs.get('value') ?? '', secure: (attrs.get('secure') ?? '').toLowerCase() === 'true' });
  }
  return params;
}

function attributes(text: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of text.matchAll(/([A-Za-z_:][-A-Za-z0-9_.:]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    if (!found.has(m[1] as string)) found.set(m[1] as string, decodeAttribute(m[2] ?? m[3] ?? ''));
  }
  return found;
}

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes XML character references in an attribute value; unknown named references stay as written. */
export function decodeAttribute(raw: string): string {
  return raw.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z][A-Za-z0-9]*);/g, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return NAMED[ref] ?? whole;
  });
}

export async function readConfigXml(path: string): Promise<ConfigParameter[]> {
  const info = await stat(path);
  if (info.size > CONFIG_XML_MAX_BYTES) throw new MidcertError('INPUT_TOO_LARGE', `${path} is larger than the ${CONFIG_XML_MAX_BYTES}-byte limit`);
  return parseConfigXml(await readFile(path, 'utf8'), path);
}

/** The value of the first parameter of that name (the MID reads the first one). */
export function parameterValue(params: ConfigParameter[], name: string): string | undefined {
  return params.find((p) => p.name === name)?.value;
}

/**
 * The MID Server's `agent/config.xml`: a `<parameters>` element holding
 * `<parameter name=".." value=".."/>` lines, `secure="true"` on values the MID encrypts
 * (DESIGN.md §4). This module renders a fresh one the way the vendor ships it, reads one back
 * safely, and edits single parameter lines without touching the rest of the file.
 */

export interface ConfigXmlOptions {
  url?: string;
  name?: string;
  midSysId?: string;
  /** 'mutual': the two credential lines are absent (as after `manage-certificates.sh -m`). */
  auth?: { username: string; password: string } | 'mutual';
  proxy?: { host: string; port: number; username?: string; password?: string };
  checkCertRevocation?: boolean;
}

/** Renders config.xml as shipped by the vendor, with placeholders where no value is given. */
export function renderConfigXml(options: ConfigXmlOptions = {}): string {
  const p = (name: string, value: string, secure = false): string =>
    `    <parameter name="${name}"${secure ? ' secure="true"' : ''} value="${escapeAttribute(value)}"/>`;
  const proxy = options.proxy;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
    '<parameters>',
    '',
    '    <!-- Instance URL: the ServiceNow instance this MID Server connects to,',
    '         for example https://YOUR_INSTANCE.service-now.com/ -->',
    p('url', options.url ?? PLACEHOLDERS.url),
    '',
    '    <!-- Instance credentials: the user this MID Server logs in as (it needs the mid_server role).',
    '         Values marked secure="true" are encrypted when the MID Server starts.',
    '         With mutual (certificate) authentication these two parameters are removed:',
    '         run bin/scripts/manage-certificates.sh -m from the agent directory. -->',
    ...credentialLines(options.auth, p),
    '',
    '    <!-- MID Server name: unique on the instance. -->',
    p('name', options.name ?? PLACEHOLDERS.name),
    '',
    '    <!-- sys_id of this MID Server\'s ecc_agent record; the MID Server fills it in on first connect. -->',
    p('mid_sys_id', options.midSysId ?? ''),
    '',
    '    <!-- Proxy: set mid.proxy.use_proxy to true and fill in host and port to reach the instance',
    '         through an HTTP proxy; username and password only if the proxy asks for them. -->',
    p('mid.proxy.use_proxy', proxy ? 'true' : 'false'),
    p('mid.proxy.host', proxy?.host ?? PLACEHOLDERS.proxyHost),
    p('mid.proxy.port', proxy ? String(proxy.port) : PLACEHOLDERS.proxyPort),
    p('mid.proxy.username', proxy?.username ?? PLACEHOLDERS.proxyUsername),
    p('mid.proxy.password', proxy?.password ?? PLACEHOLDERS.proxyPassword, true),
    '',
    '    <!-- Certificate checks on the connection to the instance until the instance policy',
    '         (mid_cert_check_policy) is downloaded. -->',
    p('mid.ssl.bootstrap.default.check_cert_hostname', 'true'),
    p('mid.ssl.bootstrap.default.check_cert_chain', 'true'),
    p('mid.ssl.bootstrap.default.check_cert_revocation', options.checkCertRevocation ? 'true' : 'false'),
    p('mid.ssl.use.instance.security.policy', 'false'),
    '',
    '</parameters>',
    '',
  ];
  return lines.join('\n');
}

function credentialLines(auth: ConfigXmlOptions['auth'], p: (n: string, v: string, s?: boolean) => string): string[] {
  if (auth === 'mutual') return [];
  return [
    p('mid.instance.username', auth?.username ?? PLACEHOLDERS.username),
    p('mid.instance.password', auth?.password ?? PLACEHOLDERS.password, true),
  ];
}

/** Escapes a value for a double-quoted XML attribute. */
export function escapeAttribute(value: string): string {
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(value)) {
    throw new MidcertError('USAGE', 'a config.xml value holds control characters');
  }
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
    .replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}

/**
 * Sets the value of one parameter that sits alone on its line, leaving every other byte of the
 * file as it was. Returns undefined when there is no such line (the caller decides what that
 * means); throws when the parameter exists but not in a form a line edit can change safely.
 */
export function setParameterValueInText(text: string, name: string, value: string): string | undefined {
  const lines = text.split('\n');
  const marker = `name="${name}"`;
  const index = lines.findIndex((line) => line.includes(marker));
  if (index < 0) return undefined;
  const line = lines[index] as string;
  const match = /^(\s*<parameter\s[^<]*?\bvalue=")([^"]*)("[^<]*\/>\s*)$/.exec(line);
  if (!match || (line.match(/<parameter\b/g) ?? []).length !== 1) {
    throw new MidcertError('OUTPUT_FAILED', `config.xml parameter "${name}" is not alone on its line; not editing it`);
  }
  lines[index] = `${match[1]}${escapeAttribute(value)}${match[3]}`;
  return lines.join('\n');
}

/**
 * Like setParameterValueInText, but adds the parameter (one line, after `after`'s line, else before
 * `</parameters>`) when it is absent — how the MID adds keypairs.mid_id on its first start.
 */
export function setOrAddParameterInText(text: string, name: string, value: string, after = 'mid_sys_id'): string {
  const edited = setParameterValueInText(text, name, value);
  if (edited !== undefined) return edited;
  const lines = text.split('\n');
  const anchor = lines.findIndex((line) => line.includes(`name="${after}"`));
  const close = lines.findIndex((line) => /^\s*<\/parameters>/.test(line));
  const at = anchor >= 0 ? anchor + 1 : close;
  if (at < 0) throw new MidcertError('OUTPUT_FAILED', 'config.xml has no </parameters> line to add a parameter before');
  const like = lines[anchor >= 0 ? anchor : close] as string;
  const indent = /^\s*/.exec(like)?.[0] ?? '    ';
  const cr = like.endsWith('\r') ? '\r' : '';
  lines.splice(at, 0, `${anchor >= 0 ? indent : '    '}<parameter name="${escapeAttribute(name)}" value="${escapeAttribute(value)}"/>${cr}`);
  return lines.join('\n');
}
