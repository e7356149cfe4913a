import { MidcertError } from '../../common/errors.js';
import { Command } from 'commander';
import { EXIT, printJson, readInput, usageError, type Style } from '../../common/cli.js';
import { LIMITS } from '../../common/limits.js';
import type { AgentFleetStatus } from '../fleet-status.js';
import type { RotationReport, RotationResult } from '../orchestrator/rotate-agent.js';
import type { RotationEvent } from '../orchestrator/rotate-one.js';
import type { FleetIdentity } from '../fleet-ca.js';
import type { Agent, JobAgentState, JobKind, JobQuery, JobState, Store } from '../store/index.js';
// The orchestrator, CA adapters and gRPC load inside each action (await import), so --help and
// --version answer at once.
import { openContext, rotationDeps, rotationOptions, type Context, type GlobalOptions } from './context.js';
import { createProgress, renderTable, type Progress } from './output.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface Selection {
  all?: boolean;
  agent: string[];
  tag: string[];
}

/** --all | --agent N... | --tag T; status and preflight default to every agent. */
async function selectAgents(store: Store, s: Selection, requireChoice: boolean): Promise<Agent[]> {
  const chosen = [s.all, s.agent.length > 0, s.tag.length > 0].filter(Boolean).length;
  if (requireChoice && chosen === 0) throw usageError('choose MIDs with --all, --agent NAME (repeatable) or --tag TAG');
  if (chosen > 1) throw usageError('use only one of --all, --agent, --tag');
  if (s.agent.length > 0) return store.agents.list({ names: s.agent });
  if (s.tag.length > 0) return store.agents.list({ tags: s.tag });
  return store.agents.list();
}

export function statusCommand(globals: () => GlobalOptions): Command {
  return new Command('status')
    .description('fleet table: MID, reachability, instance status, certificate expiry, days left, last rotation')
    .option('--agent <name>', 'only these agents (repeatable)', collect, [])
    .option('--tag <tag>', 'only agents with this tag', collect, [])
    .option('--sort <field>', 'name | days | expiry | status', 'name')
    .option('--json', 'print {"ok","instance":{"url","caChain"},"agents":[…]} (docs/controller-cli.md)')
    .action(async (o: Selection & { sort: string; json?: boolean }) => {
      if (!['name', 'days', 'expiry', 'status'].includes(o.sort)) throw usageError('--sort must be name, days, expiry or status');
      const [{ fleetStatus }, { fleetDialer }] = await Promise.all([import('../fleet-status.js'), import('../orchestrator/wiring.js')]);
      const ctx = await openContext(globals());
      try {
        const agents = await selectAgents(ctx.store, o, false);
        const rows = sortRows(await fleetStatus(ctx.store, agents, await fleetDialer(ctx.dataDir, globals()), ctx.instance), o.sort);
        const instance = ctx.instance ? { url: ctx.cfg.instance?.url ?? '', caChain: await activeChain(ctx) } : null;
        if (o.json) printJson({ ok: true, instance, agents: rows });
        else process.stdout.write(statusTable(rows));
      } finally {
        await ctx.close();
      }
    });
}

async function activeChain(ctx: Context): Promise<{ sha256: string; subject: string; notAfter: string } | null> {
  const chain = (await ctx.instance?.activeCaChain().catch(() => []))?.find((c) => c.published);
  return chain ? { sha256: chain.sha256, subject: chain.subject, notAfter: chain.expires } : null;
}

function sortRows(rows: AgentFleetStatus[], by: string): AgentFleetStatus[] {
  const days = (r: AgentFleetStatus): number => r.certificate?.daysLeft ?? -Infinity;
  if (by === 'days' || by === 'expiry') return [...rows].sort((a, b) => days(a) - days(b));
  if (by === 'status') return [...rows].sort((a, b) => a.instanceStatus.localeCompare(b.instanceStatus));
  return rows;
}

