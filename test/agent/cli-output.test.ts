import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../helpers/run.js';

const AGENT = resolve('bin/midcert-agent');
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/;

describe('midcert-agent human output (colour)', function () {
  this.timeout(60_000);
  let dir: string;
  const env = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => {
    const e = { ...process.env, ...extra };
    for (const [k, v] of Object.entries(extra)) if (v === undefined) delete e[k];
    return e;
  };
  const lint = (extra: NodeJS.ProcessEnv): ReturnType<typeof run> => run(AGENT, ['bundle', 'lint', join(dir, 'bad.pem')], { cwd: dir, env: env(extra) });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-color-'));
    await writeFile(join(dir, 'bad.pem'), 'not a bundle\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('prints no colour into a pipe', async () => {
    const r = await lint({ NO_COLOR: undefined, FORCE_COLOR: undefined });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /error\s+NOT_PEM: /);
    assert.doesNotMatch(r.stdout + r.stderr, ANSI);
  });

  it('colours findings when colour is forced, and never when NO_COLOR is set', async () => {
    assert.match((await lint({ NO_COLOR: undefined, FORCE_COLOR: '1' })).stdout, /\u001b\[31merror/);
    const off = await lint({ NO_COLOR: '1', FORCE_COLOR: '1' });
    assert.match(off.stdout, /error\s+NOT_PEM: /);
    assert.doesNotMatch(off.stdout + off.stderr, ANSI);
  });

  it('keeps --json free of colour even when forced', async () => {
    const r = await run(AGENT, ['bundle', 'lint', '--json', join(dir, 'bad.pem')], { cwd: dir, env: env({ FORCE_COLOR: '1' }) });
    assert.doesNotMatch(r.stdout, ANSI);
    assert.equal(JSON.parse(r.stdout).ok, false);
  });
});
