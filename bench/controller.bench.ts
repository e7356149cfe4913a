/**
 * Controller benchmarks at fleet scale (issue "Scale"; issue 5 measured 200 agents on SQLite).
 *
 *  1. fleet status of N agent servers (default 1,000; goal < 3 s on 2 cores): real mTLS gRPC to N
 *     real agent gRPC servers (bench/agent-servers.ts) in child processes, as many as `ulimit -n`
 *     requires; timed from `store.agents.list()` to the last row, as `midcert status` does.
 *  2. a fleet rotation of all N at concurrency C (default 50) against the ideal
 *     ceil(N / C) × the per-MID time (median of 5 MIDs rotated alone, after one warm-up); goal
 *     actual / ideal ≤ 1.1. Twice: over gRPC to the same agent servers (their InstallCertificate
 *     is a fixed INSTALL_MS sleep standing in for keytool + MID restart), and with in-process
 *     stand-in agent ports (issue 5's method: no gRPC, no agent CPU, only the controller, the
 *     store and the local CA signing real RSA-2048 CSRs).
 *  3. controller RSS with 10,000 inventory rows, in a fresh process.
 *
 * Every figure is taken on each store backend: BENCH_STORE=sqlite|postgresql|both (default both;
 * PostgreSQL is the real throwaway cluster of test/helpers/postgres.ts, fsync off). While the
 * rotations run, every store call is timed through a wrapper on store.sql (count, time waiting
 * for the write lock, time holding it) and the CPU of the controller, the agent processes and
 * PostgreSQL is read from /proc, and each rotation step's mean time (its started → done events)
 * is printed alone and in the fleet, so a missed goal says where the time went; with the slot
 * time lost before the last MID started (what the asking and the joins cost, apart from each
 * MID's own time) and the controller's event-loop delay (mean and p99 beyond a 5 ms timer).
 *
 * Env: BENCH_AGENTS (N), BENCH_CONCURRENCY (C), BENCH_INSTALL_MS (400), BENCH_INVENTORY (10000),
 * BENCH_PG_CONNECTIONS (store.maxConnections), BENCH_ASK_AHEAD (the rotation's askAhead),
 * BENCH_PREPARING (the rotation's preparing: MIDs between first step and install at once),
 * BENCH_STORE, BENCH_AGENT_PROCS (minimum number of agent-server processes, default 1),
 * BENCH_PROFILE=DIR (CPU profiles of each fleet status and full rotation, bench/profile.ts, and
 * the store's statements by cost), BENCH_PARTS=status,grpc,stand-in,rss (default all).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createCaAdapter } from '../controller/ca/index.js';
import { initLocalCa } from '../controller/ca/local.js';
import { defaultConnections } from '../controller/config.js';
import { initDataDir } from '../controller/data-dir.js';
import { fleetStatus } from '../controller/fleet-status.js';
import type { RotationDeps, RotationOptions } from '../controller/orchestrator/rotate-agent.js';
import { runRotation } from '../controller/orchestrator/run-rotation.js';
import type { AgentPort } from '../controller/orchestrator/ports.js';
import { fleetDialer, type AgentDialer } from '../controller/orchestrator/wiring.js';
import { openStore, type Agent, type Store, type StoreConfig } from '../controller/store/index.js';
import type { SqlDatabase, SqlParam } from '../controller/store/sql.js';
import { buildCsr } from '../pki/csr.js';
import { generateKey } from '../pki/keys.js';
import { profiled } from './profile.js';

type Backend = 'sqlite' | 'postgresql';

const N = Number(process.env.BENCH_AGENTS ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const INSTALL_MS = Number(process.env.BENCH_INSTALL_MS ?? 400);
const INVENTORY = Number(process.env.BENCH_INVENTORY ?? 10_000);
/** Which parts run: status, grpc, stand-in, rss (comma-separated; default all). */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'status,grpc,stand-in,rss').split(',').map((p) => p.trim()));
/** How the controller reaches the local PostgreSQL: its Unix socket (default; what a database on the same host uses) or TCP on 127.0.0.1. */
const PG_TRANSPORT = process.env.BENCH_PG_TRANSPORT ?? 'socket';
/** store.maxConnections for PostgreSQL (default: controller.yaml's, rotation.concurrency + 2). */
const PG_CONNECTIONS = process.env.BENCH_PG_CONNECTIONS ? Number(process.env.BENCH_PG_CONNECTIONS) : undefined;
/** The rotation's askAhead (default: the product's, max(64, C)). */
const ASK_AHEAD = process.env.BENCH_ASK_AHEAD ? Number(process.env.BENCH_ASK_AHEAD) : undefined;
const PREPARING = process.env.BENCH_PREPARING ? Number(process.env.BENCH_PREPARING) : undefined;
const ALONE_RUNS = 5;
const STATUS_RUNS = 3;
/** File descriptors an agent-server process needs besides one listening socket per server. */
const FD_RESERVE = 256;
/** Per server: its listening socket, and one accepted connection while the controller talks to it. */
const FDS_PER_SERVER = 2;

