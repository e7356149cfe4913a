import { copyFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { posix, win32 } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { execProgram, type ExecResult } from '../../common/exec.js';

/**
 * `midcert-agent service install|uninstall`: the agent itself as a Windows service, through WinSW
 * (a Node single executable cannot answer the Service Control Manager, so `sc create` on the exe
 * would fail with 1053). WinSW's convention: the wrapper exe and its XML share a base name, so the
 * shipped winsw.exe is copied to `<name>-service.exe` next to midcert-agent.exe (not `<name>.exe`:
 * with the default name that is the agent exe itself), `<name>-service.xml` is written beside it,
 * and `<name>-service.exe install|stop|uninstall` talks to the SCM. docs/windows.md.
 */

export type ServiceAction = 'install' | 'uninstall';

export interface ServiceResult {
  ok: true;
  name: string;
  wrapper: string;
  config: string;
  action: ServiceAction;
}

export interface ServiceOptions {
  /** The agent config the service runs with (made absolute). */
  config: string;
  name?: string;
  displayName?: string;
  /** LocalSystem (default), NT AUTHORITY\LocalService, NT AUTHORITY\NetworkService or NT SERVICE\<name>. */
  account?: string;
  /** The WinSW exe to copy (default: winsw.exe next to the agent exe). */
  wrapper?: string;
  /** The agent exe (default process.execPath). */
  exe?: string;
  /** When the agent is not the single executable: the script node runs (process.argv[1]). */
  script?: string;
  platform?: NodeJS.Platform;
  run?: (file: string, args: string[], options: { cwd: string; timeoutMs: number }) => Promise<ExecResult>;
}

export const DEFAULT_SERVICE_NAME = 'midcert-agent';
export const WRAPPER_FILE = 'winsw.exe';
/** WinSW waits this long after Ctrl+C before it kills the agent (the daemon's shutdown grace fits well inside). */
export const STOP_TIMEOUT = '30 sec';

// The path module of the host (win32 on Windows; posix only in tests on Linux).
const path = process.platform === 'win32' ? win32 : posix;

export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** The service id becomes a file name and the SCM key: letters, digits, `.`, `_`, `-`. */
export function checkServiceName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/.test(name) || /\.(exe|xml)$/i.test(name)) {
    throw new MidcertError('USAGE', `--name ${JSON.stringify(name)}: use 1-80 letters, digits, ".", "_" or "-" (it names the service and the files <name>-service.exe / .xml)`);
  }
  return name;
}

export interface ServiceAccount { domain: string; user: string }

/** undefined = LocalSystem (WinSW's default, no <serviceaccount>). */
export function parseAccount(account: string | undefined): ServiceAccount | undefined {
  if (account === undefined || /^(LocalSystem|NT AUTHORITY\\SYSTEM)$/i.test(account)) return undefined;
  const m = /^(NT AUTHORITY)\\(LocalService|NetworkService)$/i.exec(account) ?? /^(NT SERVICE)\\([A-Za-z0-9._-]{1,80})$/i.exec(account);
  if (!m) throw new MidcertError('USAGE', `--account ${JSON.stringify(account)}: use LocalSystem, NT AUTHORITY\\LocalService, NT AUTHORITY\\NetworkService or NT SERVICE\\<name> (an account with a password: edit <serviceaccount> in the XML)`);
  return { domain: m[1]!.toUpperCase(), user: m[2]! };
}

export interface ServiceXmlInput {
  id: string;
  displayName: string;
  executable: string;
  /** Arguments before `run --config …` (the script, when the agent runs on a plain node.exe). */
  leadingArgs?: string[];
  configPath: string;
  workingDirectory: string;
  account?: ServiceAccount;
}

const quoteArg = (v: string): string => {
  if (v.includes('"')) throw new MidcertError('USAGE', `${JSON.stringify(v)}: a Windows path cannot hold a double quote`);
  return `"${v}"`;
};

/** The WinSW (1.x, also read by 2.x) service configuration; every value XML-escaped. */
export function serviceXml(input: ServiceXmlInput): string {
  const args = [...(input.leadingArgs ?? []).map(quoteArg), 'run', '--config', quoteArg(input.configPath)].join(' ');
  const el = (tag: string, value: string): string => `  <${tag}>${xmlEscape(value)}</${tag}>`;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!-- Written by midcert-agent service install (docs/windows.md). Remove with: midcert-agent service uninstall -->',
    '<service>',
    el('id', input.id),
    el('name', input.displayName),
    el('description', 'midcert host agent: renews the ServiceNow MID Server mutual TLS certificate'),
    el('executable', input.executable),
    el('arguments', args),
    el('workingdirectory', input.workingDirectory),
    el('startmode', 'Automatic'),
    el('stoptimeout', STOP_TIMEOUT),
    '  <onfailure action="restart" delay="10 sec"/>',
    '  <onfailure action="restart" delay="30 sec"/>',
    el('resetfailure', '1 hour'),
    '  <log mode="roll"/>',
  ];
  if (input.account) {
    lines.push('  <serviceaccount>', `  ${el('domain', input.account.domain)}`, `  ${el('user', input.account.user)}`, `  ${el('allowservicelogon', 'true')}`, '  </serviceaccount>');
  }
  lines.push('</service>', '');
  return lines.join('\r\n');
}

export interface ServicePlan {
  name: string;
  dir: string;
  /** Where the wrapper is copied from. */
  source: string;
  /** <dir>\<name>-service.exe, <dir>\<name>-service.exe.config, <dir>\<name>-service.xml */
  wrapper: string;
  wrapperConfig: string;
  xml: string;
}

