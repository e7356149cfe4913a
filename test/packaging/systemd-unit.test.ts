/**
 * packaging/midcert-agent.service: the hardening the issue asks for is there, and systemd itself
 * accepts the unit (systemd-analyze verify, and the offline security score) where systemd-analyze
 * exists. The unit cannot be started here (no systemd as PID 1 in the sandbox).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../helpers/run.js';

const UNIT = resolve('packaging/midcert-agent.service');
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

/** `Key=value` lines of the [Service] section (a key may repeat). */
function serviceSettings(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (section === 'Service' && eq > 0) out.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return out;
}

describe('packaging: midcert-agent.service', () => {
  let text: string;
  let settings: Array<[string, string]>;
  const get = (key: string): string[] => settings.filter(([k]) => k === key).map(([, v]) => v);

  before(async () => {
    text = await readFile(UNIT, 'utf8');
    settings = serviceSettings(text);
  });

  it('runs the agent as its own user with the packaged config path', () => {
    assert.deepEqual(get('User'), ['midcert']);
    assert.deepEqual(get('Group'), ['midcert']);
    assert.deepEqual(get('ExecStart'), ['/usr/local/bin/midcert-agent run --config /etc/midcert/agent.yaml']);
    assert.deepEqual(get('Restart'), ['on-failure']);
  });

  it('clears NODE_OPTIONS (a single executable still obeys it)', () => {
    assert.ok(get('Environment').includes('NODE_OPTIONS='), get('Environment').join(' | '));
  });

  it('is hardened: read-only system, no home, private tmp, no new privileges, no capabilities', () => {
    const expect: Record<string, string> = {
      ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', NoNewPrivileges: 'yes', CapabilityBoundingSet: '', AmbientCapabilities: '',
      RuntimeDirectory: 'midcert-agent', StateDirectory: 'midcert-agent', RestrictSUIDSGID: 'yes', PrivateDevices: 'yes',
    };
    for (const [key, value] of Object.entries(expect)) assert.deepEqual(get(key), [value], key);
    assert.deepEqual(get('MemoryDenyWriteExecute'), [], 'V8 needs W+X memory');
  });

  it('can write only the MID agent/ folder besides its own state, runtime and cache directories', () => {
    assert.deepEqual(get('ReadWritePaths'), ['-/opt/servicenow/mid/agent']);
    assert.deepEqual(get('ReadOnlyPaths'), []);
    assert.deepEqual(get('InaccessiblePaths'), []);
  });

  it('the example drop-in replaces the MID path', async () => {
    const dropIn = serviceSettings(await readFile(resolve('packaging/midcert-agent.service.d/mid-home.conf.example'), 'utf8'));
    assert.deepEqual(dropIn.filter(([k]) => k === 'ReadWritePaths').map(([, v]) => v), ['', '/srv/servicenow/mid/agent']);
  });

  describe('systemd-analyze', function () {
    let dir: string;
    before(async function () {
      if (!ANALYZE) this.skip();
      dir = await mkdtemp(join(tmpdir(), 'midcert-unit-'));
      // verify checks that ExecStart exists; point it at a program that does.
      await writeFile(join(dir, 'midcert-agent.service'), text.replace('ExecStart=/usr/local/bin/midcert-agent', 'ExecStart=/bin/true'));
    });
    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('verify reports nothing', async () => {
      const r = await run(ANALYZE!, ['verify', join(dir, 'midcert-agent.service')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim(), '');
    });

    it('the offline security exposure score is at most 2.0', async function () {
      const r = await run(ANALYZE!, ['security', '--offline=yes', '--no-pager', join(dir, 'midcert-agent.service')]);
      if (r.code !== 0 && /unrecognized option|Unknown option/i.test(r.stderr)) this.skip();
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout + r.stderr);
      assert.ok(m, r.stdout + r.stderr);
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
    });
  });
});