export interface ControllerBench {
  /** Figures that do not depend on the store. */
  common: [string, string][];
  backends: Backend[];
  /** One value per backend, in `backends` order. */
  rows: [string, ...string[]][];
}

function backends(): Backend[] {
  const which = process.env.BENCH_STORE ?? 'both';
  if (which === 'both') return ['sqlite', 'postgresql'];
  if (which === 'sqlite' || which === 'postgresql') return [which];
  throw new Error(`BENCH_STORE must be sqlite, postgresql or both, not ${which}`);
}

export async function benchController(): Promise<ControllerBench> {
  const chosen = backends();
  const dir = mkdtempSync(join(tmpdir(), 'midcert-bench-ctl-'));
  const children: ChildProcess[] = [];
  try {
    await initDataDir(dir);
    await initLocalCa(dir);
    const servers = await startAgentServers(dir, children);
    const common: [string, string][] = [
      ['machine', `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load average before ${loadAverage()}`],
      ['agent servers (N)', String(N)],
      ['`ulimit -n` (soft, inherited by the agent-server processes)', String(servers.fdLimit)],
      ['agent-server processes × servers each', `${servers.procs} × ${servers.perProc} (fd budget: (limit − ${FD_RESERVE}) / ${FDS_PER_SERVER} = ${servers.budget} servers per process${process.env.BENCH_AGENT_PROCS ? `; BENCH_AGENT_PROCS=${process.env.BENCH_AGENT_PROCS}` : ''})`],
      ['open fds per agent-server process, serving (measured)', servers.fdsOpen.join(' / ')],
      ['ephemeral port range', readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().replace(/\s+/, '–')],
      ['rotation concurrency (C), stand-in install', `${CONCURRENCY}, ${INSTALL_MS} ms`],
    ];
    const columns: Record<string, string>[] = [];
    for (const backend of chosen) columns.push(await benchBackend(backend, dir, servers.ports, servers.pids));
    const names = [...new Set(columns.flatMap((c) => Object.keys(c)))];
    return { common, backends: chosen, rows: names.map((name) => [name, ...columns.map((c) => c[name] ?? '–')] as [string, ...string[]]) };
  } finally {
    for (const child of children) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** The soft RLIMIT_NOFILE this process (and so every child) has; Node raises its soft limit to the hard one at start-up. */
function fdLimit(): number {
  const text = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return text === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(text);
}

function openFds(pid: number | 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function startAgentServers(dir: string, children: ChildProcess[]): Promise<{ ports: number[]; pids: number[]; procs: number; perProc: number; budget: number; fdLimit: number; fdsOpen: number[] }> {
  const limit = fdLimit();
  const budget = Math.floor((limit - FD_RESERVE) / FDS_PER_SERVER);
  if (budget < 1) throw new Error(`ulimit -n is ${limit}: too low for even one agent server per process`);
  const procs = Math.max(Number(process.env.BENCH_AGENT_PROCS ?? 1), Math.ceil(N / budget));
  const perProc = Math.ceil(N / procs);
  const counts = Array.from({ length: procs }, (_, i) => Math.max(0, Math.min(perProc, N - i * perProc))).filter((c) => c > 0);
  const started = await Promise.all(counts.map((count) => new Promise<{ ports: number[]; pid: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [...(process.env.BENCH_AGENT_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_AGENT_PROF] : []), '--import', 'tsx', 'bench/agent-servers.ts', dir, String(count), String(INSTALL_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let text = '';
    child.stdout?.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve({ ports: (JSON.parse(text) as { ports: number[] }).ports, pid: child.pid as number });
    });
    child.on('exit', (code) => reject(new Error(`agent servers exited ${code}`)));
  })));
  const ports = started.flatMap((s) => s.ports);
  if (new Set(ports).size !== N) throw new Error(`agent servers: ${new Set(ports).size} distinct ports for ${N} agents`);
  return { ports, pids: started.map((s) => s.pid), procs: counts.length, perProc, budget, fdLimit: limit, fdsOpen: started.map((s) => openFds(s.pid)) };
}

interface Opened {
  store: Store;
  config: StoreConfig | undefined;
  /** PostgreSQL's postmaster, for its CPU. */
  serverPid: number | undefined;
  /** A fresh database for the RSS process. */
  freshConfig(): Promise<StoreConfig | undefined>;
}

async function openBackend(backend: Backend, dir: string): Promise<Opened> {
  if (backend === 'sqlite') {
    return { store: await openStore(dir, { actor: 'bench' }), config: undefined, serverPid: undefined, freshConfig: async () => undefined };
  }
  const { startPostgres } = await import('../test/helpers/postgres.js');
  const peer = await startPostgres();
  const database = async (): Promise<StoreConfig> => {
    const db = await peer.createDatabase('bench');
    const url = PG_TRANSPORT === 'socket' ? db.url.replace('127.0.0.1', encodeURIComponent(join(peer.dir, 'sock'))) : db.url;
    // What controller.yaml gives with rotation.concurrency = C (store.maxConnections' default).
    return { url, passwordFile: db.passwordFile, maxConnections: PG_CONNECTIONS ?? defaultConnections(CONCURRENCY) };
  };
  const config = await database();
  return {
    store: await openStore(dir, { actor: 'bench', config }),
    config,
    serverPid: Number(readFileSync(join(peer.dir, 'postgres.pid'), 'utf8').trim()),
    freshConfig: database,
  };
}

async function benchBackend(backend: Backend, dir: string, ports: number[], agentPids: number[]): Promise<Record<string, string>> {
  const opened = await openBackend(backend, dir);
  const { store } = opened;
  const stats = instrument(store.sql);
  try {
    const out: Record<string, string> = { 'store': backend === 'sqlite' ? 'SQLite (WAL, synchronous=NORMAL)' : `PostgreSQL (local peer over ${PG_TRANSPORT === 'socket' ? 'its Unix socket' : 'TCP 127.0.0.1'}, fsync off, ${opened.config?.maxConnections ?? '?'} connections at most)` };
    await store.transaction(async () => {
      for (const [i, p] of ports.entries()) await store.agents.add({ name: `mid${String(i).padStart(4, '0')}`, address: `127.0.0.1:${p}`, serverName: 'bench-agent' });
    });
    const dialer = await fleetDialer(dir);
    if (PARTS.has('status')) Object.assign(out, await benchStatus(backend, store, dialer, agentPids, opened.serverPid));
    const ca = await createCaAdapter({ type: 'local', timeoutSeconds: 30, validityDays: 365 }, { dataDir: dir });
    const agents = await store.agents.list();
    if (PARTS.has('grpc')) Object.assign(out, await benchRotation(`${backend}-grpc`, 'gRPC to the agent servers', { store, dial: (a) => dialer.dial(a), ca, instance: undefined, onEvent: () => undefined }, agents, stats, agentPids, opened.serverPid));
    if (PARTS.has('stand-in')) Object.assign(out, await benchRotation(`${backend}-stand-in`, 'in-process stand-in ports', { store, dial: standInDialer(agents), ca, instance: undefined, onEvent: () => undefined }, agents, stats, [], opened.serverPid));
    if (PARTS.has('rss')) Object.assign(out, rssWithInventory(await opened.freshConfig()));
    return out;
  } finally {
    await store.close();
  }
}

/** Fleet status, as `midcert status` runs it: the inventory, then every agent over mTLS. */
async function benchStatus(backend: Backend, store: Store, dialer: AgentDialer, agentPids: number[], serverPid: number | undefined): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const statusRuns: number[] = [];
  const statusCpu: string[] = [];
  let peakFds = 0;
  for (let i = 0; i < STATUS_RUNS; i++) {
    const sampler = setInterval(() => { peakFds = Math.max(peakFds, openFds('self')); }, 20);
    const cpu0 = cpuBefore(agentPids, serverPid);
    const t = performance.now();
    const agents = await store.agents.list();
    const rows = await profiled(`${backend}-fleet-status-${i + 1}`, () => fleetStatus(store, agents, dialer, undefined));
    statusRuns.push(performance.now() - t);
    clearInterval(sampler);
    statusCpu.push(cpuSplit(cpu0, agentPids, serverPid));
    const reachable = rows.filter((r) => r.reachable).length;
    if (reachable !== N) throw new Error(`fleet status: ${reachable} of ${N} agents answered; first error ${JSON.stringify(rows.find((r) => r.error)?.error)}`);
  }
  out[`fleet status of ${N} agents (ms, ${STATUS_RUNS} runs; goal < 3000)`] = statusRuns.map((x) => fmt(x)).join(' / ');
  out['fleet status CPU s per run: controller / agent processes / PostgreSQL'] = statusCpu.join('; ');
  out['controller open fds during fleet status (peak)'] = String(peakFds);
  return out;
}

