/**
 * Agent benchmarks (issue 4): time from process start to serving, idle RSS and CPU of the daemon
 * over a window (goal: RSS under 70 MB, CPU near zero), and install time excluding the MID restart.
 * Runs the built daemon (`make build`) against a simulated MID and instance.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RenewalEngine } from '../agent/renewal/engine.js';
import { startMidWorld, waitFor } from '../test/helpers/mid-world.js';

const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);

function procStat(pid: number): { rssMiB: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMiB: rssKiB / 1024, cpuSeconds: ticks / 100 };
}

export async function benchAgent(): Promise<Record<string, string | number>> {
  const world = await startMidWorld('bench01');
  try {
    const config = join(world.dir, 'agent.yaml');
    writeFileSync(config, [
      'mid:', `  home: ${world.host.home}`,
      'service:', '  manager: command', '  start: ["/bin/true"]', '  stop: ["/bin/true"]', '  status: ["/bin/true"]',
      'listen:', `  socket: ${join(world.dir, 'a.sock')}`, 'stateDir: state', '',
    ].join('\n'));
    const entry = resolve('dist/agent/cli/main.js');
    const starts: number[] = [];
    let pid = 0;
    let child: ChildProcess | undefined;
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      child = spawn(process.execPath, [entry, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
      await waitFor(() => out.includes('midcert-agent serving'), 30_000, 'daemon did not start');
      starts.push(performance.now() - t);
      pid = child.pid as number;
      if (i < 4) { child.kill('SIGTERM'); await new Promise((r) => child?.once('exit', r)); }
    }
    await new Promise((r) => setTimeout(r, 3000)); // let start-up settle
    const before = procStat(pid);
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const after = procStat(pid);
    child?.kill('SIGTERM');
    const install = await installTiming(world);
    starts.sort((a, b) => a - b);
    return {
      'start to serving, median of 5 (ms, node dist/)': Math.round(starts[2] as number),
      [`idle RSS after ${IDLE_SECONDS} s (MiB)`]: after.rssMiB.toFixed(1),
      [`idle CPU over ${IDLE_SECONDS} s (s, % of one core)`]: `${(after.cpuSeconds - before.cpuSeconds).toFixed(2)} (${(((after.cpuSeconds - before.cpuSeconds) / IDLE_SECONDS) * 100).toFixed(2)} %)`,
      ...install,
    };
  } finally {
    await world.close();
  }
}

/** Per-step durations of a real install; "excluding the restart" leaves out start + health check. */
async function installTiming(world: Awaited<ReturnType<typeof startMidWorld>>): Promise<Record<string, string | number>> {
  const engine = new RenewalEngine(world.effects());
  const prepared = await engine.prepare({ renewalId: 'bench', subject: 'CN=bench01', sans: [], keyType: 'rsa' });
  const certificatePem = world.ca.signCsr(prepared.csrPem);
  await world.publishLeaf(certificatePem);
  const began = new Map<string, number>();
  const took = new Map<string, number>();
  const t = performance.now();
  const result = await engine.install('bench', { certificatePem, chainPem: world.ca.chainPem }, (p) => {
    if (p.state === 'started') began.set(p.step, performance.now());
    else if (p.state === 'done') took.set(p.step, performance.now() - (began.get(p.step) ?? performance.now()));
  });
  const total = performance.now() - t;
  if (!result.ok) throw new Error(`install failed: ${JSON.stringify(result)}`);
  const restart = (took.get('start') ?? 0) + (took.get('verify-health') ?? 0);
  return {
    'install total incl. restart + settle (ms)': Math.round(total),
    'install excluding MID restart (ms)': Math.round(total - restart),
    'install steps (ms)': [...took].map(([k, v]) => `${k} ${Math.round(v)}`).join(', '),
  };
}