function statusTable(rows: AgentFleetStatus[]): string {
  return renderTable(['MID', 'agent', 'reachable', 'instance', 'expires', 'days left', 'last rotation'], rows.map((r) => [
    r.midName, r.name, r.reachable ? 'yes' : `no (${r.error?.code ?? '?'})`, r.instanceStatus,
    r.certificate?.notAfter.slice(0, 10) ?? '—', r.certificate ? String(r.certificate.daysLeft) : '—',
    r.lastRotation ? `${r.lastRotation.state}${r.lastRotation.errorCode ? ` [${r.lastRotation.errorCode}]` : ''} ${r.lastRotation.finishedAt?.slice(0, 16) ?? ''}` : '—',
  ]), { style: (col, text) => (col === 2 ? (text === 'yes' ? 'green' : 'red') : col === 5 && /^-?\d+$/.test(text) ? (Number(text) <= 7 ? 'red' : Number(text) <= 30 ? 'yellow' : undefined) : undefined) });
}

export function preflightCommand(globals: () => GlobalOptions): Command {
  return new Command('preflight')
    .description('check the instance (ADCv2, mTLS support, plugin, SNI property, CA chain, MID users), the CA\'s authentication (adcs) and every agent\'s host before rotating')
    .option('--agent <name>', 'only these agents (repeatable)', collect, [])
    .option('--tag <tag>', 'only agents with this tag', collect, [])
    .option('--json', 'print {"ok","instance":[Check],"ca":[Check],"agents":[{"name","ok","checks":[Check]}]}')
    .addHelpText('after', '\nExit status: 0 when no error-severity check failed, 1 otherwise.')
    .action(async (o: Selection & { json?: boolean }) => {
      const [{ probeCa }, { controllerIdentity }, { runPool }] = await Promise.all([import('../ca/index.js'), import('../fleet-ca.js'), import('../orchestrator/waves.js')]);
      const ctx = await openContext(globals());
      try {
        const agents = await selectAgents(ctx.store, o, false);
        const instance = ctx.instance ? await ctx.instance.preflightInstance(agents.map((a) => a.midName ?? a.name)) : [];
        // The same check as `midcert ca probe` (adcs only): can the controller authenticate to its CA?
        const ca: Check[] = [];
        if (ctx.cfg.ca.type === 'adcs') {
          const p = await probeCa(ctx.cfg.ca);
          ca.push({ name: 'ca-auth', ok: p.authenticated, severity: 'error', code: p.code, message: `${p.auth || 'no ca.auth'} → ${p.url}: ${p.message}` });
        }
        const id = globals().insecureDev ? undefined : await controllerIdentity(ctx.dataDir);
        const hosts: { name: string; ok: boolean; checks: Check[] }[] = [];
        const progress = createProgress(Boolean(process.stderr.isTTY) && agents.length > 1);
        progress.start(agents.length, 'checking agents');
        await runPool(agents, 16, async (agent) => {
          hosts.push({ name: agent.name, ...(await agentPreflight(agent, id)) });
          progress.tick(agent.name, 'checked');
        }).finally(() => progress.stop());
        hosts.sort((a, b) => a.name.localeCompare(b.name));
        const failed = (c: { ok: boolean; severity: string }): boolean => !c.ok && c.severity === 'error';
        const ok = !instance.some(failed) && !ca.some(failed) && hosts.every((h) => h.ok);
        if (o.json) printJson({ ok, instance, ca, agents: hosts });
        else {
          const rows = [...instance.map((c) => ['instance', c.name, c.ok ? 'ok' : c.severity, c.code, c.message]), ...ca.map((c) => ['ca', c.name, c.ok ? 'ok' : c.severity, c.code, c.message]), ...hosts.flatMap((h) => h.checks.map((c) => [h.name, c.name, c.ok ? 'ok' : c.severity, c.code, c.message]))];
          process.stdout.write(renderTable(['where', 'check', 'result', 'code', 'message'], rows, { style: (col, text) => (col === 2 ? resultStyle(text) : undefined) }));
        }
        if (!ok) process.exitCode = EXIT.findings;
      } finally {
        await ctx.close();
      }
    });
}

interface Check { name: string; ok: boolean; severity: string; code: string; message: string }

