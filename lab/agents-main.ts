import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import { VERSION } from '../common/version.js';
import { loadAgentConfig } from '../agent/config.js';
import { REDACT_PATHS, startAgentDaemon, type RunningDaemon } from '../agent/daemon.js';

/**
 * The lab's agents process: ONE midcert-agent daemon per simulated MID, all in this one Node
 * process (K separate agent processes at ~80 MB each would not fit 200 MIDs on a lab machine):
 *   node --import tsx lab/agents-main.ts --list DIR/agents/agents.json --log DIR/logs/agents.log
 * The list is a JSON array of agent.yaml paths (each a complete, real agent configuration with
 * its own stateDir, Unix socket and mTLS listen address). Every daemon logs JSON (pino) to the
 * one --log file, each line tagged with `"agent":"<name>"` (the name of the config's folder).
 * Prints "midcert-lab-agents: serving N agents (pid P, rss M MiB)" on stdout once every daemon
 * serves; on SIGTERM or SIGINT closes them all and exits 0. If one daemon cannot start, closes
 * the others and exits 1 with a line naming it.
 */

const PROGRAM = 'midcert-lab-agents';
const USAGE = `usage: agents-main.ts --list AGENTS.json --log FILE [--parallel N]`;
/** Daemons started at once (each reads its keystore and binds two listeners). */
const DEFAULT_PARALLEL = 8;
/** On SIGTERM: how long closing every daemon may take before the process exits anyway. */
const CLOSE_TIMEOUT_MS = 8000;

interface Hosted {
  name: string;
  daemon: RunningDaemon;
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, options: { list: { type: 'string' }, log: { type: 'string' }, parallel: { type: 'string' } } }));
  } catch (err) {
    process.stderr.write(`${PROGRAM}: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!values.list || !values.log) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const parallel = values.parallel === undefined ? DEFAULT_PARALLEL : Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) {
    process.stderr.write(`${PROGRAM}: --parallel must be a positive integer\n`);
    return 2;
  }
  const configs = await readList(values.list);
  const root = pino(
    { base: { service: 'midcert-agent', version: VERSION }, redact: { paths: REDACT_PATHS, censor: '****' }, timestamp: pino.stdTimeFunctions.isoTime, level: 'trace' },
    pino.destination({ dest: values.log, sync: true, mkdir: true }),
  );

  const hosted: Hosted[] = [];
  let closing = false;
  const closeAll = async (): Promise<void> => {
    const all = hosted.splice(0);
    const results = await Promise.allSettled(all.map((h) => h.daemon.close()));
    results.forEach((r, i) => {
      if (r.status === 'rejected') root.error({ agent: all[i]?.name, err: String(r.reason) }, 'agent did not close cleanly');
    });
  };
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    root.info({ signal, agents: hosted.length }, 'stopping the lab agents');
    const timer = setTimeout(() => process.exit(1), CLOSE_TIMEOUT_MS);
    timer.unref();
    closeAll().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  let failure: { name: string; config: string; error: unknown } | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < configs.length && !failure && !closing) {
      const config = configs[next++] as string;
      const name = basename(dirname(config));
      try {
        const cfg = await loadAgentConfig(config);
        const logger: Logger = root.child({ agent: name }, { level: cfg.log.level });
        const daemon = await startAgentDaemon(cfg, { logger });
        if (closing) await daemon.close();
        else hosted.push({ name, daemon });
      } catch (error) {
        failure ??= { name, config, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, configs.length)) }, worker));
  if (failure) {
    const message = failure.error instanceof Error ? failure.error.message.split('\n')[0] : String(failure.error);
    root.error({ agent: failure.name, config: failure.config, err: message }, 'agent did not start');
    await closeAll();
    process.stderr.write(`${PROGRAM}: agent ${failure.name} (${failure.config}) did not start: ${message}\n`);
    return 1;
  }
  if (closing) return -1; // a signal arrived while starting: shutdown() exits
  const rssMiB = Math.round(process.memoryUsage.rss() / 1048576);
  root.info({ agents: hosted.length, rssMiB }, 'every lab agent serves');
  process.stdout.write(`${PROGRAM}: serving ${hosted.length} agents (pid ${process.pid}, rss ${rssMiB} MiB)\n`);
  return -1; // keep running
}

async function readList(file: string): Promise<string[]> {
  const list: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (!Array.isArray(list) || !list.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new Error(`${file} is not a JSON array of agent config paths`);
  }
  const base = dirname(resolve(file));
  return list.map((p: string) => resolve(base, p));
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exit(code); }, (err: Error) => {
  process.stderr.write(`${PROGRAM}: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
