import { access } from 'node:fs/promises';
import { Command } from 'commander';
import { EXIT, paint, printJson, readInput, useColor } from '../../common/cli.js';
import { LIMITS } from '../../common/limits.js';
import type { AgentConfig } from '../config.js';
import type { LastResult } from '../journal.js';
import type { Progress } from '../renewal/effects.js';
import type { RenewalEngine } from '../renewal/engine.js';
import type { collectStatus } from '../status.js';
import { defaultConfigPath } from '../../common/default-paths.js';
// What the commands run (config, daemon, gRPC, renewal engine) loads only when one runs, so
// --help and --version answer at once.
const loadAgentConfig = async (path: string): Promise<AgentConfig> => (await import('../config.js')).loadAgentConfig(path);

export const DEFAULT_CONFIG = process.env.MIDCERT_AGENT_CONFIG ?? defaultConfigPath();
const CONFIG_HELP = `agent config file (YAML; default $MIDCERT_AGENT_CONFIG or ${DEFAULT_CONFIG}; see docs/agent-config.md)`;

async function localContext(configPath: string): Promise<{ cfg: AgentConfig; engine: RenewalEngine; sources: Parameters<typeof collectStatus>[0] }> {
  const cfg = await loadAgentConfig(configPath);
  const [{ hostEffectsFrom }, { RenewalEngine }] = await Promise.all([import('../host-effects.js'), import('../renewal/engine.js')]);
  const effects = await hostEffectsFrom(cfg);
  const engine = new RenewalEngine(effects);
  return { cfg, engine, sources: { cfg, paths: effects.paths, storepass: effects.storepass, service: effects.service, engine, startedAt: new Date() } };
}

