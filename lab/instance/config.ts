import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { InstanceOptions } from './types.js';

/**
 * The JSON config file `main.ts` reads. Paths are relative to the config file. The admin password
 * comes from `admin.passwordFile` (preferred: keep it 0600) or `admin.password`.
 *
 * {
 *   "tls": { "certFile": "instance.pem", "keyFile": "instance.key" },
 *   "host": "127.0.0.1", "port": 0,
 *   "admin": { "username": "admin", "passwordFile": "admin.password" },
 *   "publishDelayMs": 1000, "publishWord": "Exists", "timeScale": 1,
 *   "invalidQuery": "ignore", "autoValidate": true, "mtlsKeyUpdate": "update",
 *   "oneActiveChain": false, "attachmentToMissingRecord": "accept", "fingerprintField": true,
 *   "pluginActiveStyle": "true", "supportsTls": "true",
 *   "stateFile": "instance-state.json", "logFile": "instance.log"
 * }
 */
export interface InstanceConfigFile {
  tls: { certFile: string; keyFile: string };
  host?: string;
  port?: number;
  admin: { username: string; password?: string; passwordFile?: string };
  publishDelayMs?: number;
  publishWord?: 'Exists' | 'Active';
  /** Deprecated, ignored (Down follows the MID Server Monitor now). */
  downAfterMs?: number;
  timeScale?: number;
  invalidQuery?: InstanceOptions['invalidQuery'];
  autoValidate?: boolean;
  mtlsKeyUpdate?: InstanceOptions['mtlsKeyUpdate'];
  oneActiveChain?: boolean;
  attachmentToMissingRecord?: InstanceOptions['attachmentToMissingRecord'];
  fingerprintField?: boolean;
  pluginActiveStyle?: InstanceOptions['pluginActiveStyle'];
  supportsTls?: InstanceOptions['supportsTls'];
  stateFile?: string;
  logFile?: string;
  /** OAuth access token expires_in (default 1799 × timeScale) and refresh token lifetime. */
  oauthTokenSeconds?: number;
  oauthRefreshSeconds?: number;
  /** OAuth clients; the secret from clientSecretFile (preferred) or clientSecret. */
  oauthClients?: Array<{ clientId: string; clientSecret?: string; clientSecretFile?: string; applicationUser?: string }>;
}

const MAX_CONFIG_BYTES = 64 * 1024;

export async function loadInstanceConfig(path: string): Promise<InstanceOptions> {
  const text = await readFile(path, 'utf8');
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new Error(`${path} is larger than ${MAX_CONFIG_BYTES} bytes`);
  const config = JSON.parse(text) as InstanceConfigFile;
  const base = dirname(resolve(path));
  const at = (file: string): string => resolve(base, file);
  if (typeof config.tls?.certFile !== 'string' || typeof config.tls.keyFile !== 'string') throw new Error(`${path}: tls.certFile and tls.keyFile are required`);
  if (typeof config.admin?.username !== 'string') throw new Error(`${path}: admin.username is required`);
  const password = config.admin.passwordFile !== undefined
    ? (await readFile(at(config.admin.passwordFile), 'utf8')).replace(/\r?\n$/, '')
    : config.admin.password;
  if (!password) throw new Error(`${path}: admin.password or admin.passwordFile is required`);
  const options: InstanceOptions = {
    tls: { certPem: await readFile(at(config.tls.certFile), 'utf8'), keyPem: await readFile(at(config.tls.keyFile), 'utf8') },
    admin: { username: config.admin.username, password },
  };
  if (config.host !== undefined) options.host = config.host;
  if (config.port !== undefined) options.port = config.port;
  if (config.publishDelayMs !== undefined) options.publishDelayMs = config.publishDelayMs;
  if (config.publishWord !== undefined) options.publishWord = config.publishWord;
  for (const key of ['timeScale', 'invalidQuery', 'autoValidate', 'mtlsKeyUpdate', 'oneActiveChain', 'attachmentToMissingRecord',
    'fingerprintField', 'pluginActiveStyle', 'supportsTls', 'oauthTokenSeconds', 'oauthRefreshSeconds'] as const) {
    if (config[key] !== undefined) (options as unknown as Record<string, unknown>)[key] = config[key];
  }
  if (config.oauthClients !== undefined) {
    options.oauthClients = [];
    for (const c of config.oauthClients) {
      const secret = c.clientSecretFile !== undefined ? (await readFile(at(c.clientSecretFile), 'utf8')).replace(/\r?\n$/, '') : c.clientSecret;
      if (typeof c.clientId !== 'string' || !secret) throw new Error(`${path}: oauthClients[] needs clientId and clientSecretFile (or clientSecret)`);
      options.oauthClients.push({ clientId: c.clientId, clientSecret: secret, ...(c.applicationUser ? { applicationUser: c.applicationUser } : {}) });
    }
  }
  if (config.stateFile !== undefined) options.stateFile = at(config.stateFile);
  if (config.logFile !== undefined) options.log = at(config.logFile);
  return options;
}