/** Issue 5's stand-ins: no gRPC, the install a fixed sleep; CSRs pre-made (RSA-2048). */
function standInDialer(agents: Agent[]): (agent: Agent) => AgentPort {
  const csrs = Promise.all(Array.from({ length: 4 }, async () => buildCsr(await generateKey(), { subject: 'CN=bench' })));
  const indexOf = new Map(agents.map((a, i) => [a.name, i]));
  return (agent) => {
    const i = indexOf.get(agent.name) ?? 0;
    return {
      status: async () => ({ midName: agent.name, leafSha256: 'old', leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' }),
      prepare: async () => ({ csrPem: (await csrs)[i % 4] as string }),
      install: async () => { await new Promise((r) => setTimeout(r, INSTALL_MS)); return { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: 'new' }; },
      enableMutualAuth: async () => { throw new Error('unused'); },
      rollback: async () => { throw new Error('unused'); },
      renewal: async () => { throw new Error('unused'); },
      close: () => undefined,
    };
  };
}

async function benchRotation(id: string, label: string, deps: RotationDeps, agents: Agent[], stats: StoreStats, agentPids: number[], serverPid: number | undefined): Promise<Record<string, string>> {
  const options: RotationOptions = { force: true, expiringWithinDays: 30, canary: 0, batch: agents.length, maxFailures: 0, concurrency: CONCURRENCY, dryRun: false, caTimeoutMs: 10_000, caPollMs: 100, upTimeoutMs: 10_000, ...(ASK_AHEAD !== undefined ? { askAhead: ASK_AHEAD } : {}), ...(PREPARING !== undefined ? { preparing: PREPARING } : {}) };
  let steps = new StepTimes();
  const rotate = async (subset: Agent[], timing?: { firstStep?: number }): Promise<void> => {
    const report = await runRotation({ ...deps, onEvent: (e) => { if (timing) timing.firstStep ??= performance.now(); steps.add(e); } }, subset, options);
    if (report.summary.succeeded !== subset.length) throw new Error(`rotation (${label}): ${JSON.stringify(report.summary)} ${JSON.stringify(report.results.find((r) => r.error)?.error)}`);
  };
  // The per-MID time: one MID rotated alone, a warm-up first, then the median of ALONE_RUNS.
  await rotate(agents.slice(0, 1));
  const alone: number[] = [];
  stats.reset();
  for (let i = 1; i <= ALONE_RUNS; i++) {
    const t = performance.now();
    await rotate(agents.slice(i, i + 1));
    alone.push(performance.now() - t);
  }
  const aloneStore = stats.snapshot();
  const aloneSteps = steps;
  steps = new StepTimes();
  if (process.env.BENCH_PROFILE) process.stderr.write(`\n## store during ${id}, ${ALONE_RUNS} MIDs alone\n${stats.breakdown()}\n`);
  const perMid = median(alone);
  stats.reset();
  const cpu0 = cpuBefore(agentPids, serverPid);
  const timing: { firstStep?: number } = {};
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const t = performance.now();
  await profiled(`${id}-rotation`, () => rotate(agents, timing));
  const wall = performance.now() - t;
  lag.disable();
  const cpu = cpuSplit(cpu0, agentPids, serverPid);
  const s = stats.snapshot();
  if (process.env.BENCH_PROFILE) process.stderr.write(`\n## store during ${id}-rotation\n${stats.breakdown()}\n`);
  const ideal = Math.ceil(agents.length / CONCURRENCY) * perMid;
  const beforeFirst = (timing.firstStep ?? t) - t;
  const r = `rotation, ${label}`;
  return {
    [`${r}: one MID alone (ms, median of ${ALONE_RUNS}; runs)`]: `${fmt(perMid)} (${alone.map(fmt).join(', ')})`,
    [`${r}: store per MID alone (store-wide-lock txns, row-lock txns, statements, store-wide txn held mean ms)`]: `${(aloneStore.writes / ALONE_RUNS).toFixed(0)}, ${(aloneStore.rowWrites / ALONE_RUNS).toFixed(0)}, ${(aloneStore.statements / ALONE_RUNS).toFixed(0)}, ${(aloneStore.heldMs / Math.max(1, aloneStore.writes)).toFixed(2)}`,
    [`${r}: ${agents.length} MIDs at C=${CONCURRENCY} (ms)`]: fmt(wall),
    [`${r}: of which before the first MID's first step (its status answer, job create)`]: fmt(beforeFirst),
    [`${r}: ideal ceil(${agents.length}/${CONCURRENCY}) × per-MID (ms)`]: fmt(ideal),
    [`${r}: actual / ideal (goal ≤ 1.1)`]: `**${(wall / ideal).toFixed(2)}**`,
    [`${r}: store txns under the store-wide lock / row-locked (per MID)`]: `${(s.writes / agents.length).toFixed(2)} / ${(s.rowWrites / agents.length).toFixed(2)}`,
    [`${r}: store statements outside/inside txns`]: `${s.statements - s.inTx} / ${s.inTx}`,
    [`${r}: write lock held, total (ms; % of wall)`]: `${fmt(s.heldMs)} (${((s.heldMs / wall) * 100).toFixed(0)} %)`,
    [`${r}: write txn held, mean / p99 (ms)`]: `${(s.heldMs / Math.max(1, s.writes)).toFixed(2)} / ${s.heldP99.toFixed(2)}`,
    [`${r}: waiting for the write lock, mean (ms)`]: (s.waitMs / Math.max(1, s.writes)).toFixed(1),
    [`${r}: one-statement writes (per MID; mean ms, call to answer)`]: `${(s.singles / agents.length).toFixed(2)}; ${(s.singlesMs / Math.max(1, s.singles)).toFixed(1)}`,
    [`${r}: CPU s: controller / agent processes / PostgreSQL`]: cpu,
    [`${r}: per step, mean ms alone → in the fleet`]: aloneSteps.compare(steps),
    [`${r}: slots idle while MIDs had not started (slot-seconds; ${CONCURRENCY} slots × wall = ${((CONCURRENCY * wall) / 1000).toFixed(0)})`]: (steps.idleSlotMs(CONCURRENCY, t) / 1000).toFixed(1),
    // The histogram holds whole timer intervals: the 5 ms resolution is taken off.
    [`${r}: controller event-loop delay, mean / p99 (ms)`]: `${(lag.mean / 1e6 - 5).toFixed(1)} / ${(lag.percentile(99) / 1e6 - 5).toFixed(1)}`,
  };
}

/** Mean time of each rotation step (its `started` to its `done` event) and of a whole MID (first event to last). */
class StepTimes {
  private readonly open = new Map<string, number>();
  private readonly first = new Map<string, number>();
  private readonly last = new Map<string, number>();
  private readonly sums = new Map<string, { n: number; ms: number }>();
  add(e: { agent: string; step: string; state: string }): void {
    const now = performance.now();
    this.first.set(e.agent, this.first.get(e.agent) ?? now);
    this.last.set(e.agent, now);
    const key = `${e.agent}\0${e.step}`;
    if (e.state === 'started') this.open.set(key, now);
    else if (e.state === 'done' && this.open.has(key)) {
      const sum = this.sums.get(e.step) ?? { n: 0, ms: 0 };
      sum.n += 1; sum.ms += now - (this.open.get(key) as number);
      this.sums.set(e.step, sum);
    }
  }
  means(): Map<string, number> {
    const out = new Map([...this.sums].map(([step, s]) => [step, s.ms / s.n]));
    const whole = [...this.first].map(([agent, t]) => (this.last.get(agent) as number) - t);
    out.set('whole MID', whole.reduce((a, b) => a + b, 0) / Math.max(1, whole.length));
    return out;
  }
  /**
   * Slot time lost before the last MID started: from `since` to the last MID's first event, the
   * integral of (slots − MIDs in flight), a MID being in flight from its first event to its last.
   * What the feed (the asking, the joins) cost the rotation, apart from each MID's own time.
   */
  idleSlotMs(slots: number, since: number): number {
    const edges = [...this.first].flatMap(([agent, t]) => [[t, 1], [this.last.get(agent) as number, -1]] as const).sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    const lastStart = Math.max(...this.first.values());
    let inFlight = 0; let at = since; let idle = 0;
    for (const [t, d] of edges) {
      if (at >= lastStart) break;
      const until = Math.min(t, lastStart);
      idle += Math.max(0, slots - inFlight) * Math.max(0, until - at);
      at = Math.max(at, until);
      inFlight += d;
    }
    return idle;
  }
  compare(fleet: StepTimes): string {
    const theirs = fleet.means();
    return [...this.means()].map(([step, ms]) => `${step} ${ms.toFixed(1)} → ${(theirs.get(step) ?? 0).toFixed(1)}`).join('; ');
  }
}

interface StoreStats {
  reset(): void;
  /** writes: transactions under the store-wide lock (write()); rowWrites: row-locked ones (writeRows()), not in held/wait. */
  snapshot(): { writes: number; rowWrites: number; statements: number; inTx: number; heldMs: number; waitMs: number; heldP99: number; singles: number; singlesMs: number };
  /** Per statement inside write transactions, and per kind of transaction (named by its first statement). */
  breakdown(): string;
}

/**
 * Times every call through `sql` (the repositories look its methods up on every call, so wrapping
 * the object after openStore sees them all). `held`: from the moment the transaction body starts
 * (write lock taken: BEGIN IMMEDIATE, or PostgreSQL's advisory lock) to COMMIT done; `wait`: from
 * write() to the body starting (queue for the connection / pool / lock, BEGIN).
 */
function instrument(sql: SqlDatabase): StoreStats {
  const inside = new AsyncLocalStorage<{ first?: string }>();
  let writes = 0; let rowWrites = 0; let statements = 0; let inTx = 0; let heldMs = 0; let waitMs = 0; let commitMs = 0; let held: number[] = [];
  let perStatement = new Map<string, { n: number; ms: number }>();
  let perTxn = new Map<string, { n: number; ms: number }>();
  let perSingle = new Map<string, number[]>();
  let singles = 0; let singlesMs = 0;
  const add = (m: Map<string, { n: number; ms: number }>, key: string, ms: number): void => {
    const e = m.get(key) ?? { n: 0, ms: 0 };
    e.n += 1; e.ms += ms;
    m.set(key, e);
  };
  const write = sql.write.bind(sql);
  const writeRows = sql.writeRows.bind(sql);
  const mutable = sql as { -readonly [K in keyof SqlDatabase]: SqlDatabase[K] };
  mutable.writeRows = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (inside.getStore()) return writeRows(fn);
    rowWrites += 1;
    const tx: { first?: string } = {};
    return writeRows(() => inside.run(tx, fn));
  };
  mutable.write = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (inside.getStore()) return write(fn); // a savepoint of the open transaction
    const called = performance.now();
    let started = called;
    let bodyDone = called;
    const tx: { first?: string } = {};
    const result = await write(async () => {
      started = performance.now();
      try {
        return await inside.run(tx, fn);
      } finally {
        bodyDone = performance.now();
      }
    });
    const done = performance.now();
    writes += 1; waitMs += started - called; heldMs += done - started; commitMs += done - bodyDone; held.push(done - started);
    add(perTxn, tx.first ?? '(no statement)', done - started);
    return result;
  };
  // One-statement writes (a MID's progress on PostgreSQL, its certificate record), from the call
  // to the answer: by statement, and a MID's progress also by the state it writes.
  const writeOne = sql.writeOne.bind(sql);
  mutable.writeOne = async <T>(text: string, params: readonly SqlParam[] = []): Promise<T | undefined> => {
    if (inside.getStore()) return writeOne<T>(text, params);
    const t = performance.now();
    try {
      return await writeOne<T>(text, params);
    } finally {
      const ms = performance.now() - t;
      singles += 1; singlesMs += ms;
      const key = singleKey(text, params);
      const seen = perSingle.get(key) ?? [];
      seen.push(ms);
      perSingle.set(key, seen);
    }
  };
  for (const name of ['all', 'get', 'run'] as const) {
    const original = (sql[name] as (...args: unknown[]) => Promise<unknown>).bind(sql);
    (mutable as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      statements += 1;
      const tx = inside.getStore();
      if (!tx) return original(...args);
      inTx += 1;
      const key = String(args[0]).replace(/\s+/g, ' ').trim().slice(0, 70);
      tx.first ??= key;
      const t = performance.now();
      try {
        return await original(...args);
      } finally {
        add(perStatement, key, performance.now() - t);
      }
    };
  }
  const table = (m: Map<string, { n: number; ms: number }>): string => [...m].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)
    .map(([k, e]) => `  ${String(e.n).padStart(6)} × ${(e.ms / e.n).toFixed(2).padStart(6)} ms = ${e.ms.toFixed(0).padStart(6)} ms  ${k}`).join('\n');
  return {
    reset: () => { writes = 0; rowWrites = 0; statements = 0; inTx = 0; heldMs = 0; waitMs = 0; commitMs = 0; held = []; perStatement = new Map(); perTxn = new Map(); perSingle = new Map(); singles = 0; singlesMs = 0; },
    snapshot: () => {
      const sorted = [...held].sort((a, b) => a - b);
      return { writes, rowWrites, statements, inTx, heldMs, waitMs, heldP99: sorted[Math.floor(sorted.length * 0.99)] ?? 0, singles, singlesMs };
    },
    breakdown: () => `write transactions by first statement (count × mean held = total):\n${table(perTxn)}\n`
      + `statements inside write transactions (count × mean = total):\n${table(perStatement)}\n`
      + `one-statement writes, call to answer (count × mean = total; median, p90; the first ${FIRST} in call order, the rest):\n${singlesTable(perSingle)}\n`
      + `COMMIT (body end → write() resolved): ${writes} × ${(commitMs / Math.max(1, writes)).toFixed(2)} ms = ${commitMs.toFixed(0)} ms`,
  };
}

