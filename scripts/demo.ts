/**
 * `make demo`: a simulated fleet rotated end to end, the way an operator would do it.
 * Starts a lab (ServiceNow instance, MID hosts with short-lived certificates, ADCS, one agent per
 * MID, a controller data dir), points the controller at the lab's ADCS, runs preflight, shows the
 * fleet, rotates it in waves, shows the fleet again, and stops everything.
 */
import { execFile, spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { paint, useColor } from '../common/cli.js';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
// dist/scripts/demo.js when built, scripts/demo.ts from sources.
const root = resolve(here, here.split('/').includes('dist') ? '../..' : '..');
const bin = (name: string): string => join(root, 'bin', name);
const labDir = resolve(process.env.MIDCERT_DEMO_DIR ?? join(root, '.lab', 'fleet-demo'));
const mids = Number(process.env.MIDCERT_DEMO_MIDS ?? 4);

function step(title: string): void {
  process.stdout.write(`\n${paint(`▶ ${title}`, 'bold', useColor())}\n`);
}

/** Runs a command with its output shown live (progress bars included). */
function show(file: string, args: string[], options: { allowFail?: boolean } = {}): Promise<number> {
  process.stdout.write(`$ ${[file.replace(`${root}/`, ''), ...args].join(' ')}\n`);
  return new Promise((done, fail) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 || options.allowFail ? done(code ?? 1) : fail(new Error(`${file} exited ${code}`))));
  });
}

interface LabJson {
  instance: { url: string };
  adcs: { url: string; username: string; password: string; template: string };
  mids: { name: string; home: string }[];
  caFile: string;
  controller: { dataDir: string };
}

async function main(): Promise<void> {
  const started = Date.now();
  await exec(bin('midcert-lab'), ['down', '--dir', labDir]).catch(() => undefined);
  await rm(labDir, { recursive: true, force: true });
  try {
    step(`1. Start a simulated lab: ServiceNow instance, ${mids} MID Servers on 20-day certificates, ADCS, one midcert-agent per MID`);
    // Vendor timings (MID poll 40 s, MID start 30 s, instance monitor 300 s) × 0.02, so relative timings stay real.
    process.stdout.write(`$ bin/midcert-lab up --dir ${labDir} --mids ${mids} --with-agents --time-scale 0.02 --json\n`);
    const { stdout } = await exec(bin('midcert-lab'), ['up', '--dir', labDir, '--mids', String(mids), '--with-agents', '--time-scale', '0.02', '--json'], { maxBuffer: 16 * 1024 * 1024 });
    const lab = JSON.parse(stdout) as LabJson;
    const data = lab.controller.dataDir;
    process.stdout.write(`instance ${lab.instance.url}\nADCS     ${lab.adcs.url} (template ${lab.adcs.template})\nMIDs     ${lab.mids.map((m) => m.name).join(', ')}\ncontroller data dir ${data}\n`);

    step('2. Point the controller at the lab\'s Microsoft ADCS (certsrv web enrollment)');
    await useAdcs(data, lab);
    process.stdout.write(await readFile(join(data, 'controller.yaml'), 'utf8'));

    const midcert = (...args: string[]): string[] => ['--data-dir', data, ...args];
    step('3. Preflight: instance prerequisites and every MID host');
    await show(bin('midcert'), midcert('preflight'), { allowFail: true });

    step('4. The fleet before: every certificate expires within 30 days');
    await show(bin('midcert'), midcert('status', '--sort', 'days'));

    step('5. Rotate the fleet: canary first, then waves; keys stay on the hosts');
    await show(bin('midcert'), midcert('rotate', '--all', '--when-expiring-within', '30d', '--canary', '1', '--batch', '2'));

    step('6. The fleet after: new certificates, every MID Up on the instance');
    await show(bin('midcert'), midcert('status'));
    await show(bin('midcert'), midcert('history', '--limit', '3'));
  } finally {
    step('7. Stop everything');
    await show(bin('midcert-lab'), ['down', '--dir', labDir], { allowFail: true });
  }
  process.stdout.write(`\n${paint(`✔ demo complete in ${Math.round((Date.now() - started) / 1000)} s`, 'bold', useColor())} — lab files stay in ${labDir}\n`);
}

/** controller.yaml `ca:` → the lab ADCS (the password goes to a 0600 file, never into the YAML). */
async function useAdcs(dataDir: string, lab: LabJson): Promise<void> {
  const path = join(dataDir, 'controller.yaml');
  const cfg = parseYaml(await readFile(path, 'utf8')) as Record<string, unknown>;
  await writeFile(join(dataDir, 'adcs.password'), lab.adcs.password, { mode: 0o600 });
  cfg.ca = { type: 'adcs', url: lab.adcs.url, template: lab.adcs.template, username: lab.adcs.username, passwordFile: 'adcs.password', caFile: lab.caFile };
  await writeFile(path, stringifyYaml(cfg), { mode: 0o600 });
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
