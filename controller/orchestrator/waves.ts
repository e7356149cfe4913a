/** A MID to rotate, with the cluster it belongs to (MIDs of one cluster back each other up). */
export interface FleetTarget {
  name: string;
  cluster?: string;
}

export interface WaveOptions {
  /** MIDs in the first, canary wave (0 = none). */
  canary: number;
  /** MIDs per later wave. */
  batch: number;
}

/**
 * Splits the fleet into waves: a canary wave, then batches. No wave ever holds every MID of a
 * cluster (a cluster of k MIDs contributes at most k-1 to any wave), so a cluster keeps a working
 * member while its peers restart.
 */
export function planWaves(targets: FleetTarget[], options: WaveOptions): FleetTarget[][] {
  const clusterSize = new Map<string, number>();
  for (const t of targets) if (t.cluster) clusterSize.set(t.cluster, (clusterSize.get(t.cluster) ?? 0) + 1);
  const waves: FleetTarget[][] = [];
  let queue = [...targets];
  let first = options.canary > 0;
  while (queue.length > 0) {
    const limit = first ? options.canary : Math.max(1, options.batch);
    first = false;
    const wave: FleetTarget[] = [];
    const inWave = new Map<string, number>();
    const deferred: FleetTarget[] = [];
    for (const target of queue) {
      const size = target.cluster ? clusterSize.get(target.cluster) ?? 1 : 1;
      const used = target.cluster ? inWave.get(target.cluster) ?? 0 : 0;
      const clusterAllows = !target.cluster || size < 2 || used < size - 1;
      if (wave.length < limit && clusterAllows) {
        wave.push(target);
        if (target.cluster) inWave.set(target.cluster, used + 1);
      } else {
        deferred.push(target);
      }
    }
    waves.push(wave);
    queue = deferred;
  }
  return waves;
}

export interface FleetRunOptions {
  concurrency: number;
  maxFailures: number;
  /** Called before each wave starts. */
  onWave?: (index: number, wave: FleetTarget[]) => void;
}

export interface FleetRunResult<R> {
  results: Map<string, R>;
  failed: string[];
  skipped: string[];
  stoppedEarly: boolean;
  reason: string;
}

/** A wave: its MIDs, or a stream of them for a wave whose members are still being chosen (onWave is then the caller's). */
export type Wave = FleetTarget[] | AsyncIterable<FleetTarget>;

/**
 * Runs the waves in order, up to `concurrency` MIDs at a time inside a wave. A failed canary, or
 * more failures than `maxFailures`, stops the rollout: MIDs not started yet are skipped. `waves`
 * may itself be a stream: a later wave is planned while the first runs.
 */
export async function runWaves<R>(waves: Wave[] | AsyncIterable<Wave>, rotate: (t: FleetTarget) => Promise<R>, isFailure: (r: R) => boolean, options: FleetRunOptions & { canaryWave: boolean }): Promise<FleetRunResult<R>> {
  const results = new Map<string, R>();
  const failed: string[] = [];
  const seen: string[] = [];
  let stop: string | undefined;
  let index = -1;
  for await (const wave of waves) {
    index += 1;
    if (stop) {
      // Not started: still listed, as skipped.
      for await (const target of wave) seen.push(target.name);
      continue;
    }
    if (Array.isArray(wave)) options.onWave?.(index, wave);
    await runPool(wave, options.concurrency, async (target) => {
      seen.push(target.name);
      if (stop) return;
      const result = await rotate(target);
      results.set(target.name, result);
      if (!isFailure(result)) return;
      failed.push(target.name);
      if (index === 0 && options.canaryWave) stop ??= `canary ${target.name} failed`;
      else if (failed.length > options.maxFailures) stop ??= `${failed.length} failures exceed the budget of ${options.maxFailures}`;
    });
  }
  const skipped = seen.filter((name) => !results.has(name));
  return { results, failed, skipped, stoppedEarly: stop !== undefined, reason: stop ?? '' };
}

/** Runs `work` over `items` (a list, or a stream read as it comes), at most `limit` at once. */
export async function runPool<T>(items: T[] | AsyncIterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  if (!Array.isArray(items)) return runPoolOver(items[Symbol.asyncIterator](), limit, work);
  let next = 0;
  const workers = Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  });
  await Promise.all(workers);
}

async function runPoolOver<T>(items: AsyncIterator<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const workers = Array.from({ length: Math.max(1, limit) }, async () => {
    for (let next = await items.next(); !next.done; next = await items.next()) await work(next.value);
  });
  await Promise.all(workers);
}
