import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
// eslint-disable-next-line no-control-regex
const displayWidth = (line: string): number => line.replace(/\u001b\[[0-9;]*m/g, '').length;
import { run, runOk } from '../helpers/run.js';

const MIDCERT = resolve('bin/midcert');
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/;

describe('midcert human output (tables)', function () {
  this.timeout(120_000);
  let dir: string;
  const names = [1, 2, 3].map((i) => `mid-prod-datacenter-frankfurt-east-${i}.corp.example.com`);
  const midcert = (...args: string[]): ReturnType<typeof run> => run(MIDCERT, ['--data-dir', join(dir, 'data'), ...args], { cwd: dir, env: { ...process.env, FORCE_COLOR: '', NO_COLOR: '' } });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-tables-'));
    await runOk(MIDCERT, ['--data-dir', join(dir, 'data'), 'init'], { cwd: dir });
    for (const [i, name] of names.entries()) {
      const r = await midcert('agents', 'add', name, '--address', `mid-server-production-datacenter-frankfurt-east-${i + 1}.corp.example.com:7443`,
        '--mid-name', `MID_PROD_FRANKFURT_EAST_DATACENTER_0${i + 1}`, '--tag', 'production', '--tag', 'frankfurt', '--tag', 'linux-rhel9', '--cluster', 'frankfurt-east-cluster-01');
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const command of [['agents', 'list'], ['status']]) {
    it(`\`midcert ${command.join(' ')}\` with long names fits 80 columns, plain ASCII and no colour when piped`, async () => {
      const r = await midcert(...command);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.ok(lines.length > 4, r.stdout);
      for (const line of lines) assert.ok(displayWidth(line) <= 80, `${displayWidth(line)} columns: ${line}`);
      assert.match(lines[0]!, /^\+-+\+/);
      assert.doesNotMatch(r.stdout, ANSI);
      const cells = lines.filter((l) => l.startsWith('|')).map((l) => l.split('|')[command[0] === 'status' ? 2 : 1]!.trim()).join('');
      for (const name of names) assert.ok(cells.includes(name), `${name} is in the table (wrapped, not cut)`);
    });
  }
});