async function agentPreflight(agent: Agent, id: FleetIdentity | undefined): Promise<{ ok: boolean; checks: Check[] }> {
  const [{ connectAgent }, { agentClientOptions }] = await Promise.all([import('../../proto/agent-client.js'), import('../orchestrator/wiring.js')]);
  const client = connectAgent(agent.address, agentClientOptions(agent, id));
  try {
    const report = await client.runPreflight({}, { deadlineMs: 60_000 });
    return { ok: report.ok, checks: report.checks.map((c) => ({ name: c.name, ok: c.ok, severity: c.severity, code: c.code, message: c.message })) };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { ok: false, checks: [{ name: 'agent-reachable', ok: false, severity: 'error', code: e.code ?? 'UNAVAILABLE', message: e.message ?? String(err) }] };
  } finally {
    client.close();
  }
}

function progressFor(o: { json?: boolean }): { progress: Progress; onEvent: (e: RotationEvent) => void } {
  const progress = createProgress(true);
  const onEvent = (e: RotationEvent): void => {
    if (e.state === 'done' && (e.step === 'verify-up' || e.step === 'done')) progress.tick(e.agent, 'Up with the new certificate');
    else if (e.state === 'failed') progress.tick(e.agent, `failed at ${e.step}: ${e.message ?? ''}`);
    else if (e.state === 'info' && e.agent === '*') progress.log(`${e.step}: ${e.message ?? ''}`);
    else if (!o.json && process.env.MIDCERT_VERBOSE === '1') progress.log(`${e.agent}: ${e.step} ${e.state}${e.message ? ` ${e.message}` : ''}`);
  };
  return { progress, onEvent };
}

function parseWithin(text: string): number {
  const m = /^(\d+)(d|h)?$/.exec(text.trim());
  if (!m) throw usageError(`--when-expiring-within takes 30d, 12h or a number of days, not "${text}"`);
  return m[2] === 'h' ? Number(m[1]) / 24 : Number(m[1]);
}

function intOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,6}$/.test(text)) throw usageError(`${name} must be a whole number, not "${text}"`);
  return Number(text);
}

/** The config's allowed key types plus `--allow-key-type` values, each checked for shape. */
function allowKeyTypesOption(configured: readonly string[], given: string[] | undefined): string[] {
  for (const t of given ?? []) {
    if (!/^(rsa-\d{4}|ec-p\d{3})$/i.test(t)) throw new MidcertError('USAGE', `--allow-key-type "${t.slice(0, 40)}": use a key type such as rsa-3072, rsa-4096, ec-p256 or ec-p384`);
  }
  return [...new Set([...configured, ...(given ?? [])].map((t) => t.toLowerCase()))];
}