/** How many of a statement's first calls are told apart from the rest: a cold pool shows there. */
const FIRST = 100;

function singlesTable(m: Map<string, number[]>): string {
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const mean = (xs: number[]): number => sum(xs) / Math.max(1, xs.length);
  return [...m].map(([k, xs]) => ({ k, xs, total: sum(xs) })).sort((a, b) => b.total - a.total).slice(0, 15).map(({ k, xs, total }) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const at = (q: number): string => (sorted[Math.floor(sorted.length * q)] ?? 0).toFixed(1);
    const split = xs.length > FIRST ? `; ${mean(xs.slice(0, FIRST)).toFixed(1)} / ${mean(xs.slice(FIRST)).toFixed(1)}` : '';
    return `  ${String(xs.length).padStart(6)} × ${mean(xs).toFixed(2).padStart(6)} ms = ${total.toFixed(0).padStart(6)} ms  (${at(0.5)}, ${at(0.9)}${split})  ${k}`;
  }).join('\n');
}

/** A one-statement write's line in the breakdown: its text's start; for job_agents, the state it writes (the first parameter). */
function singleKey(text: string, params: readonly SqlParam[]): string {
  const head = text.replace(/\s+/g, ' ').trim().slice(0, 40);
  return head.startsWith('UPDATE job_agents') ? `${head} … [${String(params[0])}]` : head;
}

