/**
 * Whole-process start-up benchmarks (issue 14): each command is started as a fresh process and
 * timed from spawn to exit (wall clock), in pairs against its yardstick — A B A B … — so a
 * machine that speeds up or slows down mid-run moves both sides alike; the figure is the MEDIAN of
 * the per-pair ratios (one lucky or unlucky RSA prime search must not move it).
 *
 *   --version / --help          vs `node -e 0`                              goal ≤ 2×
 *   csr (RSA-2048, key + CSR)   vs `openssl req -newkey rsa:2048 -nodes`    goal ≤ 1.5×
 *
 * for the built launchers (bin/midcert-agent, bin/midcert after `make build`) and the single
 * executables (dist/midcert-agent, dist/midcert after `make package`), whichever exist.
 *
 *   npx tsx bench/startup.bench.ts [--runs 20] [--csr-runs 40] [--only launcher|sea]
 *   (or: npx tsx bench/run.ts startup)
 *
 * A public cross-check of any one pair: hyperfine -N -w 2 -r 20 'bin/midcert-agent --version' 'node -e 0'.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname ?? '.', '..');

export interface PairStat {
  name: string;
  yardstick: string;
  runs: number;
  medianMs: number;
  yardstickMedianMs: number;
  /** median of the per-pair ratios A/B */
  ratio: number;
  goal: number;
}

function timeOnce(cmd: string[], cwd: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Runs A and B in turn `runs` times (after one warm-up each) and returns medians and the median ratio. */
export function pair(name: string, a: string[], yardstick: string, b: string[], runs: number, goal: number, cwd: string): PairStat {
  timeOnce(a, cwd);
  timeOnce(b, cwd);
  const ta: number[] = [];
  const tb: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < runs; i++) {
    const x = timeOnce(a, cwd);
    const y = timeOnce(b, cwd);
    ta.push(x);
    tb.push(y);
    ratios.push(x / y);
  }
  const r2 = (n: number): number => Math.round(n * 100) / 100;
  return { name, yardstick, runs, medianMs: r2(median(ta)), yardstickMedianMs: r2(median(tb)), ratio: r2(median(ratios)), goal };
}

/** The launcher runs dist/ only when `make build` is newer than every source (bin/launch.sh). */
function launcherIsBuilt(): boolean {
  const stamp = join(ROOT, 'dist', '.build-stamp');
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  const r = spawnSync('find', ['agent', 'controller', 'pki', 'common', 'proto', 'lab', '-name', '*.ts', '-newer', stamp, '-print', '-quit'], { cwd: ROOT, encoding: 'utf8' });
  return built > 0 && r.stdout.trim() === '';
}

export function benchStartup(options: { runs?: number; csrRuns?: number; only?: 'launcher' | 'sea' } = {}): PairStat[] {
  const runs = options.runs ?? Number(process.env.BENCH_RUNS ?? 20);
  const csrRuns = options.csrRuns ?? Number(process.env.BENCH_CSR_RUNS ?? 40);
  const dir = mkdtempSync(join(tmpdir(), 'midcert-startup-'));
  const node0 = [process.execPath, '-e', '0'];
  const openssl = ['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'o.key'), '-out', join(dir, 'o.csr'), '-subj', '/O=Org/OU=ITOM/CN=mid01'];
  const out: PairStat[] = [];
  try {
    const flavours: { label: string; agent: string; controller: string; launcher: boolean }[] = [];
    if (options.only !== 'sea') {
      if (launcherIsBuilt()) flavours.push({ label: 'launcher (make build)', agent: join(ROOT, 'bin', 'midcert-agent'), controller: join(ROOT, 'bin', 'midcert'), launcher: true });
      else process.stderr.write('startup bench: dist/ is missing or older than the sources (run make build): launcher rows skipped\n');
    }
    if (options.only !== 'launcher') {
      if (existsSync(join(ROOT, 'dist', 'midcert-agent')) && existsSync(join(ROOT, 'dist', 'midcert'))) {
        flavours.push({ label: 'single executable', agent: join(ROOT, 'dist', 'midcert-agent'), controller: join(ROOT, 'dist', 'midcert'), launcher: false });
      } else process.stderr.write('startup bench: dist/midcert-agent or dist/midcert missing (run make package): single-executable rows skipped\n');
    }
    for (const f of flavours) {
      const csr = [f.agent, 'csr', '--subject', 'CN=mid01,O=Org,OU=ITOM', '--key-out', join(dir, 'm.key'), '--csr-out', join(dir, 'm.csr'), '--force'];
      const cases: [string, string[], string, string[], number, number][] = [
        [`midcert-agent --version, ${f.label}`, [f.agent, '--version'], 'node -e 0', node0, runs, 2],
        [`midcert-agent --help, ${f.label}`, [f.agent, '--help'], 'node -e 0', node0, runs, 2],
        [`midcert --version, ${f.label}`, [f.controller, '--version'], 'node -e 0', node0, runs, 2],
        [`midcert rotate --help, ${f.label}`, [f.controller, 'rotate', '--help'], 'node -e 0', node0, runs, 2],
        [`midcert-agent csr (RSA-2048), ${f.label}`, csr, 'openssl req -newkey rsa:2048 -nodes', openssl, csrRuns, 1.5],
      ];
      for (const [name, a, yardstick, b, n, goal] of cases) {
        const stat = pair(name, a, yardstick, b, n, goal, dir);
        // A source edited during the pair sends the launcher to tsx (bin/launch.sh): not a figure.
        if (f.launcher && !launcherIsBuilt()) {
          process.stderr.write(`startup bench: ${name}: sources changed during the run (the launcher fell back to tsx); row dropped\n`);
          continue;
        }
        out.push(stat);
      }
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function startupTable(stats: PairStat[]): string {
  const rows = stats.map((s) => `| ${s.name} | ${s.runs} | ${s.medianMs} | ${s.yardstick}: ${s.yardstickMedianMs} | **${s.ratio.toFixed(2)}×** | ≤ ${s.goal}× |`);
  return `| whole process | pairs | median ms | yardstick median ms | median ratio | goal |\n| --- | --- | --- | --- | --- | --- |\n${rows.join('\n')}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(ROOT, 'bench', 'startup.bench.ts')) {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, 'csr-runs': { type: 'string' }, only: { type: 'string' } } });
  const only = values.only === 'launcher' || values.only === 'sea' ? values.only : undefined;
  process.stdout.write(startupTable(benchStartup({ runs: values.runs ? Number(values.runs) : undefined, csrRuns: values['csr-runs'] ? Number(values['csr-runs']) : undefined, only })));
}
