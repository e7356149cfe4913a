import type { Logger } from 'pino';
import { isMidcertError } from '../common/errors.js';
import { startMetricsServer } from '../common/metrics-http.js';
import { createControllerMetrics, type AgentObservation } from './metrics/registry.js';
import type { RotationDeps, RotationOptions } from './orchestrator/rotate-agent.js';
import { runRotation } from './orchestrator/run-rotation.js';
import { renewedByJobs, resumeUnfinishedJobs, type ResumeOutcome } from './orchestrator/resume.js';
import { runPool } from './orchestrator/waves.js';
import { describeOwner, type Agent, type Leadership, type Store } from './store/index.js';

/** A renewal is due inside max(30 days, a third of the lifetime) before expiry (certmonger-like). */
export function renewalDue(notBefore: string | undefined, notAfter: string | undefined, now: Date, minDays = 30): boolean {
  if (!notAfter) return true;
  const end = Date.parse(notAfter);
  const lifetime = notBefore ? end - Date.parse(notBefore) : 0;
  const window = Math.max(minDays * 86_400_000, lifetime / 3);
  return end - now.getTime() <= window;
}

/** "daily 02:00-04:00" or "Sat 01:00-05:00" (UTC). No windows = always allowed. */
export function inMaintenanceWindow(windows: string[], now: Date): boolean {
  if (windows.length === 0) return true;
  const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  const minutes = now.getUTCHours() * 60 + now.getUTCMinutes();
  return windows.some((w) => {
    const m = /^(daily|sun|mon|tue|wed|thu|fri|sat)\s+(\d\d):(\d\d)-(\d\d):(\d\d)$/i.exec(w.trim());
    if (!m) return false;
    const day = (m[1] as string).toLowerCase();
    if (day !== 'daily' && days[now.getUTCDay()] !== day) return false;
    const from = Number(m[2]) * 60 + Number(m[3]);
    const to = Number(m[4]) * 60 + Number(m[5]);
    return from <= to ? minutes >= from && minutes < to : minutes >= from || minutes < to;
  });
}

export interface ServeOptions {
  intervalMs: number;
  jitterMs: number;
  windows: string[];
  renewWithinDays: number;
  metricsAddress?: string;
  once?: boolean;
  /**
   * After the signal aborts, how long to let a pass in flight finish (default 2500 ms). A rotation
   * still running then is left where the store recorded it (the store is the controller's journal:
   * every step is saved before the next starts, and the agent finishes or rolls back an install on
   * its own); closing the store ends this process's lease, so the next `midcert serve` (or
   * `midcert rotate`) resumes it at once.
   */
  shutdownGraceMs?: number;
  /** Called once the metrics endpoint listens (tests: the bound port when the address says :0). */
  onMetricsListening?: (port: number) => void;
}

/** What serve() leaves behind when it returns. */
export interface ServeOutcome {
  /** True when a pass was still running after the shutdown grace (its jobs resume at the next start). */
  abandoned: boolean;
}

/** What one pass leaves for the next: when a job another process held would be resumable. */
interface PassOutcome {
  retryInMs?: number;
}

/**
 * The reconcile loop. Several `midcert serve` may share one store: one leads (store leadership,
 * docs/controller-state.md), the others follow — they keep serving /metrics and try to lead every
 * lease / 5 (at most 1 s). The leader resumes abandoned jobs, observes every agent, renews those
 * inside their window (when inside a maintenance window), and repeats with jitter; a job another
 * live process still runs is retried the moment its lease would lapse. Returns within
 * shutdownGraceMs (+ a few ms) of `signal` aborting.
 */
export async function serve(store: Store, baseDeps: RotationDeps, rotation: RotationOptions, options: ServeOptions, log: Logger, signal: AbortSignal): Promise<ServeOutcome> {
  const observed = new Map<string, AgentObservation>();
  const leadership = new LeaderLoop(store.leadership(), Math.max(100, Math.min(1000, store.owner.leaseMs / 5)), log);
  const metrics = createControllerMetrics(store, observed, { isLeader: () => leadership.leading });
  const deps = metrics.instrument(baseDeps);
  const server = options.metricsAddress ? await startMetricsServer(options.metricsAddress, () => metrics.render(), metrics.contentType) : undefined;
  if (server) options.onMetricsListening?.(server.port);
  const wake = new Wake();
  const watchers = options.once ? undefined : new AgentWatchers(deps, signal, (agent, type) => {
    log.info({ agent, event: type }, 'agent reported a change; reconciling now');
    wake.now();
  });
  const graceMs = options.shutdownGraceMs ?? 2500;
  let abandoned = false;
  log.info({ metrics: options.metricsAddress, store: store.backend }, 'midcert serve started');
  try {
    await leadership.start(() => wake.now());
    while (!signal.aborted) {
      if (!leadership.leading) {
        watchers?.sync([]);
        if (options.once) { log.info({ leader: await leadership.describeLeader() }, 'another midcert serve leads; nothing to do'); break; }
        await wake.sleep(leadership.pollMs, signal);
        continue;
      }
      watchers?.sync(await store.agents.list());
      const pass = reconcile(store, deps, rotation, options, observed, log).then(
        (outcome) => outcome,
        (err: unknown): PassOutcome => { log.error({ code: isMidcertError(err) ? err.code : 'INTERNAL', err: String(err) }, 'reconcile failed'); return {}; },
      );
      const finished = await finishesInGrace(pass, signal, graceMs);
      if (!finished) {
        abandoned = true;
        const running = (await store.jobs.list({ states: ['running'] })).map((j) => j.id);
        log.warn({ jobs: running, graceMs }, 'stopping with a pass in flight; every finished step is in the store and the job resumes at the next start');
        break;
      }
      if (options.once) break;
      const next = options.intervalMs + Math.random() * options.jitterMs;
      const outcome = await pass;
      await wake.sleep(outcome.retryInMs === undefined ? next : Math.min(next, outcome.retryInMs), signal);
    }
  } finally {
    leadership.stop();
    await leadership.release();
    await server?.close();
    log.info({ abandoned }, 'midcert serve stopped');
  }
  return { abandoned };
}

