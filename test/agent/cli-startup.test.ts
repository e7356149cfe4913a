import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { agentProgram } from '../../agent/cli/program.js';
import { assertHelpComplete, heavyModules, modulesLoadedBy } from '../common/cli-loads.js';

const VERSION = (JSON.parse(readFileSync(join(resolve('.'), 'package.json'), 'utf8')) as { version: string }).version;

describe('midcert-agent start-up (lazy command modules)', function () {
  this.timeout(60_000);

  it('--version loads only the command tree: no PKI, node-forge, gRPC, pino, zod or YAML', async () => {
    const r = await modulesLoadedBy('agent/cli/main.ts', ['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
    assert.ok(r.loaded.includes('agent/cli/main.ts') && r.loaded.includes('agent/cli/csr-command.ts'), `the hook saw the CLI load: ${r.loaded.join(' ')}`);
    assert.deepEqual(heavyModules(r.loaded, 'agent/cli/'), []);
  });

  it('--help of the program and of csr load no more than --version', async () => {
    for (const args of [['--help'], ['csr', '--help'], ['bundle', 'build', '--help'], ['install', '--help']]) {
      const r = await modulesLoadedBy('agent/cli/main.ts', args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: midcert-agent/);
      assert.deepEqual(heavyModules(r.loaded, 'agent/cli/'), [], args.join(' '));
    }
  });

  it('a command loads what it runs, when it runs (the hook sees lazy imports)', async () => {
    const r = await modulesLoadedBy('agent/cli/main.ts', ['cert', 'show', 'no-such-file.pem']);
    assert.equal(r.code, 4, r.stderr);
    assert.ok(r.loaded.includes('pki/certificate.ts'), `cert show loaded ${r.loaded.join(' ')}`);
  });

  it('every command\'s --help still lists its description, options, arguments and subcommands', () => {
    const program = agentProgram();
    assert.deepEqual(program.commands.map((c) => c.name()), ['csr', 'bundle', 'keystore', 'cert', 'run', 'status', 'install', 'rollback', 'preflight', 'service']);
    assertHelpComplete(program);
    const csr = program.commands.find((c) => c.name() === 'csr')!.helpInformation();
    for (const flag of ['--subject <dn>', '--key-out <file>', '--csr-out <file>', '--key-type <type>', '--bits <n>', '--san <name>', '--force', '--json']) assert.ok(csr.includes(flag), `csr --help lacks ${flag}`);
  });
});
