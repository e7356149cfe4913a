import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { controllerProgram } from '../../controller/cli/program.js';
import { assertHelpComplete, heavyModules, modulesLoadedBy, walk } from '../common/cli-loads.js';

const VERSION = (JSON.parse(readFileSync(join(resolve('.'), 'package.json'), 'utf8')) as { version: string }).version;

describe('midcert start-up (lazy command modules)', function () {
  this.timeout(60_000);

  it('--version loads only the command tree: no SQLite, config, CA adapters, orchestrator, gRPC or pino', async () => {
    const r = await modulesLoadedBy('controller/cli/main.ts', ['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
    assert.ok(r.loaded.includes('controller/cli/fleet-commands.ts'), `the hook saw the CLI load: ${r.loaded.join(' ')}`);
    assert.deepEqual(heavyModules(r.loaded, 'controller/cli/'), []);
  });

  it('--help of the program and of rotate, status and agents list load no more than --version', async () => {
    for (const args of [['--help'], ['rotate', '--help'], ['status', '--help'], ['agents', 'list', '--help'], ['serve', '--help']]) {
      const r = await modulesLoadedBy('controller/cli/main.ts', args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: midcert/);
      assert.deepEqual(heavyModules(r.loaded, 'controller/cli/'), [], args.join(' '));
    }
  });

  it('every command\'s --help still lists its description, options, arguments and subcommands', () => {
    const program = controllerProgram();
    assert.deepEqual(program.commands.map((c) => c.name()), ['init', 'agent-identity', 'agents', 'status', 'preflight', 'ca', 'rotate', 'rotate-ca', 'convert', 'bootstrap', 'history', 'serve', 'store']);
    assert.ok(walk(program).length >= 18);
    assertHelpComplete(program);
    const rotate = program.commands.find((c) => c.name() === 'rotate')!.helpInformation();
    for (const flag of ['--all', '--agent <name>', '--tag <tag>', '--canary <n>', '--batch <n>', '--dry-run', '--allow-key-type <type>', '--json']) assert.ok(rotate.includes(flag), `rotate --help lacks ${flag}`);
  });
});
