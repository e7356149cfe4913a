/**
 * Optional CPU profiling of one phase of a benchmark, in-process (node:inspector), for finding
 * where a missed goal's time went. With BENCH_PROFILE=DIR, `profiled('name', fn)` writes
 * DIR/name.cpuprofile (open it in Chrome DevTools) and prints the top self-time entries, grouped
 * by function and file, to stderr; without it, it just runs fn.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

const DIR = process.env.BENCH_PROFILE;
let session: Session | undefined;

export async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!DIR) return fn();
  if (!session) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
  }
  await session.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
    mkdirSync(DIR, { recursive: true });
    writeFileSync(join(DIR, `${name}.cpuprofile`), JSON.stringify(profile));
    process.stderr.write(`\n## CPU profile ${name} (${DIR}/${name}.cpuprofile)\n${summarize(profile)}\n`);
  }
}

/** Self time by function (top 25) and by file/package (top 15), in ms and % of the samples. */
export function summarize(profile: Profile, top = 25): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i] as number, (self.get(samples[i] as number) ?? 0) + (deltas[i] ?? 0) / 1000);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fnTime = new Map<string, number>();
  const fileTime = new Map<string, number>();
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const where = place(node.callFrame.url);
    const key = `${node.callFrame.functionName || '(anonymous)'} ${where}${node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ''}`;
    fnTime.set(key, (fnTime.get(key) ?? 0) + ms);
    fileTime.set(where, (fileTime.get(where) ?? 0) + ms);
  }
  const lines = (m: Map<string, number>, n: number): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([k, ms]) => `  ${ms.toFixed(0).padStart(7)} ms ${((ms / total) * 100).toFixed(1).padStart(5)} %  ${k}`).join('\n');
  return `samples ${total.toFixed(0)} ms\nby function:\n${lines(fnTime, top)}\nby file:\n${lines(fileTime, 15)}`;
}

function place(url: string): string {
  if (!url) return '(native/vm)';
  const path = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(path);
  if (pkg) return `${pkg[1]}/${pkg[2]}`;
  if (path.startsWith('node:')) return path;
  return relative(process.cwd(), path);
}