/**
 * Leadership kept on its own timer, so a long rotation pass never lets it lapse. A change is
 * logged; gaining it wakes the loop at once (a follower becoming leader after a failover).
 */
class LeaderLoop {
  leading = false;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly leadership: Leadership, readonly pollMs: number, private readonly log: Logger) {}

  async start(onGained: () => void): Promise<void> {
    await this.tick(onGained);
    this.timer = setInterval(() => { void this.tick(onGained); }, this.pollMs);
    this.timer.unref();
  }

  private async tick(onGained: () => void): Promise<void> {
    let now: boolean;
    try {
      now = await this.leadership.tick();
    } catch (err) {
      // The store is unreachable: a leader that cannot renew stops starting work.
      this.log.warn({ code: isMidcertError(err) ? err.code : 'INTERNAL', err: String(err) }, 'cannot reach the store to keep leadership');
      now = false;
    }
    if (now === this.leading) return;
    this.leading = now;
    if (now) {
      this.log.info('this midcert serve leads: it reconciles and renews');
      onGained();
    } else this.log.warn({ leader: await this.describeLeader() }, 'this midcert serve follows: another one leads');
  }

  async describeLeader(): Promise<string | undefined> {
    const current = await this.leadership.current().catch(() => undefined);
    return current ? describeOwner(current.owner) : undefined;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  release(): Promise<void> {
    this.leading = false;
    return this.leadership.release();
  }
}

/** Waits for `pass`; once `signal` aborts, at most `graceMs` more. False when the pass was still running then. */
function finishesInGrace(pass: Promise<unknown>, signal: AbortSignal, graceMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => { timer = setTimeout(() => resolve(false), graceMs); };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    void pass.then(() => { clearTimeout(timer); signal.removeEventListener('abort', onAbort); resolve(true); });
  });
}

/** A sleep that an agent event can cut short (debounced, so a burst causes one pass). */
class Wake {
  private resolve: (() => void) | undefined;
  now(): void {
    const resolve = this.resolve;
    this.resolve = undefined;
    if (resolve) setTimeout(resolve, 500);
  }
  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((done) => {
      // The signal lives as long as serve: every sleep takes its listener off again.
      const finish = (): void => { clearTimeout(timer); signal.removeEventListener('abort', finish); this.resolve = undefined; done(); };
      if (signal.aborted) return done();
      const timer = setTimeout(finish, ms);
      this.resolve = finish;
      signal.addEventListener('abort', finish, { once: true });
    });
  }
}

const WATCHED_EVENTS = new Set(['keystore-changed', 'config-changed']);

/**
 * One WatchEvents stream per agent: a keystore or config.xml changed on a MID host (someone ran
 * manage-certificates by hand, a restore) triggers a reconcile instead of waiting for the next pass.
 * A broken stream is retried after a pause; removed agents' streams are closed.
 */
class AgentWatchers {
  private readonly streams = new Map<string, AbortController>();
  constructor(private readonly deps: RotationDeps, private readonly signal: AbortSignal, private readonly onChange: (agent: string, type: string) => void) {
    signal.addEventListener('abort', () => { for (const c of this.streams.values()) c.abort(); }, { once: true });
  }

  sync(agents: Agent[]): void {
    const names = new Set(agents.map((a) => a.name));
    for (const [name, controller] of this.streams) if (!names.has(name)) { controller.abort(); this.streams.delete(name); }
    for (const agent of agents) if (!this.streams.has(agent.name)) this.watch(agent);
  }