export function rotateCommand(globals: () => GlobalOptions): Command {
  return new Command('rotate')
    .description('renew MID certificates: new key and CSR on each MID, signed by the CA, published on the instance, installed and verified Up — in waves')
    .option('--all', 'every registered agent')
    .option('--agent <name>', 'these agents (repeatable)', collect, [])
    .option('--tag <tag>', 'agents with this tag', collect, [])
    .option('--when-expiring-within <span>', 'only MIDs whose certificate expires within this (30d, 12h); default rotation.renewWithinDays')
    .option('--force', 'rotate even if the certificate is not expiring')
    .option('--canary <n>', 'MIDs in the first wave (0 = none); a failed canary stops the rollout')
    .option('--batch <n>', 'MIDs per later wave')
    .option('--max-failures <n>', 'stop once more MIDs than this have failed')
    .option('--concurrency <n>', 'MIDs rotated at once inside a wave')
    .option('--dry-run', 'show the plan (waves, skipped MIDs) and change nothing')
    .option('--allow-key-type <type>', 'let agents install this leaf key type besides RSA-2048 (rsa-3072, ec-p256…; repeatable); vendor material shows RSA-2048 only', collect, [])
    .option('--json', 'print the report (docs/controller-cli.md)')
    .addHelpText('after', `
Each MID: PrepareRenewal on the agent (key stays on the host) → CA → instance (CA chain, leaf for
the MID user, wait published) → InstallCertificate (backup, import, verify, restart, health check,
rollback on failure) → instance reports the MID Up. Every step is saved: a controller killed
mid-way resumes the job on its next run and never rotates a MID twice: an install that was in
flight is settled by asking the agent (GetRenewal), and the MIDs the resumed job renewed are
skipped by the new job, with or without --force (reason "already-renewed").
Exit status: 0 all selected MIDs rotated; 1 some failed or the rollout stopped.`)
    .action(async (o: Selection & Record<string, string | boolean | undefined> & { json?: boolean }) => {
      const [{ renewedByJobs, resumeUnfinishedJobs }, { runRotation }] = await Promise.all([import('../orchestrator/resume.js'), import('../orchestrator/run-rotation.js')]);
      const ctx = await openContext(globals());
      try {
        const agents = await selectAgents(ctx.store, o, true);
        const options = rotationOptions(ctx, {
          force: Boolean(o.force), dryRun: Boolean(o.dryRun),
          allowKeyTypes: allowKeyTypesOption(ctx.cfg.rotation.allowKeyTypes, o.allowKeyType as unknown as string[]),
          expiringWithinDays: o.whenExpiringWithin ? parseWithin(String(o.whenExpiringWithin)) : undefined,
          canary: intOption('--canary', o.canary as string | undefined), batch: intOption('--batch', o.batch as string | undefined),
          maxFailures: intOption('--max-failures', o.maxFailures as string | undefined), concurrency: intOption('--concurrency', o.concurrency as string | undefined),
        });
        const { progress, onEvent } = progressFor(o);
        const deps = await rotationDeps(ctx, globals(), onEvent, (i, names) => progress.log(`wave ${i + 1}: ${names.join(', ')}`));
        // A dry run resumes nothing, but plans as the real run would: without what those jobs renewed.
        const renewed = options.dryRun
          ? await renewedByJobs(ctx.store, (await ctx.store.jobs.unfinished()).map((j) => j.id), 'unfinished')
          : await renewedByJobs(ctx.store, (await resumeUnfinishedJobs(deps, options)).resumed);
        progress.start(agents.length, options.dryRun ? 'planning' : 'rotating');
        let report: RotationReport;
        try {
          report = await runRotation(deps, agents, options, renewed);
        } finally {
          progress.stop();
        }
        if (o.json) printJson(report);
        else process.stdout.write(rotationText(report));
        if (!report.ok) process.exitCode = EXIT.findings;
      } finally {
        await ctx.close();
      }
    });
}

function rotationText(r: RotationReport): string {
  const head = r.dryRun
    ? `plan (dry run): ${r.plan.waves.map((w, i) => `wave ${i + 1}: ${w.join(', ')}`).join('; ') || 'nothing to rotate'}\n`
    : `job ${r.jobId ?? '—'}: ${r.summary.succeeded} rotated, ${r.summary.failed} failed, ${r.summary.skipped} skipped${r.stoppedEarly ? ` — stopped: ${r.reason}` : ''}\n`;
  return head + resultsTable(r.results);
}

function resultsTable(results: RotationResult[]): string {
  return renderTable(['MID', 'result', 'new expiry', 'detail'], results.map((x) => [
    x.name, x.state, x.notAfter ? x.notAfter.slice(0, 10) : '—',
    x.error ? `[${x.error.code}] ${x.failedStep ? `${x.failedStep}: ` : ''}${x.error.message}` : x.reason ?? (x.newSha256 ? `sha256 ${x.newSha256.slice(0, 16)}…` : ''),
  ]), { style: (col, text) => (col === 1 ? resultStyle(text) : undefined) });
}

/** Colour of a result word in a table (only when colour is on: a TTY without NO_COLOR). */
function resultStyle(text: string): Style | undefined {
  if (text === 'ok' || text === 'succeeded' || text === 'verified') return 'green';
  if (text === 'error' || text === 'failed') return 'red';
  if (text === 'warning' || text === 'skipped') return 'yellow';
  return undefined;
}

