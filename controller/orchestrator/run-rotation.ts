import { isMidcertError } from '../../common/errors.js';
import type { Agent } from '../store/index.js';
import { Feed } from './feed.js';
import { KeptPorts } from './kept-ports.js';
import { Permits } from './permits.js';
import {
  finishReport, planned, resultOf, rotateAgent, settleJob, skippedResult,
  type RotationDeps, type RotationOptions, type RotationReport, type RotationResult,
} from './rotate-agent.js';
import { byName, probeInOrder, type Candidate, type Probe, type Skip } from './selection.js';
import { planWaves, runWaves, type FleetTarget, type Wave } from './waves.js';

/**
 * Fleet rotation: select (expiring or forced), plan waves, run them as one persisted job.
 * `exclude` names MIDs to skip whatever `force` says, with the reason to report — the MIDs a job
 * resumed just before renewed (see renewedByJobs), so a re-run rotates every MID once.
 *
 * A fleet without clusters starts its first wave while the later MIDs are still being asked
 * (rotateWhileSelecting); the plan and the report are the same either way. A fleet with clusters
 * plans from every answer first (a cluster's wave limit depends on how many of it are selected),
 * as do a dry run and a fleet with a MID already in another job (the job refuses as a whole).
 */
export async function runRotation(deps: RotationDeps, agents: Agent[], options: RotationOptions, exclude: ReadonlyMap<string, string> = new Map()): Promise<RotationReport> {
  const excluded = agents.filter((a) => exclude.has(a.name)).map((a) => ({ name: a.name, reason: exclude.get(a.name) as string }));
  const candidates = agents.filter((a) => !exclude.has(a.name)).sort(byName);
  const kept = new KeptPorts();
  try {
    const streamed = !options.dryRun && !candidates.some((a) => a.cluster) && (await deps.store.jobs.holders(candidates.map((a) => a.name))).size === 0;
    return await (streamed ? rotateWhileSelecting : rotateAfterSelecting)(deps, candidates, excluded, options, { kept, preparing: new Permits(options.preparing ?? preparingLimit(options.concurrency)) });
  } finally {
    kept.closeAll();
  }
}

/**
 * How many MIDs may be between their first step (status, PrepareRenewal, the CA, the instance)
 * and their install's start at once: a quarter of the slots, at least 4. Preparing takes seconds
 * and an install minutes (a MID restart), so this keeps every slot fed; what it prevents is a
 * whole wave preparing at the same moment (at the start, and wherever many installs end
 * together), which asks every agent, the CA and the store at once and delays all of them, where
 * in turn the first of them would have been installing already (bench/RESULTS.md "Sixth pass").
 */
export function preparingLimit(concurrency: number): number {
  return Math.max(4, Math.ceil(concurrency / 4));
}

/** What one rotation's MIDs share: the selection's connections, and the preparation permits. */
interface Shared {
  kept: KeptPorts;
  preparing: Permits;
}

type Rotate = (deps: RotationDeps, candidates: Agent[], excluded: Skip[], options: RotationOptions, shared: Shared) => Promise<RotationReport>;

const rotateAfterSelecting: Rotate = async (deps, candidates, excluded, options, shared) => {
  const { kept } = shared;
  const selected: Candidate[] = [];
  const skipped: Skip[] = [...excluded];
  await probeInOrder(deps.dial, candidates, selectOptions(options), kept, (p) => { if ('selected' in p) selected.push(p.selected); else skipped.push(p.skipped); });
  const waves = planWaves(selected.map((c) => ({ name: c.agent.name, cluster: c.agent.cluster ?? undefined })), { canary: options.canary, batch: options.batch });
  const plan = { waves: waves.map((w) => w.map((t) => t.name)), skipped: skipped.sort(byName) };
  if (options.dryRun || selected.length === 0) {
    const results = [...selected.map((c) => planned(c.agent.name, c.leafSha256)), ...skipped.map((s) => skippedResult(s.name, s.reason))];
    return finishReport(null, options.dryRun, plan, results, false, selected.length === 0 ? 'nothing to rotate' : '');
  }
  const job = await deps.store.jobs.create({
    kind: 'rotate',
    params: { ...options, agents: selected.map((c) => c.agent.name) },
    agents: waves.flatMap((wave, index) => wave.map((t) => ({ name: t.name, wave: index }))),
  });
  await deps.store.jobs.transition(job.id, 'running');
  const byAgent = new Map(selected.map((c) => [c.agent.name, c]));
  const waveOf = new Map(waves.flatMap((wave, index) => wave.map((t) => [t.name, index] as const)));
  const run = await runWaves(waves, (t) => rotateKept(deps, job.id, byAgent.get(t.name) as Candidate, waveOf.get(t.name) as number, options, shared), (r) => r.state === 'failed', {
    concurrency: options.concurrency, maxFailures: options.maxFailures, canaryWave: options.canary > 0,
    onWave: (i, w) => deps.onWave?.(i, w.map((t) => t.name)),
  });
  const results = selected.map((c) => resultOf(c.agent.name, run.results.get(c.agent.name), c.leafSha256, run.reason));
  await settleJob(deps.store, job.id, results);
  return finishReport(job.id, false, plan, [...results, ...skipped.map((s) => skippedResult(s.name, s.reason))], run.stoppedEarly, run.reason);
};