export function runCommand(): Command {
  return new Command('run')
    .description('run the agent daemon: watch the MID, serve the controller over mutual TLS, resume interrupted installs')
    .option('-c, --config <file>', CONFIG_HELP, DEFAULT_CONFIG)
    .option('--insecure-dev', 'serve plain-text gRPC with no authentication (development only; logs a loud warning)')
    .action(async (options: { config: string; insecureDev?: boolean }) => {
      const cfg = await loadAgentConfig(options.config);
      const { createLogger, startAgentDaemon } = await import('../daemon.js');
      const log = createLogger(cfg.log.level);
      const daemon = await startAgentDaemon(cfg, { insecureDev: options.insecureDev, logger: log });
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'shutting down');
          // close() returns within its grace; an install it left in flight is journaled (the next
          // start finishes or rolls it back) and must not keep the process alive past it.
          daemon.close().finally(() => { setTimeout(() => process.exit(), 500).unref(); resolve(); });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show certificate, keystore, config.xml, service, host and agent state (through the daemon when it runs, else from the files)')
    .option('-c, --config <file>', CONFIG_HELP, DEFAULT_CONFIG)
    .option('--json', 'print the AgentStatus JSON (docs/agent-status.md)')
    .action(async (options: { config: string; json?: boolean }) => {
      const cfg = await loadAgentConfig(options.config);
      const { collectStatus, statusToJson } = await import('../status.js');
      const json = (await statusViaDaemon(cfg)) ?? statusToJson(await collectStatus((await localContext(options.config)).sources));
      if (options.json) printJson(json);
      else process.stdout.write(formatStatus(json as Record<string, any>));
    });
}

async function statusViaDaemon(cfg: AgentConfig): Promise<unknown | undefined> {
  // A Windows named pipe (\\.\pipe\…) cannot be probed with access(); the connection attempt below tells.
  const pipe = cfg.listen.socket?.startsWith('\\\\.\\pipe\\') ?? false;
  if (!cfg.listen.socket || (!pipe && !(await access(cfg.listen.socket).then(() => true, () => false)))) return undefined;
  const [{ connectAgent }, { statusToJson }] = await Promise.all([import('../../proto/agent-client.js'), import('../status.js')]);
  const client = connectAgent(pipe ? `unix:${cfg.listen.socket}` : `unix://${cfg.listen.socket}`);
  try {
    return statusToJson(await client.getStatus({}, { deadlineMs: pipe ? 3_000 : 15_000 }));
  } catch {
    return undefined; // a stale socket: fall back to reading the files
  } finally {
    client.close();
  }
}

function formatStatus(s: Record<string, any>): string {
  const cert = s.certificate ?? {};
  const lines = [
    `MID          ${s.midName || '(unnamed)'}  ${s.config?.instanceUrl ?? ''}  auth: ${s.config?.authMode ?? '?'}`,
    `certificate  ${cert.present ? `${cert.leaf?.subject} — expires ${cert.leaf?.notAfter} (${cert.daysLeft} days)` : 'none'}`,
    `keystore     ${s.keystore?.path ?? ''} ${s.keystore?.type ?? ''} alias ${s.keystore?.alias ?? ''}: ${s.keystore?.aliasPresent ? s.keystore?.entryKind : 'missing'}${s.keystore?.error ? `  [${s.keystore.error.code}] ${s.keystore.error.message}` : ''}`,
    `service      ${s.service?.manager ?? ''} ${s.service?.unit ?? ''}: ${s.service?.active ? 'active' : 'inactive'}`,
    `agent        ${s.agent?.version ?? ''} renewal ${s.agent?.renewalState ?? 'idle'}${s.agent?.lastResult ? `; last ${s.agent.lastResult.ok ? 'ok' : `failed at ${s.agent.lastResult.failedStep} [${s.agent.lastResult.error?.code}]`} ${s.agent.lastResult.finishedAt}` : ''}`,
  ];
  for (const f of cert.findings ?? []) lines.push(`  ${f.severity} ${f.code}: ${f.message}`);
  return `${lines.join('\n')}\n`;
}

export function installCommand(): Command {
  return new Command('install')
    .description('install a complete bundle (certificates + PKCS#8 key) into the MID keystore: the same steps as the controller\'s InstallCertificate (lint, backup, stop, import, verify, start, health check, roll back on failure)')
    .option('-c, --config <file>', CONFIG_HELP, DEFAULT_CONFIG)
    .requiredOption('--bundle <file>', 'the PEM bundle (see: midcert-agent bundle build)')
    .option('--allow-key-type <type>', 'accept a bundle key other than the vendor-documented RSA 2048 (lint KEY_TYPE_UNVERIFIED), e.g. rsa-3072, ec-p256; repeatable (docs/agent-config.md)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--json', 'print the result: {"ok","renewalId","failedStep","error","rolledBack","previousSha256","currentSha256","finishedAt"}')
    .addHelpText('after', '\nExit status: 0 installed and verified; 1 failed (the MID was left on its previous certificate; see "rolledBack").')
    .action(async (options: { config: string; bundle: string; json?: boolean; allowKeyType: string[] }) => {
      const bundle = (await readInput(options.bundle, LIMITS.pemBytes, 'bundle')).toString('latin1');
      const { engine } = await localContext(options.config);
      const result = await engine.installBundle(bundle, (p) => progressLine(p, options.json), { allowKeyTypes: options.allowKeyType });
      report(result, options.json);
    });
}

export function rollbackCommand(): Command {
  return new Command('rollback')
    .description('put the newest keystore backup back and restart the MID')
    .option('-c, --config <file>', CONFIG_HELP, DEFAULT_CONFIG)
    .option('--json', 'print the result JSON')
    .action(async (options: { config: string; json?: boolean }) => {
      const { engine } = await localContext(options.config);
      report(await engine.rollback(), options.json);
    });
}

export function preflightCommand(): Command {
  return new Command('preflight')
    .description('check this host before a renewal: config.xml, keystore, state dir, service, clock, instance reachability (through the proxy), ADCv2, TLS interception')
    .option('-c, --config <file>', CONFIG_HELP, DEFAULT_CONFIG)
    .option('--json', 'print {"ok","checks":[{"name","ok","severity","code","message"}]}')
    .addHelpText('after', '\nExit status: 0 when no error-severity check failed, 1 otherwise.')
    .action(async (options: { config: string; json?: boolean }) => {
      const { runPreflight } = await import('../preflight.js');
      const report = await runPreflight((await localContext(options.config)).sources);
      if (options.json) printJson(report);
      else for (const c of report.checks ?? []) process.stdout.write(`${c.ok ? paint('ok  ', 'green', useColor()) : paint('FAIL', c.severity === 'error' ? 'red' : 'yellow', useColor())} ${String(c.severity).padEnd(7)} ${c.name}: ${c.message}${c.code ? ` [${c.code}]` : ''}\n`);
      if (!report.ok) process.exitCode = EXIT.findings;
    });
}

function progressLine(p: Progress, json?: boolean): void {
  if (!json) process.stderr.write(`  ${p.step.padEnd(15)} ${p.state}${p.message ? `: ${p.message}` : ''}\n`);
}

function report(result: LastResult, json?: boolean): void {
  if (json) printJson(result);
  else if (result.ok) process.stdout.write(`ok: installed and verified ${result.currentSha256}\n`);
  else process.stdout.write(`failed at ${result.failedStep}: [${result.error?.code}] ${result.error?.message}${result.rolledBack ? ' — rolled back to the previous keystore' : ''}\n${result.error?.detail ? `${result.error.detail}\n` : ''}`);
  if (!result.ok) process.exitCode = EXIT.findings;
}