  private watch(agent: Agent): void {
    const controller = new AbortController();
    this.streams.set(agent.name, controller);
    void (async () => {
      while (!controller.signal.aborted && !this.signal.aborted) {
        const port = this.deps.dial(agent);
        try {
          if (!port.events) return;
          for await (const e of port.events(controller.signal)) if (WATCHED_EVENTS.has(e.type)) this.onChange(agent.name, e.type);
        } catch {
          // unreachable agent or a restart: retry below
        } finally {
          port.close();
        }
        await sleep(30_000, controller.signal);
      }
    })();
  }
}

async function reconcile(store: Store, deps: RotationDeps, rotation: RotationOptions, options: ServeOptions, observed: Map<string, AgentObservation>, log: Logger): Promise<PassOutcome> {
  const { resumed, held } = await resumeUnfinishedJobs(deps, rotation);
  if (resumed.length) log.warn({ jobs: resumed }, 'resumed unfinished jobs');
  const retryInMs = retryWhenLeasesLapse(held);
  if (held.length) log.info({ jobs: held.map((h) => ({ job: h.jobId, owner: describeOwner(h.owner) })) }, 'jobs run by another live midcert process: left to it');
  const agents = await store.agents.list();
  const names = new Set(agents.map((a) => a.name));
  for (const name of observed.keys()) if (!names.has(name)) observed.delete(name);
  const due: Agent[] = [];
  const now = new Date();
  await runPool(agents, 16, async (agent) => {
    const port = deps.dial(agent);
    try {
      const s = await port.status();
      const at = new Date().toISOString();
      observed.set(agent.name, { reachable: true, observedAt: at, lastSeenAt: at, leafSha256: s.leafSha256, leafIssuer: s.leafIssuer, notBefore: s.notBefore, notAfter: s.notAfter });
      if (renewalDue(s.notBefore, s.notAfter, now, options.renewWithinDays)) due.push(agent);
      else await reconcileInventory(store, deps, agent, s.leafSha256, log);
    } catch {
      const before = observed.get(agent.name);
      observed.set(agent.name, { ...before, reachable: false, observedAt: new Date().toISOString() });
    } finally {
      port.close();
    }
  });
  if (due.length === 0) return { retryInMs };
  if (!inMaintenanceWindow(options.windows, now)) {
    log.info({ due: due.map((a) => a.name) }, 'renewals due; waiting for a maintenance window');
    return { retryInMs };
  }
  // A MID another live process is rotating (the CLI, Ansible) is left to it, not a failed pass.
  const exclude = await renewedByJobs(store, resumed);
  for (const [name, holders] of await store.jobs.holders(due.map((a) => a.name))) {
    const other = holders.find((h) => h.owner?.live && h.owner.id !== store.owner.id);
    if (other) exclude.set(name, `busy (job ${other.jobId}, ${describeOwner(other.owner)})`);
  }
  log.info({ due: due.map((a) => a.name).filter((n) => !exclude.has(n)) }, 'renewing');
  const report = await runRotation(deps, due, { ...rotation, force: true }, exclude);
  log.info({ jobId: report.jobId, ...report.summary, stoppedEarly: report.stoppedEarly }, 'renewal job finished');
  return { retryInMs };
}

/** Milliseconds until the first of these jobs' owners' leases lapses (+ a margin), or undefined. */
function retryWhenLeasesLapse(held: ResumeOutcome['held']): number | undefined {
  const lapses = held.map((h) => (h.owner ? Date.parse(h.owner.leaseExpiresAt) - Date.now() : 0)).filter((ms) => Number.isFinite(ms));
  return lapses.length ? Math.max(100, Math.min(...lapses) + 250) : undefined;
}

/**
 * `instance.inventory`: the leaf the MID holds now, as its cmdb_ci_certificate record (idempotent:
 * nothing is written when the record already says so), its earlier leaves retired. Only leaves the
 * store knows (midcert issued them: it has the PEM). A failure is a warning, never a failed pass.
 */
async function reconcileInventory(store: Store, deps: RotationDeps, agent: Agent, leafSha256: string, log: Logger): Promise<void> {
  const upsert = deps.instance?.upsertInventory;
  const current = leafSha256 ? await store.certificates.get(leafSha256) : undefined;
  if (!upsert || !current || current.agentName !== agent.name) return;
  const earlier = (await store.certificates.history(agent.name, { limit: 5 })).map((c) => c.sha256).filter((sha) => sha !== current.sha256);
  try {
    const outcome = await upsert.call(deps.instance, agent.midName ?? agent.name, current.pem, earlier);
    if (outcome.action !== 'unchanged' || outcome.dropped.length) log.info({ agent: agent.name, inventory: outcome.action, dropped: outcome.dropped, relation: outcome.relationNote || undefined }, 'cmdb_ci_certificate reconciled');
  } catch (err) {
    log.warn({ agent: agent.name, code: isMidcertError(err) ? err.code : 'INTERNAL', err: String(err) }, 'cmdb_ci_certificate not updated');
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const finish = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', finish); resolve(); };
    const timer = setTimeout(finish, ms);
    signal?.addEventListener('abort', finish, { once: true });
  });
}
