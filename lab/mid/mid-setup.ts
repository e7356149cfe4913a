import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isMidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { certificateToPem } from '../../pki/certificate.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import type { BackupPolicy } from './backups.js';
import { isPlaceholderUrl, parameterValue, PLACEHOLDERS, readConfigXml, type ConfigParameter } from './config-xml.js';
import { DEFAULT_ALIAS } from './constants.js';

/**
 * What a MID reads at start-up: config.xml (url, name, credentials, TLS checks, keypairs.mid_id,
 * keystore backup properties) and the key pair under defaultsecuritykeypairhandle — the mutual-auth
 * client identity, and on every MID the pair that decrypts credentials (vendor-facts §5). Failures
 * carry the lines the real MID would log, so the runner can write them and mark the unit failed.
 */

export interface KeyPair {
  /** Leaf first, as stored in the keystore entry (Java sends the whole stored chain). */
  certChainPem: string;
  keyPem: string;
  /** SPKI PEM: what the MID reports as its public key (ecc_agent.public_key). */
  publicKeyPem: string;
  leafSubject: string;
  leafNotAfter: Date;
  leafSha256: string;
  /** Issuer = subject: the MID's own pair, not a custom (CA-issued) certificate. */
  selfSigned: boolean;
}

export interface MutualAuth {
  mode: 'mutual';
}

export interface BasicAuth {
  mode: 'basic';
  username: string;
  /** Ready-made `Basic ...` header value; the password itself is not kept. */
  authorization: string;
}

/** What to do when both names of an aliased parameter are in config.xml with different values (vendor-facts §9). */
export type AliasConflictPolicy = 'warn' | 'fail';

export interface MidSetup {
  midName: string;
  url: URL;
  auth: MutualAuth | BasicAuth;
  /** Absent on a basic-auth MID before its first start made one. */
  keyPair?: KeyPair;
  checkCertChain: boolean;
  checkCertHostname: boolean;
  useProxy: boolean;
  /** mid_sys_id is empty: the MID writes the one the instance returns. */
  needsSysId: boolean;
  /** keypairs.mid_id from config.xml ('' = none yet: the MID writes one on first start). */
  midId: string;
  keystoreFile?: string;
  liveBackups: BackupPolicy;
  /** Lines the MID logs as warnings at start (alias conflicts resolved by precedence). */
  warnings: string[];
}

export class StartupFailure extends Error {
  constructor(readonly logLines: string[]) {
    super(logLines.join('; '));
    this.name = 'StartupFailure';
  }
}

/**
 * config.xml aliases the MID accepts (SND:servicenow-platform/mid-server/mid-server-parameters.md:
 * "mid.instance.username or glide.glidesoap.username", "mid.instance.password or
 * glide.glidesoap.password", "mid.instance.use_proxy or mid.proxy.use_proxy"). Which one wins when
 * both are present is not documented; the lab takes the first-named one and logs a warning, or
 * (policy 'fail') refuses to start, as vendor-facts §9 asks. glide.glidesoap.proxy_host/_port are
 * aliases of the *upgrade* proxy, not of mid.proxy.host/port, so the lab MID does not read them.
 */
export const PARAMETER_ALIASES: readonly (readonly [string, string])[] = [
  ['mid.instance.username', 'glide.glidesoap.username'],
  ['mid.instance.password', 'glide.glidesoap.password'],
  ['mid.instance.use_proxy', 'mid.proxy.use_proxy'],
];