export function rotateCaCommand(globals: () => GlobalOptions): Command {
  return new Command('rotate-ca')
    .description('move every MID to a new CA chain: stage a leaf from the new CA on every MID, publish the new chain on the instance, install all staged leaves in parallel, verify all Up')
    .requiredOption('--chain <file>', 'the new CA chain (intermediates + root, PEM); controller.yaml `ca` must already issue under it')
    .option('--agent <name>', 'only these agents (default: all)', collect, [])
    .option('--tag <tag>', 'only agents with this tag', collect, [])
    .option('--concurrency <n>', 'MIDs staged at once')
    .option('--json', 'print {"ok","jobId","swappedAt","results","outageSeconds"}')
    .addHelpText('after', `
The instance holds one active chain, so all MIDs move together. The chain is swapped only after
every MID has a staged leaf; if any MID fails to stage, nothing changes. Rollback plan: publish the
old chain again (midcert rotate-ca --chain old-chain.pem with the old CA configured), or, per MID,
midcert-agent rollback on the host restores the keystore backup taken before the install.`)
    .action(async (o: Selection & { chain: string; concurrency?: string; json?: boolean }) => {
      const [{ resumeUnfinishedJobs }, { runCaRotation }] = await Promise.all([import('../orchestrator/resume.js'), import('../orchestrator/run-ca-rotation.js')]);
      const ctx = await openContext(globals());
      try {
        const chainPem = (await readInput(o.chain, LIMITS.pemBytes, 'chain file')).toString('latin1');
        const agents = await selectAgents(ctx.store, { ...o, all: o.agent.length === 0 && o.tag.length === 0 }, false);
        const options = rotationOptions(ctx, { force: true, concurrency: intOption('--concurrency', o.concurrency) });
        const { progress, onEvent } = progressFor(o);
        const deps = await rotationDeps(ctx, globals(), onEvent);
        await resumeUnfinishedJobs(deps, options);
        progress.start(agents.length, 'rotating the CA chain');
        const report = await runCaRotation(deps, agents, chainPem, options).finally(() => progress.stop());
        if (o.json) printJson(report);
        else process.stdout.write(`job ${report.jobId}: ${report.swappedAt ? `chain swapped at ${report.swappedAt}` : report.reason}\n${resultsTable(report.results)}${Object.entries(report.outageSeconds).map(([n, s]) => `  ${n}: outage ${s.toFixed(1)} s\n`).join('')}`);
        if (!report.ok) process.exitCode = EXIT.findings;
      } finally {
        await ctx.close();
      }
    });
}

export function historyCommand(globals: () => GlobalOptions): Command {
  return new Command('history')
    .description('past jobs (rotations, CA rotations, conversions) with each MID\'s outcome')
    .option('--agent <name>', 'only jobs this agent took part in')
    .option('--limit <n>', 'how many jobs', '20')
    .option('--json', 'print {"ok","jobs":[…]}')
    .action(async (o: { agent?: string; limit: string; json?: boolean }) => {
      const ctx = await openContext(globals(), { instance: false });
      try {
        const jobs = await jobHistory(ctx.store, { limit: intOption('--limit', o.limit), agent: o.agent });
        if (o.json) printJson({ ok: true, jobs });
        else process.stdout.write(renderTable(['job', 'kind', 'state', 'created', 'finished', 'MIDs'], jobs.map((j) => [j.id, j.kind, j.state, j.createdAt.slice(0, 19), j.finishedAt?.slice(0, 19) ?? '—', j.agents.map((a) => `${a.name}:${a.state}`).join(' ')])));
      } finally {
        await ctx.close();
      }
    });
}

interface HistoryRow {
  id: number; kind: JobKind; state: JobState; createdAt: string; finishedAt: string | null;
  agents: Array<{ name: string; state: JobAgentState; errorCode: string | null }>;
}

/** The jobs newest first, each with its MIDs' outcomes; one query at a time (--limit may ask for thousands). */
async function jobHistory(store: Store, query: JobQuery): Promise<HistoryRow[]> {
  const rows: HistoryRow[] = [];
  for (const j of await store.jobs.list(query)) {
    const agents = (await store.jobAgents.list(j.id)).map((a) => ({ name: a.agentName, state: a.state, errorCode: a.errorCode }));
    rows.push({ id: j.id, kind: j.kind, state: j.state, createdAt: j.createdAt, finishedAt: j.finishedAt, agents });
  }
  return rows;
}
