import { Command } from 'commander';
import { printJson } from '../../common/cli.js';
import { VERSION } from '../../common/version.js';
// pino, the serve loop and the orchestrator load inside the actions, so --help answers at once.
import { openContext, rotationDeps, rotationOptions, type GlobalOptions } from './context.js';
import { EXIT } from '../../common/cli.js';

export function serveCommand(globals: () => GlobalOptions): Command {
  return new Command('serve')
    .description('the controller daemon: resume interrupted jobs, watch every agent, renew inside the window (max(30 days, a third of the lifetime) before expiry) during maintenance windows, expose Prometheus metrics')
    .option('--once', 'one reconcile pass, then exit (nothing to do when another serve leads)')
    .option('--metrics-address <host:port>', 'Prometheus /metrics on this address (default serve.metricsAddress)')
    .addHelpText('after', `
Several serve processes may share one store (store.url: PostgreSQL): one leads and reconciles,
the others follow, serve /metrics and take over within serve.leaseSeconds when the leader goes
away (docs/controller-state.md). midcert store status shows who leads.`)
    .action(async (o: { once?: boolean; metricsAddress?: string }) => {
      const [{ default: pino }, { serve }] = await Promise.all([import('pino'), import('../serve.js')]);
      const { MidcertError } = await import('../../common/errors.js');
      if (o.metricsAddress !== undefined && !/^[^\s]+:\d{1,5}$/.test(o.metricsAddress)) throw new MidcertError('USAGE', '--metrics-address is host:port, e.g. 127.0.0.1:9464');
      const ctx = await openContext(globals(), { actor: 'daemon' });
      const log = pino({ level: ctx.cfg.log.level, base: { service: 'midcert', version: VERSION }, timestamp: pino.stdTimeFunctions.isoTime, redact: ['password', '*.password', 'token', '*.token'] });
      const abort = new AbortController();
      const stop = (signal: string): void => { log.info({ signal }, 'shutting down'); abort.abort(); };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      try {
        const deps = await rotationDeps(ctx, globals(), (e) => log.info({ agent: e.agent, step: e.step, state: e.state, message: e.message }, 'rotation'));
        const s = ctx.cfg.serve;
        await serve(ctx.store, deps, rotationOptions(ctx, {}), {
          intervalMs: s.intervalSeconds * 1000, jitterMs: s.jitterSeconds * 1000, windows: s.maintenanceWindows,
          renewWithinDays: ctx.cfg.rotation.renewWithinDays, metricsAddress: o.metricsAddress ?? s.metricsAddress, once: o.once,
        }, log, abort.signal);
      } finally {
        await ctx.close();
        // serve() returned within its shutdown grace; a rotation it left in flight (saved in the
        // store, resumed at the next start) must not keep the process alive past it.
        if (abort.signal.aborted) setTimeout(() => process.exit(), 500).unref();
      }
    });
}

export function convertCommand(globals: () => GlobalOptions): Command {
  return mutualAuthCommand(globals, 'convert', 'convert a basic-auth MID to mutual TLS: key and CSR on the MID, CA, publish the leaf, import + manage-certificates -m, restart, verify Up');
}

export function bootstrapCommand(globals: () => GlobalOptions): Command {
  return mutualAuthCommand(globals, 'bootstrap', 'bring a new MID up on mutual TLS from the start (installed with -MUTUAL_AUTH Y): key and CSR on the MID, CA, publish, import + -m, verify Up, then add capabilities (a MID created under mutual auth gets none)');
}

const collectCaps = (v: string, prev: string[]): string[] => [...prev, v];

function mutualAuthCommand(globals: () => GlobalOptions, kind: 'convert' | 'bootstrap', description: string): Command {
  const command = new Command(kind)
    .description(description)
    .requiredOption('--agent <name>', `the agent of the MID to ${kind}`)
    .option('--json', 'print {"ok","jobId","results"}');
  if (kind === 'bootstrap') command.option('--capability <name>', 'ecc_agent capability to add (repeatable; default ALL)', collectCaps, []);
  return command.action(async (o: { agent: string; json?: boolean; capability?: string[] }) => {
      const { rotateAgent, settleJob } = await import('../orchestrator/rotate-agent.js');
      const ctx = await openContext(globals());
      try {
        const agent = await ctx.store.agents.require(o.agent);
        const options = rotationOptions(ctx, {});
        const deps = await rotationDeps(ctx, globals(), (e) => { if (!o.json) process.stderr.write(`  ${e.agent}: ${e.step} ${e.state}${e.message ? ` ${e.message}` : ''}\n`); });
        const job = await ctx.store.jobs.create({ kind, agents: [agent.name] });
        await ctx.store.jobs.transition(job.id, 'running');
        const record = await rotateAgent(deps, job.id, agent, options, { mode: 'enable-mutual' });
        let ok = record.state === 'verified';
        if (ok && kind === 'bootstrap' && ctx.instance) {
          const capabilities = o.capability && o.capability.length > 0 ? o.capability : ['ALL'];
          try {
            await ctx.instance.addCapabilities(agent.midName ?? agent.name, capabilities);
          } catch (err) {
            ok = false;
            record.failedStep = 'capabilities';
            record.errorCode = (err as { code?: string }).code ?? 'INTERNAL';
            record.errorMessage = (err as Error).message;
          }
        }
        const result = { name: agent.name, state: ok ? 'succeeded' as const : 'failed' as const, previousSha256: record.previousSha256 ?? '', newSha256: record.newSha256 ?? '', notAfter: '', failedStep: ok ? '' : record.failedStep ?? '', error: ok ? null : { code: record.errorCode ?? 'FAILED', message: record.errorMessage ?? '' } };
        await settleJob(ctx.store, job.id, [result]);
        if (o.json) printJson({ ok, jobId: job.id, results: [result] });
        else process.stdout.write(ok ? `${agent.name}: on mutual TLS and Up${kind === 'bootstrap' ? ', capabilities added' : ''}\n` : `${agent.name}: failed at ${result.failedStep}: [${result.error?.code}] ${result.error?.message}\n`);
        if (!ok) process.exitCode = EXIT.findings;
      } finally {
        await ctx.close();
      }
    });
}