export async function loadMidSetup(agentDir: string, storepass: string, options: { aliasConflict?: AliasConflictPolicy } = {}): Promise<MidSetup> {
  const params = await readConfig(join(agentDir, 'config.xml'));
  const warnings: string[] = [];
  const aliased = (primary: string): string | undefined => aliasedValue(params, primary, options.aliasConflict ?? 'warn', warnings);
  const midName = parameterValue(params, 'name') ?? '';
  const urlText = parameterValue(params, 'url') ?? '';
  if (midName === '' || midName === PLACEHOLDERS.name) throw new StartupFailure(['MID Server name is not configured in config.xml (parameter "name")']);
  const url = parseInstanceUrl(urlText);
  const base = {
    midName, url, warnings,
    checkCertChain: parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_chain') !== 'false',
    checkCertHostname: parameterValue(params, 'mid.ssl.bootstrap.default.check_cert_hostname') !== 'false',
    useProxy: aliased('mid.instance.use_proxy') === 'true',
    needsSysId: (parameterValue(params, 'mid_sys_id') ?? '') === '',
    midId: parameterValue(params, 'keypairs.mid_id') ?? '',
    liveBackups: {
      max: intParameter(params, 'mid.keystore.max_live_backups', 2),
      overwriteSpanSeconds: intParameter(params, 'mid.keystore.backup_overwrite_timespan', 60),
    },
  };
  const basic = basicAuthFrom(aliased('mid.instance.username'), aliased('mid.instance.password'));
  const file = await findKeystoreFile(agentDir);
  if (basic) {
    // A basic-auth MID starts without a pair (it makes one on first start); a broken keystore still stops it.
    const keyPair = file ? await loadKeyPair(file, storepass, { required: false }) : undefined;
    return { ...base, auth: basic, ...(keyPair ? { keyPair } : {}), ...(file ? { keystoreFile: file } : {}) };
  }
  if (!file) throw new StartupFailure(['java.io.FileNotFoundException: security/agent_keystore (No such file or directory)', 'Could not find valid private key']);
  const keyPair = await loadKeyPair(file, storepass, { required: true });
  return { ...base, auth: { mode: 'mutual' }, keyPair: keyPair as KeyPair, keystoreFile: file };
}

function aliasedValue(params: ConfigParameter[], primary: string, policy: AliasConflictPolicy, warnings: string[]): string | undefined {
  const alias = PARAMETER_ALIASES.find(([p]) => p === primary)?.[1];
  const first = parameterValue(params, primary);
  const second = alias ? parameterValue(params, alias) : undefined;
  if (first !== undefined && second !== undefined && first !== second) {
    const text = `config.xml holds both ${primary} and ${alias} with different values`;
    if (policy === 'fail') throw new StartupFailure([`${text}; refusing to guess which one to use`]);
    warnings.push(`${text}; using ${primary}`);
  }
  return first ?? second;
}

function intParameter(params: ConfigParameter[], name: string, fallback: number): number {
  const value = Number(parameterValue(params, name));
  return Number.isInteger(value) ? value : fallback;
}

async function readConfig(path: string): Promise<ConfigParameter[]> {
  try {
    return await readConfigXml(path);
  } catch (err) {
    throw new StartupFailure([`Unable to read config.xml: ${errorText(err)}`]);
  }
}

function parseInstanceUrl(text: string): URL {
  if (text === '' || isPlaceholderUrl(text)) throw new StartupFailure(['Instance URL is not configured in config.xml (parameter "url")']);
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
function basicAuthFrom(username: string | undefined, password: string | undefined): BasicAuth | undefined {
  if (username === undefined && password === undefined) return undefined;
  const user = username ?? '';
  return { mode: 'basic', username: user, authorization: `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}` };
}

async function loadKeyPair(file: string, storepass: string, { required }: { required: boolean }): Promise<KeyPair | undefined> {
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
  if (!entry || entry.kind !== 'PrivateKeyEntry' || !entry.privateKey || !leaf) {
    if (!required) return undefined;
    throw new StartupFailure(['Could not find valid private key']);
  }
  const leafPem = certificateToPem(leaf);
  const x509 = new X509Certificate(leafPem);
  return {
    certChainPem: entry.chain.map(certificateToPem).join(''),
    keyPem: entry.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: createPublicKey(entry.privateKey).export({ format: 'pem', type: 'spki' }).toString(),
    leafSubject: leaf.subjectText, leafNotAfter: leaf.notAfter, leafSha256: leaf.sha256,
    selfSigned: x509.subject === x509.issuer,
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
