import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isMidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { certificateToPem } from '../../pki/certificate.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import { parameterValue, PLACEHOLDERS, readConfigXml, type ConfigParameter } from './config-xml.js';
import { DEFAULT_ALIAS } from './host.js';

/**
 * What a MID reads at start-up: config.xml (url, name, credentials, TLS checks) and, under
 * mutual auth, the client key entry from its keystore. Failures carry the lines the real MID
 * would log, so the runner can write them and mark the unit failed.
 */

export interface MutualAuth {
  mode: 'mutual';
  /** Leaf first, as stored in the keystore entry (Java sends the whole stored chain). */
  certChainPem: string;
  keyPem: string;
  leafSubject: string;
  leafNotAfter: Date;
  leafSha256: string;
}

export interface BasicAuth {
  mode: 'basic';
  username: string;
  /** Ready-made `Basic ...` header value; the password itself is not kept. */
  authorization: string;
}

export interface MidSetup {
  midName: string;
  url: URL;
  auth: MutualAuth | BasicAuth;
  checkCertChain: boolean;
  checkCertHostname: boolean;
  useProxy: boolean;
  /** mid_sys_id is empty: the MID writes the one the instance returns. */
  needsSysId: boolean;
  keystoreFile?: string;
}

export class StartupFailure extends Error {
  constructor(readonly logLines: string[]) {
    super(logLines.join('; '));
    this.name = 'StartupFailure';
  }
}

export async function loadMidSetup(agentDir: string, storepass: string): Promise<MidSetup> {
  const params = await readConfig(join(agentDir, 'config.xml'));
  const midName = parameterValue(params, 'name') ?? '';
  const urlText = parameterValue(params, 'url') ?? '';
  if (midName === '' || midName === PLACEHOLDERS.name) throw new StartupFailure(['MID Server name is not configured in config.xml (parameter "name")']);
  const url = parseInstanceUrl(urlText);
  const base = {
    midName, url,
    checkCertChain: parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_chain') !== 'false',
    checkCertHostname: parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_hostname') !== 'false',
    useProxy: parameterValue(params, 'mid.proxy.use_proxy') === 'true',
    needsSysId: (parameterValue(params, 'mid_sys_id') ?? '') === '',
  };
  const basic = basicAuthFrom(params);
  if (basic) return { ...base, auth: basic };
  const { auth, file } = await loadClientKey(agentDir, storepass);
  return { ...base, auth, keystoreFile: file };
}

async function readConfig(path: string): Promise<ConfigParameter[]> {
  try {
    return await readConfigXml(path);
  } catch (err) {
    throw new StartupFailure([`Unable to read config.xml: ${errorText(err)}`]);
  }
}

function parseInstanceUrl(text: string): URL {
  if (text === '' || text === PLACEHOLDERS.url) throw new StartupFailure(['Instance URL is not configured in config.xml (parameter "url")']);
  try {
    const url = new URL(text.endsWith('/') ? text : `${text}/`);
    if (url.protocol !== 'https:') throw new Error('not https');
    return url;
  } catch {
    throw new StartupFailure([`Invalid instance URL in config.xml: ${text.slice(0, 200)}`]);
  }
}

/**
 * A MID with credential parameters in config.xml logs in with basic auth (placeholders included:
 * it sends them, and the instance refuses them). Under mutual auth those lines are absent.
 */
function basicAuthFrom(params: ConfigParameter[]): BasicAuth | undefined {
  const username = parameterValue(params, 'mid.instance.username');
  const password = parameterValue(params, 'mid.instance.password');
  if (username === undefined && password === undefined) return undefined;
  const user = username ?? '';
  return { mode: 'basic', username: user, authorization: `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}` };
}

async function loadClientKey(agentDir: string, storepass: string): Promise<{ auth: MutualAuth; file: string }> {
  const file = await findKeystoreFile(agentDir);
  if (!file) throw new StartupFailure(['java.io.FileNotFoundException: security/agent_keystore (No such file or directory)', 'Could not find valid private key']);
  let ks;
  try {
    const info = await stat(file);
    if (info.size > LIMITS.keystoreBytes) throw new Error(`keystore is ${info.size} bytes`);
    ks = readKeystore(await readFile(file), storepass);
  } catch (err) {
    throw new StartupFailure([javaKeystoreError(err), 'Could not find valid private key']);
  }
  const entry = findEntry(ks, DEFAULT_ALIAS);
  const leaf = entry?.chain[0];
  if (!entry || entry.kind !== 'PrivateKeyEntry' || !entry.privateKey || !leaf) throw new StartupFailure(['Could not find valid private key']);
  return {
    file,
    auth: {
      mode: 'mutual',
      certChainPem: entry.chain.map(certificateToPem).join(''),
      keyPem: entry.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      leafSubject: leaf.subjectText, leafNotAfter: leaf.notAfter, leafSha256: leaf.sha256,
    },
  };
}

/** The vendor docs name `agent_keystore`; some guides `agent_keystore.jks`. Accept both. */
export async function findKeystoreFile(agentDir: string): Promise<string | undefined> {
  for (const name of ['agent_keystore', 'agent_keystore.jks']) {
    const path = join(agentDir, 'security', name);
    if (await stat(path).then((s) => s.isFile(), () => false)) return path;
  }
  return undefined;
}

function javaKeystoreError(err: unknown): string {
  if (isMidcertError(err) && err.code === 'KEYSTORE_PASSWORD') return 'java.io.IOException: Keystore was tampered with, or password was incorrect';
  return `java.io.IOException: Invalid keystore format (${errorText(err)})`;
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 300) ?? '';
}
