import { MidcertError } from '../../common/errors.js';
import { PLACEHOLDERS } from '../../agent/mid-config.js';

// Reading config.xml is product code (the agent reads it too); the lab adds rendering and editing.
export {
  CONFIG_XML_MAX_BYTES, PLACEHOLDERS, decodeAttribute, parameterValue, parseConfigXml, readConfigXml, type ConfigParameter,
} from '../../agent/mid-config.js';

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