/** CPU seconds since `before`: this process / the agent-server processes / PostgreSQL. */
function cpuSplit(before: CpuBefore, agentPids: number[], serverPid: number | undefined): string {
  const self = process.cpuUsage(before.self);
  const main = mainThreadCpuSeconds() - before.main;
  const agents = agentPids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - (before.agents[i] ?? 0), 0);
  const pg = serverPid ? treeCpuSeconds(serverPid) - before.pg : 0;
  return `${((self.user + self.system) / 1e6).toFixed(1)} (main thread ${main.toFixed(1)}) / ${agentPids.length ? agents.toFixed(1) : '–'} / ${serverPid ? pg.toFixed(1) : '–'}`;
}

interface CpuBefore { self: NodeJS.CpuUsage; main: number; agents: number[]; pg: number }

function cpuBefore(agentPids: number[], serverPid: number | undefined): CpuBefore {
  return { self: process.cpuUsage(), main: mainThreadCpuSeconds(), agents: agentPids.map(cpuSeconds), pg: serverPid ? treeCpuSeconds(serverPid) : 0 };
}

/**
 * The controller's main thread alone (its event loop: JS, and the TLS and HTTP/2 work of its I/O
 * callbacks), apart from V8's GC and compiler threads and libuv's pool: how near the one thread
 * every await waits on is to saturation.
 */