/**
 * Rotates one chosen MID, which just joined the job in `wave`, over the selection's connection
 * when it is still kept. `onPrepared` is called once: when the MID's preparation is over, or
 * when its rotation ends without one.
 */
function rotateKept(deps: RotationDeps, jobId: number, candidate: Candidate, wave: number, options: RotationOptions, shared: Shared, onPrepared?: () => void) {
  const port = shared.kept.take(candidate.agent.name);
  let called = false;
  const prepared = onPrepared && ((): void => { if (!called) { called = true; onPrepared(); } });
  return rotateAgent(deps, jobId, candidate.agent, options, {}, { port, leafSha256: candidate.leafSha256, joinedInWave: wave, preparing: shared.preparing, onPrepared: prepared })
    .finally(() => prepared?.());
}

function selectOptions(options: RotationOptions) {
  return { force: options.force, expiringWithinDays: options.expiringWithinDays, concurrency: options.concurrency, keep: !options.dryRun };
}

/**
 * Without clusters the plan is sequential (canary, then batches, in name order), so a MID's wave
 * is known once every MID before it has answered: first-wave MIDs join the job and start as they
 * are chosen, and the later waves join once all answered.
 */
const rotateWhileSelecting: Rotate = async (deps, candidates, excluded, options, shared) => {
  const { kept } = shared;
  const membership = new Membership(deps, options);
  const selection = selectIntoFirstWave(deps, candidates, options, kept, membership);
  async function* waves(): AsyncGenerator<Wave> {
    yield selection.firstWave;
    await selection.done;
    const rest = planWaves(selection.later.map((c) => ({ name: c.agent.name })), { canary: 0, batch: options.batch });
    const byAgent = new Map(selection.later.map((c) => [c.agent.name, c]));
    const joined = new Set((await membership.join(rest.flatMap((w, i) => w.map((t) => ({ candidate: byAgent.get(t.name) as Candidate, wave: i + 1 }))))).map((c) => c.agent.name));
    for (const wave of rest) yield wave.filter((t) => joined.has(t.name));
  }
  let run;
  try {
    const rotate = (t: FleetTarget) => {
      const wave = membership.waveOf(t.name);
      return rotateKept(deps, membership.jobId(), membership.candidate(t.name), wave, options, shared, wave === 0 ? selection.prepared : undefined);
    };
    run = await runWaves(waves(), rotate, (r) => r.state === 'failed', {
      concurrency: options.concurrency, maxFailures: options.maxFailures, canaryWave: options.canary > 0,
      onWave: (i, w) => deps.onWave?.(i, w.map((t) => t.name)),
    });
  } finally {
    // The selection may still be dialling: stop it asking more and let it finish, so the caller's closeAll closes every connection.
    selection.stop();
    await selection.done.catch(() => undefined);
  }
  const results: RotationResult[] = membership.members().map((c) => resultOf(c.agent.name, run.results.get(c.agent.name), c.leafSha256, run.reason));
  if (membership.started()) await settleJob(deps.store, membership.jobId(), results);
  const skipped = [...excluded, ...membership.skipped()].sort(byName);
  const jobId = membership.started() ? membership.jobId() : null;
  const report = [...results, ...skipped.map((s) => skippedResult(s.name, s.reason))];
  return finishReport(jobId, false, { waves: membership.waves(), skipped }, report, run.stoppedEarly, jobId === null ? 'nothing to rotate' : run.reason);
};

