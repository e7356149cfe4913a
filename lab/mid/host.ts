import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MidcertError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/fs.js';
import { renderConfigXml, type ConfigXmlOptions } from './config-xml.js';
import { DEFAULT_ALIAS, DEFAULT_STOREPASS, STOREPASS_ENV } from './constants.js';
import { emptyJks } from './keytool.js';

/**
 * A simulated MID Server install root: `<home>/agent/` with config.xml, the keystore, the
 * manage-certificates script, the log and the backup folder, laid out as DESIGN.md §4 describes.
 */

export type KeystoreFileName = 'agent_keystore' | 'agent_keystore.jks';

/** The client alias the MID reads, the JKS default password, the script's password variable. */
export { DEFAULT_ALIAS, DEFAULT_STOREPASS, STOREPASS_ENV };

export interface MidHostOptions {
  /** Install root; `agent/` is created inside it. Must not already hold an `agent/` directory. */
  home: string;
  /** MID name; the vendor placeholder when absent. */
  name?: string;
  /** Instance URL; the vendor placeholder when absent. */
  instanceUrl?: string;
  /** Basic-auth credentials, 'mutual' for none (as after `-m`), absent for the vendor placeholders. */
  auth?: { username: string; password: string } | 'mutual';
  proxy?: { host: string; port: number; username?: string; password?: string };
  keystoreFileName?: KeystoreFileName;
  /** Keystore password; `changeit` by default. At least 6 characters (keytool's rule). */
  storepass?: string;
  /** A PEM bundle (leaf, intermediates, root, PKCS#8 key) imported under the default alias. */
  bundlePem?: string;
  midSysId?: string;
  checkCertRevocation?: boolean;
}

export interface MidHost {
  home: string;
  agentDir: string;
  configPath: string;
  keystorePath: string;
  scriptPath: string;
  logPath: string;
  /** agent/logs/wrapper.log: the vendor's second log (vendor-facts §8). */
  wrapperLogPath: string;
  securityDir: string;
  backupDir: string;
}

const SCRIPT_TEMPLATE = scriptTemplatePath();

/** Beside this module; when running compiled (dist/lab/mid/host.js), tsc has not copied the script, so the source copy. */
function scriptTemplatePath(): string {
  const beside = fileURLToPath(new URL('./manage-certificates.sh', import.meta.url));
  if (existsSync(beside)) return beside;
  const source = fileURLToPath(new URL('../../../lab/mid/manage-certificates.sh', import.meta.url));
  return existsSync(source) ? source : beside;
}

/** The paths of a MID host rooted at `home` (whether or not it exists yet). */
export function midHostPaths(home: string, keystoreFileName: KeystoreFileName = 'agent_keystore'): MidHost {
  const root = resolve(home);
  const agentDir = join(root, 'agent');
  return {
    home: root,
    agentDir,
    configPath: join(agentDir, 'config.xml'),
    keystorePath: join(agentDir, 'security', keystoreFileName),
    scriptPath: join(agentDir, 'bin', 'scripts', 'manage-certificates.sh'),
    logPath: join(agentDir, 'logs', 'agent0.log.0'),
    wrapperLogPath: join(agentDir, 'logs', 'wrapper.log'),
    securityDir: join(agentDir, 'security'),
    backupDir: join(agentDir, 'security_backup'),
  };
}

export async function createMidHost(options: MidHostOptions): Promise<MidHost> {
  const storepass = options.storepass ?? DEFAULT_STOREPASS;
  if (storepass.length < 6) throw new MidcertError('USAGE', 'the keystore password must be at least 6 characters (keytool refuses shorter ones)');
  const host = midHostPaths(options.home, options.keystoreFileName);
  await assertNoAgentDir(host);
  await makeTree(host);
  await writeFileAtomic(host.configPath, renderConfigXml(configOptions(options)), { mode: 0o600 });
  await copyFile(SCRIPT_TEMPLATE, host.scriptPath);
  await chmod(host.scriptPath, 0o755);
  await writeFileAtomic(host.logPath, '');
  await writeFileAtomic(host.wrapperLogPath, '');
  await writeFileAtomic(host.keystorePath, await emptyJks(storepass), { mode: 0o600 });
  if (options.bundlePem !== undefined) await importInitialBundle(host, options.bundlePem, storepass);
  return host;
}

function configOptions(options: MidHostOptions): ConfigXmlOptions {
  return {
    url: options.instanceUrl, name: options.name, midSysId: options.midSysId, auth: options.auth,
    proxy: options.proxy, checkCertRevocation: options.checkCertRevocation,
  };
}

async function assertNoAgentDir(host: MidHost): Promise<void> {
  const entries = await readdir(host.home).catch(() => [] as string[]);
  if (entries.includes('agent')) throw new MidcertError('OUTPUT_FAILED', `${host.agentDir} already exists; not overwriting a MID install`);
}

async function makeTree(host: MidHost): Promise<void> {
  await mkdir(join(host.agentDir, 'bin', 'scripts'), { recursive: true });
  await mkdir(join(host.agentDir, 'logs'), { recursive: true });
  await mkdir(host.securityDir, { recursive: true, mode: 0o700 });
  await mkdir(host.backupDir, { recursive: true, mode: 0o700 });
}

async function importInitialBundle(host: MidHost, bundlePem: string, storepass: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-bundle-'));
  try {
    const file = join(dir, 'bundle.pem');
    await writeFileAtomic(file, bundlePem, { mode: 0o600 });
    const result = await runManageCertificates(host, ['-a', DEFAULT_ALIAS, file], { storepass });
    if (result.code !== 0) throw new MidcertError('BUNDLE_INVALID', 'manage-certificates.sh -a refused the initial bundle', { detail: result.stderr.trim() });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the host's manage-certificates.sh as an operator would: from `agent/` (or `cwd`), with the
 * store password in the environment. Never throws for a non-zero exit; the caller reads `code`.
 */
export function runManageCertificates(host: MidHost, args: string[], options: { storepass?: string; cwd?: string } = {}): Promise<ScriptResult> {
  const env = { ...process.env, [STOREPASS_ENV]: options.storepass ?? DEFAULT_STOREPASS };
  return new Promise((done) => {
    execFile(host.scriptPath, args, { cwd: options.cwd ?? host.agentDir, env, timeout: 120_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