function mainThreadCpuSeconds(): number {
  return statCpuSeconds(`/proc/self/task/${process.pid}/stat`);
}

/** utime + stime of one process, in seconds. */
function cpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

function statCpuSeconds(path: string): number {
  try {
    const fields = readFileSync(path, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU of a process and its live children (PostgreSQL's backends), in seconds. */
function treeCpuSeconds(root: number): number {
  let total = cpuSeconds(root);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
      if (ppid === root) total += cpuSeconds(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/**
 * A fresh process opens a store, registers INVENTORY agents and lists them (the list held, as
 * `midcert status` holds it); its RSS is taken after a full GC, and its peak (maxRSS).
 */
function rssWithInventory(config: StoreConfig | undefined): Record<string, string> {
  const script = `
    import { openStore } from './controller/store/index.js';
    import { mkdtempSync } from 'node:fs'; import { tmpdir } from 'node:os'; import { join } from 'node:path';
    const config = process.env.BENCH_PG_URL ? { url: process.env.BENCH_PG_URL, passwordFile: process.env.BENCH_PG_PASSWORD_FILE } : undefined;
    const rss = () => { global.gc(); return process.memoryUsage().rss / 1048576; };
    const s = await openStore(mkdtempSync(join(tmpdir(), 'rss-')), { actor: 'bench', config });
    await s.agents.list();
    const empty = rss();
    await s.transaction(async () => { for (let i = 0; i < ${INVENTORY}; i++) await s.agents.add({ name: 'a' + i, address: '10.0.' + (i >> 8) + '.' + (i & 255) + ':7443', tags: ['dc1'] }); });
    const agents = await s.agents.list();
    if (agents.length !== ${INVENTORY}) throw new Error('listed ' + agents.length);
    const full = rss();
    console.log(JSON.stringify({ empty, full, peak: process.resourceUsage().maxRSS / 1024 }));
    await s.close();`;
  const env = { ...process.env, BENCH_PG_URL: config?.url ?? '', BENCH_PG_PASSWORD_FILE: config?.passwordFile ?? '' };
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), env }).toString().trim();
  const r = JSON.parse(out.split('\n').pop() as string) as { empty: number; full: number; peak: number };
  return {
    [`controller RSS, fresh process: empty store → ${INVENTORY.toLocaleString('en')} inventory rows listed (MiB)`]: `${r.empty.toFixed(1)} → **${r.full.toFixed(1)}**`,
    'controller peak RSS while adding and listing them (MiB)': r.peak.toFixed(1),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function fmt(ms: number): string {
  return Math.round(ms).toLocaleString('en');
}
