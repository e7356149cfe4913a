#!/usr/bin/env node
/**
 * Measures the single executables the way an operator meets them: binary size, start time
 * (`--version`, median of N runs, wall clock) and idle RSS (the agent daemon serving its Unix
 * socket on a minimal MID tree, sampled from /proc after it settles). Every run uses a clean
 * environment (PATH=/usr/bin:/bin, HOME=<temp>), an empty working directory and no Node.js.
 *
 * Usage: node packaging/measure-sea.mjs [--dir dist] [--runs 10] [--settle-ms 3000] [--json]
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function cleanEnv(home) {
  return { PATH: '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8' };
}

/** Wall-clock ms of `<bin> --version`, median of `runs` (after one warm-up run). */
export function startTimes(bin, runs, cwd) {
  const times = [];
  for (let i = 0; i <= runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(bin, ['--version'], { cwd, env: cleanEnv(cwd), encoding: 'utf8' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${bin} --version exited ${r.status}: ${r.stderr}`);
    if (i > 0) times.push(ms);
  }
  return { medianMs: Math.round(median(times)), minMs: Math.round(Math.min(...times)), maxMs: Math.round(Math.max(...times)), runs };
}

async function rssKb(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

/** Starts the agent daemon on a minimal MID tree (socket only, no TCP) and samples its RSS once idle. */
export async function agentIdleRss(bin, settleMs) {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-rss-'));
  try {
    await mkdir(join(dir, 'mid', 'agent', 'security'), { recursive: true });
    const cfg = join(dir, 'agent.yaml');
    await writeFile(cfg, [
      'mid:', `  home: ${join(dir, 'mid')}`,
      'service:', '  manager: command', '  start: ["/bin/true"]', '  stop: ["/bin/true"]', '  status: ["/bin/true"]',
      'listen:', `  socket: ${join(dir, 'agent.sock')}`,
      `stateDir: ${join(dir, 'state')}`,
      'log:', '  level: info', '',
    ].join('\n'));
    const child = spawn(bin, ['run', '--config', cfg], { cwd: dir, env: cleanEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('midcert-agent serving')) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, settleMs));
      return { ...(await rssKb(child.pid)), settleMs };
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Peak RSS of one `<bin> <args>` run, through GNU time when present. */
function peakRssKb(bin, args, cwd) {
  if (!existsSync('/usr/bin/time')) return undefined;
  const r = spawnSync('/usr/bin/time', ['-f', '%M', bin, ...args], { cwd, env: cleanEnv(cwd), encoding: 'utf8' });
  const m = /(\d+)\s*$/.exec(r.stderr.trim());
  return m ? Number(m[1]) : undefined;
}

export async function measure(dir, { runs = 10, settleMs = 3000 } = {}) {
  const results = [];
  const cwd = await mkdtemp(join(tmpdir(), 'midcert-measure-'));
  try {
    for (const name of ['midcert-agent', 'midcert']) {
      const bin = resolve(dir, name);
      if (!existsSync(bin)) continue;
      const entry = { name, path: bin, sizeBytes: (await stat(bin)).size, start: startTimes(bin, runs, cwd), versionPeakRssKb: peakRssKb(bin, ['--version'], cwd) };
      if (name === 'midcert-agent') entry.idle = await agentIdleRss(bin, settleMs);
      results.push(entry);
    }
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
  return results;
}

async function main() {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, runs: { type: 'string' }, 'settle-ms': { type: 'string' }, json: { type: 'boolean' } } });
  const dir = resolve(values.dir ?? 'dist');
  const results = await measure(dir, { runs: Number(values.runs ?? 10), settleMs: Number(values['settle-ms'] ?? 3000) });
  if (results.length === 0) throw new Error(`no midcert binaries in ${dir} (run make package)`);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  for (const r of results) {
    const idle = r.idle ? `, idle RSS ${(r.idle.rssKb / 1024).toFixed(1)} MiB (daemon, ${r.idle.settleMs} ms after start)` : '';
    const peak = r.versionPeakRssKb ? `, --version peak RSS ${(r.versionPeakRssKb / 1024).toFixed(1)} MiB` : '';
    process.stdout.write(`${r.name}: ${(r.sizeBytes / 1048576).toFixed(1)} MiB, start (--version) median ${r.start.medianMs} ms of ${r.start.runs} [${r.start.minMs}–${r.start.maxMs}]${peak}${idle}\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(`measure-sea: error: ${err && err.message ? err.message : err}\n`);
    process.exitCode = 1;
  });
}