export function servicePlan(exe: string, name: string, wrapper?: string): ServicePlan {
  const dir = path.dirname(path.resolve(exe));
  // "-service": the default name is midcert-agent, and <name>.exe would be the agent exe itself.
  const base = `${name}-service`;
  const target = path.join(dir, `${base}.exe`);
  if (target.toLowerCase() === path.resolve(exe).toLowerCase()) throw new MidcertError('USAGE', `--name ${name}: ${target} is the agent exe itself; choose another name`);
  return { name, dir, source: wrapper ? path.resolve(wrapper) : path.join(dir, WRAPPER_FILE), wrapper: target, wrapperConfig: `${target}.config`, xml: path.join(dir, `${base}.xml`) };
}

function refuseOffWindows(action: ServiceAction, platform: NodeJS.Platform): void {
  if (platform !== 'win32') throw new MidcertError('USAGE', `service ${action} is for Windows hosts; on Linux use the systemd unit (packaging/midcert-agent.service, docs/packaging.md)`);
}

const defaultRun: NonNullable<ServiceOptions['run']> = (file, args, options) => execProgram(file, args, options);

async function wrapperRun(opts: ServiceOptions, plan: ServicePlan, verb: string): Promise<ExecResult> {
  return (opts.run ?? defaultRun)(plan.wrapper, [verb], { cwd: plan.dir, timeoutMs: 120_000 });
}

function wrapperFailed(plan: ServicePlan, verb: string, r: ExecResult): MidcertError {
  const out = `${r.stdout}\n${r.stderr}`.trim();
  const first = out.split(/\r?\n/).find((l) => l.trim() !== '')?.trim().slice(0, 300) ?? '';
  return new MidcertError('SERVICE_FAILED', `${path.basename(plan.wrapper)} ${verb} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''})${first ? `: ${first}` : ''}`, { detail: out.slice(0, 2000) });
}

export async function installService(opts: ServiceOptions): Promise<ServiceResult> {
  refuseOffWindows('install', opts.platform ?? process.platform);
  const name = checkServiceName(opts.name ?? DEFAULT_SERVICE_NAME);
  const account = parseAccount(opts.account);
  const exe = path.resolve(opts.exe ?? process.execPath);
  const plan = servicePlan(exe, name, opts.wrapper);
  const config = path.resolve(opts.config);
  if (!existsSync(config)) throw new MidcertError('CONFIG_INVALID', `config file not found: ${config} (the service runs: ${path.basename(exe)} run --config "${config}")`);
  if (!existsSync(plan.source)) {
    throw new MidcertError('CONFIG_INVALID', opts.wrapper
      ? `--wrapper ${plan.source}: file not found`
      : `WinSW wrapper not found: expected ${plan.source} next to ${path.basename(exe)} (it ships in the Windows zip), or pass --wrapper PATH`);
  }
  const xml = serviceXml({
    id: name,
    displayName: opts.displayName ?? (name === DEFAULT_SERVICE_NAME ? 'midcert agent' : `midcert agent (${name})`),
    executable: exe,
    leadingArgs: opts.script ? [path.resolve(opts.script)] : [],
    configPath: config,
    workingDirectory: plan.dir,
    account,
  });
  await writeFile(plan.xml, xml, 'utf8');
  if (path.resolve(plan.source) !== plan.wrapper) {
    await copyFile(plan.source, plan.wrapper);
    // WinSW 1.x is a .NET 2.0 build; its .exe.config lets it run on .NET 4 (all current Windows).
    if (existsSync(`${plan.source}.config`)) await copyFile(`${plan.source}.config`, plan.wrapperConfig);
  }
  const r = await wrapperRun(opts, plan, 'install');
  if (r.code !== 0 || r.timedOut) throw wrapperFailed(plan, 'install', r);
  return { ok: true, name, wrapper: plan.wrapper, config: plan.xml, action: 'install' };
}

/** `<name>.exe stop` output that means there was nothing to stop. */
const NOT_RUNNING = /not (been )?started|not running|already stopped|is stopped|\b1062\b|does not exist|NonExistent/i;

export async function uninstallService(opts: Omit<ServiceOptions, 'config'> & { config?: string }): Promise<ServiceResult> {
  refuseOffWindows('uninstall', opts.platform ?? process.platform);
  const name = checkServiceName(opts.name ?? DEFAULT_SERVICE_NAME);
  const exe = path.resolve(opts.exe ?? process.execPath);
  const plan = servicePlan(exe, name, opts.wrapper);
  if (!existsSync(plan.wrapper)) throw new MidcertError('CONFIG_INVALID', `${plan.wrapper} not found: the service "${name}" was not installed from this folder (use --name, or run the midcert-agent.exe it was installed with)`);
  const full = { ...opts, config: opts.config ?? '' };
  const stop = await wrapperRun(full, plan, 'stop');
  if ((stop.code !== 0 || stop.timedOut) && !NOT_RUNNING.test(`${stop.stdout}\n${stop.stderr}`)) throw wrapperFailed(plan, 'stop', stop);
  const r = await wrapperRun(full, plan, 'uninstall');
  if (r.code !== 0 || r.timedOut) throw wrapperFailed(plan, 'uninstall', r);
  await rm(plan.xml, { force: true });
  await rm(plan.wrapperConfig, { force: true });
  // Windows cannot delete a running image; the wrapper has exited once uninstall returned.
  await rm(plan.wrapper, { force: true });
  return { ok: true, name, wrapper: plan.wrapper, config: plan.xml, action: 'uninstall' };
}
