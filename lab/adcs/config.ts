import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PROFILES } from '../../pki/issue.js';
import { loadLabCa } from '../lab-ca.js';
import { TEMPLATE_PROFILE_NAMES } from './templates.js';
import type { AdcsOptions, AdcsUser, TemplateConfig, TemplateMode } from './types.js';

/**
 * The JSON file `main.ts` runs from. Paths are relative to the file. Example:
 * {
 *   "caDir": "ca", "port": 0, "stateFile": "adcs-state.json",
 *   "users": [{ "username": "LAB\\mid-enroll", "passwordEnv": "ADCS_LAB_PASSWORD" }],
 *   "clientCaFile": "ca/chain.pem",
 *   "templates": { "MIDServerClient": { "profile": "client", "validityDays": 365, "mode": "issue" } }
 * }
 * Without "tls", a server certificate for localhost/127.0.0.1 is issued from the lab CA at start.
 */
export interface AdcsConfigFile {
  caDir: string;
  host?: string;
  port?: number;
  tls?: { certFile: string; keyFile: string };
  users?: Array<{ username: string; password?: string; passwordEnv?: string }>;
  clientCaFile?: string;
  templates?: Record<string, TemplateConfig>;
  stateFile?: string;
  firstRequestId?: number;
  requireBrowserUserAgent?: boolean;
}

const MAX_CONFIG_BYTES = 1024 * 1024;
const MODES: TemplateMode[] = ['issue', 'pending', 'deny'];

export async function loadAdcsConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<AdcsOptions> {
  if ((await stat(file)).size > MAX_CONFIG_BYTES) throw new Error(`${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
  const config = JSON.parse(await readFile(file, 'utf8')) as AdcsConfigFile;
  const base = dirname(resolve(file));
  const at = (p: string): string => resolve(base, p);
  if (typeof config.caDir !== 'string') throw new Error('config: "caDir" (a saveLabCa directory) is required');
  const ca = await loadLabCa(at(config.caDir));
  const tls = config.tls
    ? { certPem: await readFile(at(config.tls.certFile), 'utf8'), keyPem: await readFile(at(config.tls.keyFile), 'utf8') }
    : await issueServerIdentity(ca);
  const options: AdcsOptions = { ca, tls, users: (config.users ?? []).map((u) => userFrom(u, env)) };
  if (config.host !== undefined) options.host = String(config.host);
  if (config.port !== undefined) options.port = portFrom(config.port);
  if (config.clientCaFile) options.clientCaPem = await readFile(at(config.clientCaFile), 'utf8');
  if (config.templates) options.templates = templatesFrom(config.templates);
  if (config.stateFile) options.stateFile = at(config.stateFile);
  if (config.firstRequestId !== undefined) options.firstRequestId = positiveInt(config.firstRequestId, 'firstRequestId');
  if (config.requireBrowserUserAgent !== undefined) options.requireBrowserUserAgent = config.requireBrowserUserAgent === true;
  return options;
}

async function issueServerIdentity(ca: Awaited<ReturnType<typeof loadLabCa>>): Promise<AdcsOptions['tls']> {
  const id = await ca.issueIdentity('CN=adcs.lab.local,O=midcert Lab', { ...PROFILES.server, sans: ['DNS:adcs.lab.local', 'DNS:localhost', 'IP:127.0.0.1'] });
  return { certPem: id.certPem + ca.intermediate.certPem, keyPem: id.keyPem };
}

function userFrom(u: { username: string; password?: string; passwordEnv?: string }, env: NodeJS.ProcessEnv): AdcsUser {
  if (typeof u.username !== 'string' || u.username === '') throw new Error('config: every user needs a "username"');
  const password = u.passwordEnv ? env[u.passwordEnv] : u.password;
  // Name the variable, never the value.
  if (typeof password !== 'string' || password === '') throw new Error(`config: user ${u.username} has no password (${u.passwordEnv ? `$${u.passwordEnv} is empty` : '"password" missing'})`);
  return { username: u.username, password };
}

function templatesFrom(raw: Record<string, TemplateConfig>): Record<string, TemplateConfig> {
  const out: Record<string, TemplateConfig> = {};
  for (const [name, t] of Object.entries(raw)) {
    if (!TEMPLATE_PROFILE_NAMES.includes(t.profile as never)) throw new Error(`config: template ${name}: profile must be one of ${TEMPLATE_PROFILE_NAMES.join(', ')}`);
    if (!MODES.includes(t.mode)) throw new Error(`config: template ${name}: mode must be one of ${MODES.join(', ')}`);
    const config: TemplateConfig = { profile: t.profile, mode: t.mode, validityDays: positiveInt(t.validityDays, `${name}.validityDays`) };
    if (t.autoApproveAfterPolls !== undefined) config.autoApproveAfterPolls = positiveInt(t.autoApproveAfterPolls, `${name}.autoApproveAfterPolls`, 0);
    if (t.enrollees !== undefined) config.enrollees = t.enrollees.map(String);
    out[name] = config;
  }
  return out;
}

function portFrom(value: unknown): number {
  const port = positiveInt(value, 'port', 0);
  if (port > 65535) throw new Error('config: port must be 0..65535');
  return port;
}

function positiveInt(value: unknown, what: string, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 1_000_000_000) {
    throw new Error(`config: ${what} must be an integer >= ${min}`);
  }
  return value;
}
