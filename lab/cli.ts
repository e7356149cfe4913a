#!/usr/bin/env node
/**
 * midcert-lab — the simulated world in the background: a lab CA, a ServiceNow instance, an ADCS
 * certsrv and K MID hosts, started by `up`, inspected by `status`, driven by `mid`, stopped by
 * `down`. See docs/lab/README.md. Heavy modules are imported by the command that needs them, so
 * `mid` (called by the agent's service commands) stays quick.
 */
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { printJson, reportError, runProgram } from '../common/cli.js';
import { MidcertError, isMidcertError } from '../common/errors.js';
import { VERSION } from '../common/version.js';

const PROGRAM = 'midcert-lab';
const MID_VERBS = ['start', 'stop', 'restart', 'status', 'is-active'] as const;

const EXIT_HELP = `
Exit codes:
  0   success
  1   the lab did not start (a part failed, a MID did not come Up), a process could not be
      stopped, a lab already runs in DIR, or DIR holds no lab  ([LAB_*] codes)
  2   bad command-line usage
  3   status: the lab is not (fully) running; other commands: unusable input (e.g. lab.json)
  4   a file cannot be read or written
  70  internal error (a bug: please report it)
  mid: systemctl's codes: 0 ok; 3 not active (is-active, status); 4 unknown unit (status);
       5 unknown unit (start, stop, restart); 1 runner unreachable or no lab; 2 usage.

Errors print one line on stderr: "midcert-lab: error [CODE] message".`;

function intOption(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

function scaleOption(value: string): number {
  const n = Number(value);
  if (!/^\d*\.?\d+(e-?\d+)?$/i.test(value) || !(n >= 0.0001 && n <= 100)) throw new InvalidArgumentError('must be a number from 0.0001 to 100');
  return n;
}

function dirOption(): Option {
  return new Option('--dir <dir>', 'the lab directory').env('MIDCERT_LAB_DIR').makeOptionMandatory();
}

/** LAB_* failures exit 1 (see EXIT_HELP); everything else goes through the shared error contract. */
function labAction<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      if (isMidcertError(err) && err.code.startsWith('LAB_')) {
        reportError(PROGRAM, err);
        process.exitCode = 1;
        return;
      }
      throw err;
    }
  };
}

function upCommand(): Command {
  return new Command('up')
    .description('start a lab in the background (instance, ADCS, K MID hosts; with --with-agents a controller data dir and K agents) and return once every part answers, every MID is Up and every agent answers')
    .addOption(dirOption())
    .option('--mids <k>', 'number of MID hosts (mid01, mid02, …)', intOption(0, 500), 3)
    .option('--leaf-days <n>', 'validity of each MID\'s initial client certificate, so a rotation is a renewal', intOption(1, 3650), 20)
    .option('--publish-delay-ms <ms>', 'instance: delay before an uploaded certificate reads published', intOption(0, 600_000), 1000)
    .addOption(new Option('--publish-word <word>', 'instance: the published status word').choices(['Exists', 'Active']).default('Exists'))
    .addOption(new Option('--auth <mode>', 'how the MIDs authenticate: mutual (a published lab leaf per MID) or basic (freshly installed: credentials in config.xml, the MID\'s own self-signed key pair)').choices(['mutual', 'basic']).default('mutual'))
    .option('--time-scale <factor>', 'one factor on every vendor timing (MID poll 40 s, MID start 30 s, instance monitor 300 s); e.g. 0.01 for tests', scaleOption, 1)
    .addOption(new Option('--mid-log-format <format>', 'the MIDs\' log line format: old (before Tokyo) or tokyo').choices(['old', 'tokyo']).default('old'))
    .addOption(new Option('--heartbeat-ms <ms>', 'deprecated: the MID poll period; sets --time-scale to ms / 40000').argParser(intOption(20, 600_000)).hideHelp())
    .addOption(new Option('--down-after-ms <ms>', 'deprecated: the instance\'s old "silent this long reads Down" rule').argParser(intOption(100, 3_600_000)).hideHelp())
    .option('--port-base <port>', 'instance on this port, ADCS on the next (default: ephemeral ports)', intOption(1, 65534))
    .addOption(new Option('--adcs-template-mode <mode>', 'ADCS: what the MIDServerClient template does with a request').choices(['issue', 'pending', 'deny']).default('issue'))
    .option('--timeout-ms <ms>', 'how long each part may take to answer, and the MIDs to come Up (a MID takes 30 s × time scale to start)', intOption(1000, 3_600_000), 120_000)
    .option('--parallel <n>', 'MID hosts set up at once (each import runs a keytool JVM; default 2 per CPU, at most 16)', intOption(1, 64))
    .option('--with-agents', 'also a controller data dir (CA = the lab CA, instance = the lab instance) and one midcert-agent per MID, all in one agents process')
    .option('--controller-dir <dir>', 'with --with-agents: the controller data dir (new or empty; default DIR/controller)')
    .option('--agent-settle-seconds <n>', 'with --with-agents: the agents\' verify.settleSeconds', intOption(0, 3600), 3)
    .option('--json', 'print the lab as JSON (includes the generated passwords)')
    .action(labAction(async (opts: {
      dir: string; mids: number; leafDays: number; publishDelayMs: number; publishWord: 'Exists' | 'Active'; heartbeatMs?: number;
      downAfterMs?: number; auth: 'mutual' | 'basic'; timeScale: number; midLogFormat: 'old' | 'tokyo'; portBase?: number; adcsTemplateMode: 'issue' | 'pending' | 'deny'; timeoutMs: number; parallel?: number; json?: boolean;
      withAgents?: boolean; controllerDir?: string; agentSettleSeconds: number;
    }) => {
      if (opts.controllerDir !== undefined && !opts.withAgents) throw new MidcertError('USAGE', '--controller-dir needs --with-agents');
      const { upLab, DEFAULT_PARALLEL } = await import('./up.js');
      const result = await upLab({
        dir: opts.dir, mids: opts.mids, leafDays: opts.leafDays, publishDelayMs: opts.publishDelayMs, publishWord: opts.publishWord,
        timeScale: opts.heartbeatMs !== undefined && opts.timeScale === 1 ? opts.heartbeatMs / 40_000 : opts.timeScale,
        ...(opts.downAfterMs !== undefined ? { downAfterMs: opts.downAfterMs } : {}),
        auth: opts.auth, midLogFormat: opts.midLogFormat, portBase: opts.portBase ?? null,
        adcsTemplateMode: opts.adcsTemplateMode, timeoutMs: opts.timeoutMs, parallel: opts.parallel ?? DEFAULT_PARALLEL, exitOnSignal: true,
        withAgents: opts.withAgents ?? false, agentSettleSeconds: opts.agentSettleSeconds, ...(opts.controllerDir !== undefined ? { controllerDir: opts.controllerDir } : {}),
        ...(opts.json ? {} : { progress: (line: string) => process.stderr.write(`${PROGRAM}: ${line}\n`) }),
      });
      if (opts.json) {
        printJson(result);
        return;
      }
      const { upSummary } = await import('./summary.js');
      process.stdout.write(upSummary(result));
    }));
}

