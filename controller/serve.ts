import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { isMidcertError } from '../common/errors.js';
import type { RotationDeps, RotationOptions } from './orchestrator/run-rotation.js';
import { runRotation } from './orchestrator/run-rotation.js';
import { renewedByJobs, resumeUnfinishedJobs } from './orchestrator/resume.js';
import { runPool } from './orchestrator/waves.js';
import type { Agent, Store } from './store/index.js';

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

interface Observation {
  daysLeft: number | null;
  reachable: boolean;
  lastResult: 'ok' | 'failed' | 'none';
}

export interface ServeOptions {
  intervalMs: number;
  jitterMs: number;
  windows: string[];
  renewWithinDays: number;
  metricsAddress?: string;
  once?: boolean;
}

/**
 * The reconcile loop: resume unfinished jobs, observe every agent, renew those inside their
 * window (when inside a maintenance window), expose metrics, repeat with jitter.
 */
export async function serve(store: Store, deps: RotationDeps, rotation: RotationOptions, options: ServeOptions, log: Logger, signal: AbortSignal): Promise<void> {
  const observed = new Map<string, Observation>();
  const metrics = options.metricsAddress ? await startMetrics(options.metricsAddress, observed) : undefined;
  const wake = new Wake();
  const watchers = options.once ? undefined : new AgentWatchers(deps, signal, (agent, type) => {
    log.info({ agent, event: type }, 'agent reported a change; reconciling now');
    wake.now();
  });
  log.info({ metrics: options.metricsAddress }, 'midcert serve started');
  try {
    while (!signal.aborted) {
      watchers?.sync(store.agents.list());
      await reconcile(store, deps, rotation, options, observed, log).catch((err: unknown) => log.error({ code: isMidcertError(err) ? err.code : 'INTERNAL', err: String(err) }, 'reconcile failed'));
      if (options.once) break;
      await wake.sleep(options.intervalMs + Math.random() * options.jitterMs, signal);
    }
  } finally {
    metrics?.close();
    log.info('midcert serve stopped');
  }
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
      const finish = (): void => { clearTimeout(timer); this.resolve = undefined; done(); };
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

async function reconcile(store: Store, deps: RotationDeps, rotation: RotationOptions, options: ServeOptions, observed: Map<string, Observation>, log: Logger): Promise<void> {
  const resumed = await resumeUnfinishedJobs(deps, rotation);
  if (resumed.length) log.warn({ jobs: resumed }, 'resumed unfinished jobs');
  const agents = store.agents.list();
  const due: Agent[] = [];
  const now = new Date();
  await runPool(agents, 16, async (agent) => {
    const port = deps.dial(agent);
    try {
      const s = await port.status();
      const daysLeft = s.notAfter ? Math.floor((Date.parse(s.notAfter) - now.getTime()) / 86_400_000) : null;
      observed.set(agent.name, { daysLeft, reachable: true, lastResult: lastResult(store, agent.name) });
      if (renewalDue(s.notBefore, s.notAfter, now, options.renewWithinDays)) due.push(agent);
    } catch {
      observed.set(agent.name, { daysLeft: observed.get(agent.name)?.daysLeft ?? null, reachable: false, lastResult: lastResult(store, agent.name) });
    } finally {
      port.close();
    }
  });
  if (due.length === 0) return;
  if (!inMaintenanceWindow(options.windows, now)) {
    log.info({ due: due.map((a) => a.name) }, 'renewals due; waiting for a maintenance window');
    return;
  }
  log.info({ due: due.map((a) => a.name) }, 'renewing');
  const report = await runRotation(deps, due, { ...rotation, force: true }, renewedByJobs(store, resumed));
  log.info({ jobId: report.jobId, ...report.summary, stoppedEarly: report.stoppedEarly }, 'renewal job finished');
  for (const r of report.results) {
    const o = observed.get(r.name);
    if (o) o.lastResult = r.state === 'succeeded' ? 'ok' : r.state === 'failed' ? 'failed' : o.lastResult;
  }
}

function lastResult(store: Store, name: string): Observation['lastResult'] {
  const last = store.jobAgents.agentHistory(name, { limit: 1 })[0];
  return !last ? 'none' : last.agentState === 'succeeded' ? 'ok' : last.agentState === 'failed' ? 'failed' : 'none';
}

/** Prometheus text exposition on GET /metrics. */
async function startMetrics(address: string, observed: Map<string, Observation>): Promise<Server> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(renderMetrics(observed));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return server;
}

export function renderMetrics(observed: Map<string, Observation>): string {
  const lines = [
    '# HELP midcert_certificate_days_left Days until the MID client certificate expires.', '# TYPE midcert_certificate_days_left gauge',
    ...[...observed].filter(([, o]) => o.daysLeft !== null).map(([n, o]) => `midcert_certificate_days_left{mid="${n}"} ${o.daysLeft}`),
    '# HELP midcert_agent_reachable 1 when the controller reached the agent on the last pass.', '# TYPE midcert_agent_reachable gauge',
    ...[...observed].map(([n, o]) => `midcert_agent_reachable{mid="${n}"} ${o.reachable ? 1 : 0}`),
    '# HELP midcert_last_rotation_success 1 when the last rotation succeeded, 0 when it failed.', '# TYPE midcert_last_rotation_success gauge',
    ...[...observed].filter(([, o]) => o.lastResult !== 'none').map(([n, o]) => `midcert_last_rotation_success{mid="${n}"} ${o.lastResult === 'ok' ? 1 : 0}`),
  ];
  return `${lines.join('\n')}\n`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