/**
 * The asking runs at least this far ahead of the first wave's rotations: a fleet this small is
 * asked (and joins the job) at once, so a job killed early already holds all of its first wave.
 */
const MIN_ASKED_AHEAD = 64;

/** How long the first wave gathers answers before they join the job (one store write per gathering). */
const JOIN_GATHER_MS = 25;

/**
 * Asks the fleet in name order. The first wave's MIDs join the job in batches (one store write
 * per batch, while the next answers arrive) and go into `firstWave`, which ends when every MID
 * has answered; the MIDs chosen after them wait in `later`. `done` fails if the store does.
 *
 * While the first wave fills, the asking keeps at most max(`concurrency`, 64) MIDs ahead of the
 * installs (asked, answered and waiting for a free slot, or preparing: `prepared` is called for
 * each first-wave MID whose preparation is over): a large first wave is asked as it rotates, not
 * all at once, so the handshakes of a thousand status calls do not crowd the first MIDs'
 * rotations off the event loop, and at most about twice that many connections are open. Counting
 * the MIDs preparing keeps the next asks from competing with them: the preparations are on the
 * way to every install, the next answers are needed only once a slot frees (an install later).
 * The MIDs after the first wave are asked as fast as they answer: later waves are planned from them.
 */
function selectIntoFirstWave(deps: RotationDeps, candidates: Agent[], options: RotationOptions, kept: KeptPorts, membership: Membership): { firstWave: Feed<FleetTarget>; later: Candidate[]; done: Promise<void>; stop(): void; prepared(): void } {
  const firstWaveSize = options.canary > 0 ? options.canary : Math.max(1, options.batch);
  const pacing = new Pacing(options.askAhead ?? Math.max(MIN_ASKED_AHEAD, options.concurrency));
  const firstWave = new Feed<FleetTarget>();
  const later: Candidate[] = [];
  const joining: Candidate[] = [];
  let chosen = 0;
  let flushing: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  let probing = true;
  let stopGathering: (() => void) | undefined;
  // A moment for more answers to arrive, so one write takes many MIDs (under a busy event loop
  // each write holds the store-wide lock for long); cut short once every MID has answered.
  const gather = (): Promise<void> => new Promise((resolve) => {
    const timer = setTimeout(resolve, JOIN_GATHER_MS);
    stopGathering = () => { clearTimeout(timer); resolve(); };
  });
  const flush = async (): Promise<void> => {
    try {
      while (joining.length > 0 && !failure) {
        if (probing) await gather();
        const batch = joining.splice(0);
        const joined = await membership.join(batch.map((candidate) => ({ candidate, wave: 0 })));
        pacing.dropped(batch.length - joined.length);
        for (const c of joined) firstWave.push({ name: c.agent.name });
      }
    } catch (error) {
      failure ??= { error };
      pacing.stop(); // the rotation fails as a whole: ask no one else
    } finally {
      flushing = undefined;
    }
  };
  const onProbe = (p: Probe): void => {
    pacing.answered('selected' in p && chosen < firstWaveSize);
    if ('skipped' in p) return membership.skip(p.skipped);
    chosen += 1;
    if (chosen > firstWaveSize) return void later.push(p.selected);
    if (chosen === firstWaveSize) pacing.release();
    joining.push(p.selected);
    flushing ??= flush();
  };
  const done = (async () => {
    try {
      await probeInOrder(deps.dial, candidates, selectOptions(options), kept, onProbe, () => pacing.ask());
      probing = false;
      stopGathering?.();
      await flushing;
    } finally {
      firstWave.end();
    }
    if (failure) throw failure.error;
    deps.onWave?.(0, membership.inWave(0));
  })();
  done.catch(() => undefined); // awaited by the caller; a store failure surfaces there
  return { firstWave, later, done, stop: () => pacing.stop(), prepared: () => pacing.prepared() };
}

/**
 * How far the asking may run ahead of the installs: `ahead` counts the MIDs being asked plus the
 * first-wave MIDs answered and not yet through their preparation; a new ask waits while it is at
 * the limit.
 */
