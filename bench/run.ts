import { cpus } from 'node:os';
import { benchAgent } from './agent.bench.js';
import { benchController } from './controller.bench.js';
import { benchPki } from './pki.bench.js';
import { benchStartup, startupTable } from './startup.bench.js';

const which = process.argv[2] ?? 'all';
process.stdout.write(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}\n\n`);
if (which === 'all' || which === 'pki') {
  const stats = await benchPki();
  process.stdout.write('| benchmark | runs | mean ms | median ms | p95 ms |\n| --- | --- | --- | --- | --- |\n');
  for (const s of stats) process.stdout.write(`| ${s.name} | ${s.runs} | ${s.meanMs} | ${s.medianMs} | ${s.p95Ms} |\n`);
  const ours = stats[0];
  const openssl = stats[1];
  if (ours && openssl) process.stdout.write(`\nmidcert / openssl (mean): ${(ours.meanMs / openssl.meanMs).toFixed(2)}× (goal ≤ 1.5×)\n\n`);
}
if (which === 'all' || which === 'controller') {
  const bench = await benchController();
  process.stdout.write('| controller benchmark | value |\n| --- | --- |\n');
  for (const [k, v] of bench.common) process.stdout.write(`| ${k} | ${v} |\n`);
  process.stdout.write(`\n| controller benchmark | ${bench.backends.join(' | ')} |\n| --- |${' --- |'.repeat(bench.backends.length)}\n`);
  for (const [k, ...v] of bench.rows) process.stdout.write(`| ${k} | ${v.join(' | ')} |\n`);
  process.stdout.write('\n');
}
if (which === 'all' || which === 'agent') {
  const figures = await benchAgent();
  process.stdout.write('\n| agent benchmark | value |\n| --- | --- |\n');
  for (const [k, v] of Object.entries(figures)) process.stdout.write(`| ${k} | ${v} |\n`);
}
if (which === 'all' || which === 'startup') {
  process.stdout.write(`\n${startupTable(benchStartup())}`);
}
process.exit(0);
