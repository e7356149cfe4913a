// Which modules a CLI process loads, seen through a module loader hook (not timing, not --trace):
// the program runs from its TypeScript sources (tsx), and a `load` hook registered after tsx logs
// every URL the ESM loader serves — our files and each package's entry point — to a file.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { run, type RunResult } from '../helpers/run.js';

const ROOT = resolve('.');
const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');

const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.MIDCERT_LOAD_LOG, url + '\\n');
  return next(url, context);
}
`;
const REGISTER = `import { register } from 'node:module';
register('./hooks.mjs', import.meta.url);
`;

export interface LoadResult extends RunResult {
  /** repository-relative paths of the files loaded (node_modules/… for packages); no built-ins */
  loaded: string[];
}

/** Runs `entry` (e.g. agent/cli/main.ts) with `args` and returns what it loaded. */
export async function modulesLoadedBy(entry: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-loads-'));
  try {
    await writeFile(join(dir, 'hooks.mjs'), HOOKS);
    await writeFile(join(dir, 'register.mjs'), REGISTER);
    const log = join(dir, 'loaded.txt');
    await writeFile(log, '');
    const result = await run(process.execPath, ['--import', pathToFileURL(TSX).href, '--import', pathToFileURL(join(dir, 'register.mjs')).href, join(ROOT, entry), ...args], {
      cwd: dir,
      env: { ...process.env, NODE_OPTIONS: '', ...env, MIDCERT_LOAD_LOG: log },
    });
    const prefix = `${pathToFileURL(ROOT).href}/`;
    const loaded = (await readFile(log, 'utf8')).split('\n').filter((u) => u.startsWith(prefix)).map((u) => u.slice(prefix.length).replace(/\?.*$/, ''));
    return { ...result, loaded: [...new Set(loaded)] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What a light start may load: the CLI's own command files, common/ and commander. */
export function heavyModules(loaded: string[], cliDir: string): string[] {
  return loaded.filter((p) => !(p.startsWith(cliDir) || p.startsWith('common/') || p.startsWith('node_modules/commander/')));
}

/** Every command of a tree with its path from the root (`bundle build`), root first. */
export function walk(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return [{ path, cmd }, ...cmd.commands.flatMap((c) => walk(c, [...path, c.name()]))];
}

/** Asserts that each command's --help names its description, every option, argument and subcommand. */
export function assertHelpComplete(program: Command): void {
  for (const { path, cmd } of walk(program)) {
    const where = path.join(' ') || '(root)';
    const help = cmd.helpInformation().replace(/\s+/g, ' ');
    assert.ok(help.includes(cmd.description().replace(/\s+/g, ' ').slice(0, 40)), `${where}: --help lacks its description`);
    for (const o of cmd.options) assert.ok(help.includes(o.flags), `${where}: --help lacks ${o.flags}`);
    for (const a of cmd.registeredArguments) assert.ok(help.includes(a.name()), `${where}: --help lacks <${a.name()}>`);
    for (const c of cmd.commands) assert.ok(help.includes(` ${c.name()}`), `${where}: --help lacks the ${c.name()} command`);
  }
}