class Pacing {
  private ahead = 0;
  private free = false;
  private stopped = false;
  private waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Before each ask: true to ask (now, or once below the limit), false once stopped. */
  async ask(): Promise<boolean> {
    while (!this.free && !this.stopped && this.ahead >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.ahead += 1;
    return !this.stopped;
  }

  /** An answer came in: it stays ahead only if it waits to rotate in the first wave. */
  answered(waitsToStart: boolean): void {
    if (!waitsToStart) this.less();
  }

  /** First-wave MIDs that will not start (another process claimed them). */
  dropped(count: number): void {
    for (let i = 0; i < count; i++) this.less();
  }

  /** A first-wave MID is through its preparation (its install is on its way), or ended without one. */
  prepared(): void {
    this.less();
  }

  /** The first wave is full: the rest are asked without waiting. */
  release(): void {
    this.free = true;
    this.wake();
  }

  stop(): void {
    this.stopped = true;
    this.wake();
  }

  private less(): void {
    this.ahead -= 1;
    this.wake();
  }

  private wake(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

/**
 * The job of a rotation that grows while it runs: created with its first members, joined by the
 * next in batches. A MID another process claimed meanwhile is skipped, with that process named.
 */
interface Joining {
  candidate: Candidate;
  wave: number;
}

class Membership {
  private job: { id: number } | undefined;
  private readonly joined: Joining[] = [];
  private readonly byName = new Map<string, Candidate>();
  private readonly waveByName = new Map<string, number>();
  private readonly refused: Skip[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: RotationDeps, private readonly options: RotationOptions) {}

  /** Adds `batch` to the job, each in its wave (creating the job first), in one write; returns who joined. */
  join(batch: Joining[]): Promise<Candidate[]> {
    if (batch.length === 0) return Promise.resolve([]);
    for (const { candidate } of batch) this.byName.set(candidate.agent.name, candidate);
    // One write at a time, in order: the job exists before anything joins it.
    const done = this.queue.then(() => this.write(batch));
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async write(batch: Joining[]): Promise<Candidate[]> {
    try {
      await this.add(batch.map(({ candidate, wave }) => ({ name: candidate.agent.name, wave })));
      this.joined.push(...batch);
      for (const { candidate, wave } of batch) this.waveByName.set(candidate.agent.name, wave);
      return batch.map((j) => j.candidate);
    } catch (err) {
      if (!isClaimed(err)) throw err;
      if (batch.length === 1) return this.refuse(batch, err);
      // Someone claimed one of them meanwhile: join the others one by one.
      const out: Candidate[] = [];
      for (const one of batch) out.push(...await this.write([one]));
      return out;
    }
  }

  private async add(members: Array<{ name: string; wave: number }>): Promise<void> {
    if (this.job) return this.deps.store.jobs.addAgents(this.job.id, members);
    const job = await this.deps.store.jobs.create({ kind: 'rotate', params: { ...this.options }, agents: members });
    await this.deps.store.jobs.transition(job.id, 'running');
    this.job = job;
  }

  private refuse(batch: Joining[], err: unknown): Candidate[] {
    const why = isMidcertError(err) ? `[${err.code}] ${err.message}` : String(err);
    for (const { candidate } of batch) this.refused.push({ name: candidate.agent.name, reason: `not joined: ${why}` });
    return [];
  }

  skip(skip: Skip): void {
    this.refused.push(skip);
  }

  candidate(name: string): Candidate {
    return this.byName.get(name) as Candidate;
  }

  waveOf(name: string): number {
    return this.waveByName.get(name) ?? 0;
  }

  started(): boolean {
    return this.job !== undefined;
  }

  jobId(): number {
    if (!this.job) throw new Error('no job yet');
    return this.job.id;
  }

  inWave(wave: number): string[] {
    return this.joined.filter((j) => j.wave === wave).map((j) => j.candidate.agent.name).sort((a, b) => a.localeCompare(b));
  }

  waves(): string[][] {
    const count = Math.max(0, ...this.joined.map((j) => j.wave + 1));
    return Array.from({ length: count }, (_, i) => this.inWave(i));
  }

  members(): Candidate[] {
    return this.joined.map((j) => j.candidate).sort((a, b) => byName(a.agent, b.agent));
  }

  skipped(): Skip[] {
    return [...this.refused];
  }
}

function isClaimed(err: unknown): boolean {
  return isMidcertError(err) && (err.code === 'JOB_CONFLICT' || err.code === 'AGENT_BUSY');
}