function downCommand(): Command {
  return new Command('down')
    .description('stop the lab in DIR (SIGTERM, then SIGKILL after the grace period); a lab already stopped is fine')
    .addOption(dirOption())
    .option('--grace-ms <ms>', 'wait this long after SIGTERM before SIGKILL', intOption(0, 600_000), 10_000)
    .option('--json', 'print what was stopped as JSON')
    .action(labAction(async (opts: { dir: string; graceMs: number; json?: boolean }) => {
      const { downLab } = await import('./down.js');
      const result = await downLab(opts.dir, { graceMs: opts.graceMs });
      if (opts.json) {
        printJson(result);
        return;
      }
      if (!result.found) process.stdout.write(`no lab in ${result.dir}; nothing to stop\n`);
      else {
        const stopped = result.stopped.filter((s) => s.outcome !== 'not-running');
        process.stdout.write(stopped.length === 0
          ? `the lab in ${result.dir} was not running\n`
          : `stopped the lab in ${result.dir}: ${stopped.map((s) => `${s.part} (pid ${s.pid}${s.outcome === 'killed' ? ', killed' : ''})`).join(', ')}\n`);
      }
    }));
}

function statusCommand(): Command {
  return new Command('status')
    .description('show what runs in the lab: processes, instance URL, each MID\'s unit and ecc_agent status, each agent (exit 3 when not fully running)')
    .addOption(dirOption())
    .option('--json', 'print the status as JSON')
    .action(labAction(async (opts: { dir: string; json?: boolean }) => {
      const { labStatus } = await import('./status.js');
      const report = await labStatus(opts.dir);
      if (opts.json) printJson(report);
      else {
        const { statusSummary } = await import('./summary.js');
        process.stdout.write(statusSummary(report));
      }
      return report.state === 'running' ? 0 : 3;
    }));
}

function midCommand(): Command {
  return new Command('mid')
    .description('systemctl for one lab MID (the agent\'s service.manager: command arrays call this); systemctl exit codes')
    .addArgument(new Argument('<verb>', 'what to do').choices(MID_VERBS))
    .argument('<name>', 'the MID (unit) name, e.g. mid01')
    .addOption(dirOption())
    .option('--json', 'print the runner\'s answer as JSON')
    .action(async (verb: string, name: string, opts: { dir: string; json?: boolean }) => {
      const { readLabState, labPaths } = await import('./state.js');
      let state;
      try {
        state = await readLabState(opts.dir);
      } catch (err) {
        reportError(PROGRAM, err);
        process.exitCode = 1;
        return;
      }
      if (!state) {
        process.stderr.write(`${PROGRAM}: error [LAB_NOT_FOUND] no lab in ${labPaths(opts.dir).dir} (no lab.json)\n`);
        process.exitCode = 1;
        return;
      }
      const { midctl } = await import('./mid/ctl-main.js');
      process.exitCode = await midctl(
        ['--socket', state.runner.socket, ...(opts.json ? ['--json'] : []), verb, name],
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s),
      );
    });
}

export function labProgram(): Command {
  return new Command(PROGRAM)
    .description('midcert lab: a simulated ServiceNow instance, ADCS and MID hosts, running in the background')
    .version(VERSION)
    .addCommand(upCommand())
    .addCommand(downCommand())
    .addCommand(statusCommand())
    .addCommand(midCommand())
    .addHelpText('after', EXIT_HELP);
}

process.exitCode = await runProgram(labProgram(), process.argv);
