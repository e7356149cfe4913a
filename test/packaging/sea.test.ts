/**
 * The single executables (packaging/build-sea.mjs) tested as an operator meets them: built from
 * the sources (or taken from $MIDCERT_SEA_DIR, e.g. dist/ after `make package`), then run in an
 * empty directory with `env -i PATH=/usr/bin:/bin HOME=<tmp>`. Where the machine allows a private
 * mount namespace (root, util-linux unshare), the run also hides every `node` executable and the
 * repo's node_modules, which proves the binaries need neither.
 *
 *   npx mocha --no-config --import=tsx --timeout 600000 test/packaging/sea.test.ts
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bundle, buildTarget, ROOT, SEA_FUSE, TARGETS, wrapAsCommonJs, type BuiltTarget } from '../../packaging/build-sea.mjs';
import { run, runOk, type RunResult } from '../helpers/run.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PREBUILT = process.env.MIDCERT_SEA_DIR ? resolve(process.env.MIDCERT_SEA_DIR) : undefined;
const CONTROLLER_ENTRY = join(ROOT, TARGETS.controller.entry);

/** Every `node` a PATH lookup or an absolute path could reach on this machine. */
function nodeExecutables(): string[] {
  const found = new Set<string>();
  for (const p of [process.execPath, '/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    if (existsSync(p)) found.add(realpathSync(p));
  }
  return [...found];
}

// Inside a fresh mount namespace: /dev/null over each node executable, an empty tmpfs over
// node_modules, then exec the program. Arguments: <node_modules> <node>... -- <program> <args>...
const HIDE_SCRIPT = [
  'nm=$1; shift',
  'while [ "$1" != "--" ]; do mount --bind /dev/null "$1" || exit 97; shift; done; shift',
  'mount -t tmpfs -o size=1m,mode=0555 none "$nm" || exit 97',
  'exec "$@"',
].join('\n');

/** Runs programs the way an operator's host would: an empty directory, a clean environment, and no Node.js. */
class Sandbox {
  private constructor(readonly home: string, readonly isolated: boolean) {}

  static async create(parent: string): Promise<Sandbox> {
    const home = await mkdtemp(join(parent, 'home-'));
    const probe = await run('unshare', ['--mount', '--', '/bin/sh', '-c', HIDE_SCRIPT, 'sh', join(ROOT, 'node_modules'), ...nodeExecutables(), '--', '/bin/true'])
      .catch(() => ({ code: 1 }) as RunResult);
    return new Sandbox(home, probe.code === 0);
  }

  /** file + args that run `program args` inside the sandbox (env -i PATH=/usr/bin:/bin HOME=<home>). */
  command(program: string, args: string[]): [string, string[]] {
    const envArgs = ['-i', 'PATH=/usr/bin:/bin', `HOME=${this.home}`, program, ...args];
    if (!this.isolated) return ['/usr/bin/env', envArgs];
    return ['unshare', ['--mount', '--', '/bin/sh', '-c', HIDE_SCRIPT, 'sh', join(ROOT, 'node_modules'), ...nodeExecutables(), '--', '/usr/bin/env', ...envArgs]];
  }

  run(program: string, args: string[], cwd: string): Promise<RunResult> {
    const [file, argv] = this.command(program, args);
    return run(file, argv, { cwd, timeoutMs: 120_000 });
  }

  async ok(program: string, args: string[], cwd: string): Promise<RunResult> {
    const result = await this.run(program, args, cwd);
    assert.equal(result.code, 0, `${program} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result;
  }

  spawn(program: string, args: string[], cwd: string): ChildProcess {
    const [file, argv] = this.command(program, args);
    return spawn(file, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  }
}

async function waitFor(check: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A throwaway two-level CA made with openssl alone (root → issuing intermediate). */
async function opensslCa(dir: string): Promise<{ rootPem: string; intPem: string; sign(csr: string, out: string, san: string): Promise<void> }> {
  const o = (args: string[]): Promise<RunResult> => runOk('openssl', args, { cwd: dir });
  await writeFile(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n');
  await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '30', '-subj', '/O=midcert test/CN=SEA Test Root',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await o(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/O=midcert test/CN=SEA Test Issuing CA']);
  await o(['x509', '-req', '-in', 'int.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'int.pem', '-days', '20', '-sha256', '-extfile', 'ca.ext']);
  return {
    rootPem: await readFile(join(dir, 'root.pem'), 'utf8'),
    intPem: await readFile(join(dir, 'int.pem'), 'utf8'),
    async sign(csr, out, san) {
      await writeFile(join(dir, 'leaf.ext'), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\nsubjectAltName=${san}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
      await o(['x509', '-req', '-in', csr, '-CA', 'int.pem', '-CAkey', 'int.key', '-CAcreateserial', '-out', out, '-days', '10', '-sha256', '-extfile', 'leaf.ext']);
    },
  };
}

describe('packaging: single executables (Node SEA)', function () {
  this.timeout(600_000);
  let tmp: string;
  let binDir: string;
  let sandbox: Sandbox;
  const built: BuiltTarget[] = [];

  /** A built (or prebuilt) binary; builds on first use. */
  async function binary(key: 'agent' | 'controller'): Promise<string> {
    const name = TARGETS[key].name;
    if (PREBUILT) {
      const p = join(PREBUILT, name);
      assert.ok(existsSync(p), `MIDCERT_SEA_DIR=${PREBUILT} has no ${name}`);
      return p;
    }
    const have = built.find((b) => b.target === key);
    if (have) return have.path;
    const b = await buildTarget(key, { outDir: binDir, workRoot: tmp });
    built.push(b);
    process.stdout.write(`      (built ${name}: ${(b.sizeBytes / 1048576).toFixed(1)} MiB in ${b.buildSeconds} s)\n`);
    return b.path;
  }

  async function emptyDir(label: string): Promise<string> {
    return mkdtemp(join(tmp, `${label}-`));
  }

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'midcert-sea-test-'));
    binDir = join(tmp, 'bin');
    await mkdir(binDir);
    sandbox = await Sandbox.create(tmp);
    if (!sandbox.isolated) process.stdout.write('      (no private mount namespace here: runs use env -i only; node stays reachable by absolute path)\n');
  });

  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  describe('the bundle', () => {
    it('holds only product code: no lab/, test/, scripts/ or bench/ files, and no SQLite in the agent', async function () {
      const b = await bundle(TARGETS.agent);
      const stray = b.ownFiles.filter((f) => /^(lab|test|scripts|bench)\//.test(f));
      assert.deepEqual(stray, []);
      assert.ok(b.ownFiles.includes('agent/cli/main.ts'));
      assert.equal(b.packages.has('better-sqlite3'), false);
      assert.deepEqual(b.usedNative, []);
    });

    it('refuses an entry that pulls in the simulated lab', async () => {
      await assert.rejects(bundle({ name: 'bad', entry: 'lab/mid/host.ts', allow: [] }), /outside the product .*lab\/mid\/host\.ts/);
    });

    it('wraps top-level await into a CommonJS main and rejects leftover module syntax', () => {
      const target = { name: 't', entry: 'x', allow: [] };
      const ok = wrapAsCommonJs('const x = await Promise.resolve(1);\nconsole.log(x);\n', target, '0');
      assert.match(ok.code, /^"use strict";/);
      assert.throws(() => wrapAsCommonJs('export const x = 1;\n', target, '0'), SyntaxError);
      assert.throws(() => wrapAsCommonJs('import fs from "node:fs";\n', target, '0'), SyntaxError);
      assert.throws(() => wrapAsCommonJs('const u = import.meta.resolve("x");\n', target, '0'), /not a valid CommonJS SEA main.*import\.meta/);
      assert.deepEqual(wrapAsCommonJs('const m = await import(process.argv[2]);\n', target, '0').leftovers, ['dynamic import()']);
      assert.deepEqual(ok.leftovers, []);
    });
  });

  describe('midcert-agent', () => {
    let agent: string;
    before(async () => {
      agent = await binary('agent');
    });

    it('is a copy of node with the SEA blob injected (fuse flipped) and the .proto files inside', async () => {
      const data = await readFile(agent);
      assert.ok(data.length > 50 * 1048576, `only ${data.length} bytes`);
      assert.ok(data.includes(`${SEA_FUSE}:1`), 'the SEA fuse is not flipped');
      const proto = await readFile(join(ROOT, 'proto', 'midcert', 'v1', 'agent.proto'));
      assert.ok(data.includes(proto), 'proto/midcert/v1/agent.proto is not embedded verbatim');
    });

    it('runs where there is no node and no node_modules', async function () {
      if (!sandbox.isolated) this.skip();
      const cwd = await emptyDir('nonode');
      const probe = await sandbox.run('/bin/sh', ['-c', 'node --version; /usr/bin/node --version; ls -A "$1" | wc -l', 'sh', join(ROOT, 'node_modules')], cwd);
      assert.doesNotMatch(probe.stdout, /^v\d+\./m, 'node still runs in the sandbox');
      assert.match(probe.stdout.trim(), /(^|\n)0$/, 'node_modules is still visible in the sandbox');
      assert.equal((await sandbox.ok(agent, ['--version'], cwd)).stdout.trim(), VERSION);
    });

    it('answers --version and --help in an empty directory with env -i', async () => {
      const cwd = await emptyDir('help');
      assert.equal((await sandbox.ok(agent, ['--version'], cwd)).stdout.trim(), VERSION);
      const help = (await sandbox.ok(agent, ['--help'], cwd)).stdout;
      for (const word of ['midcert-agent', 'csr', 'bundle', 'keystore', 'run', 'status', 'install', 'rollback', 'Exit codes']) assert.ok(help.includes(word), `--help lacks ${word}`);
      assert.deepEqual(await readdir(cwd), []);
      const bad = await sandbox.run(agent, ['no-such-command'], cwd);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^midcert-agent: error \[USAGE\]/);
    });

    it('end to end: csr → openssl CA → bundle build → bundle lint → keytool import → keystore show', async () => {
      const cwd = await emptyDir('e2e');
      const ca = await opensslCa(cwd);
      await writeFile(join(cwd, 'chain-root-first.pem'), ca.rootPem + ca.intPem);

      const csr = JSON.parse((await sandbox.ok(agent, ['csr', '--subject', 'CN=mid01,O=Acme,OU=ITOM', '--san', 'DNS:mid01.acme.example', '--key-out', 'mid01.key', '--csr-out', 'mid01.csr', '--json'], cwd)).stdout);
      assert.equal(csr.keyOut, 'mid01.key');
      assert.equal((await stat(join(cwd, 'mid01.key'))).mode & 0o777, 0o600);
      await runOk('openssl', ['req', '-in', 'mid01.csr', '-noout', '-verify'], { cwd });
      await ca.sign('mid01.csr', 'mid01.pem', 'DNS:mid01.acme.example');

      const built = JSON.parse((await sandbox.ok(agent, ['bundle', 'build', '--cert', 'mid01.pem', '--key', 'mid01.key', '--chain', 'chain-root-first.pem', '-o', 'bundle.pem', '--json'], cwd)).stdout);
      assert.equal(built.ok, true);
      assert.equal(built.chain.length, 3);
      const lint = JSON.parse((await sandbox.ok(agent, ['bundle', 'lint', 'bundle.pem', '--json'], cwd)).stdout);
      assert.equal(lint.ok, true, JSON.stringify(lint.findings));
      assert.deepEqual(lint.findings.filter((f: { severity: string }) => f.severity === 'error'), []);

      await runOk('openssl', ['pkcs12', '-export', '-in', 'bundle.pem', '-name', 'defaultsecuritykeypairhandle', '-out', 'mid01.p12', '-passout', 'pass:changeit'], { cwd });
      await runOk('keytool', ['-importkeystore', '-noprompt', '-srckeystore', 'mid01.p12', '-srcstoretype', 'PKCS12', '-srcstorepass', 'changeit',
        '-destkeystore', 'agent_keystore', '-deststoretype', 'JKS', '-deststorepass', 'changeit', '-destkeypass', 'changeit'], { cwd });

      const shown = JSON.parse((await sandbox.ok(agent, ['keystore', 'show', '--keystore', 'agent_keystore', '--json'], cwd)).stdout);
      assert.equal(shown.type, 'JKS');
      assert.equal(shown.entries.length, 1);
      assert.equal(shown.entries[0].alias, 'defaultsecuritykeypairhandle');
      assert.equal(shown.entries[0].chain.length, 3);
      assert.match(shown.entries[0].chain[0].subject, /CN=mid01/);
      assert.match(shown.entries[0].chain[2].subject, /SEA Test Root/);
    });

    it('runs the daemon on its Unix socket and `status --json` reaches it; SIGTERM stops it cleanly', async () => {
      const cwd = await emptyDir('daemon');
      await mkdir(join(cwd, 'mid', 'agent', 'security'), { recursive: true });
      await writeFile(join(cwd, 'agent.yaml'), [
        'mid:', `  home: ${join(cwd, 'mid')}`,
        'service:', '  manager: command', '  start: ["/bin/true"]', '  stop: ["/bin/true"]', '  status: ["/bin/true"]',
        'listen:', `  socket: ${join(cwd, 'agent.sock')}`,
        `stateDir: ${join(cwd, 'state')}`, '',
      ].join('\n'));
      const child = sandbox.spawn(agent, ['run', '--config', 'agent.yaml'], cwd);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      try {
        await waitFor(() => out.includes('midcert-agent serving') || child.exitCode !== null, 60_000, () => `daemon did not start: ${out}`);
        assert.ok(out.includes('midcert-agent serving'), out);
        const status = JSON.parse((await sandbox.ok(agent, ['status', '--config', 'agent.yaml', '--json'], cwd)).stdout);
        assert.equal(status.agent.version, VERSION);
        assert.equal(status.service.manager, 'command');
        assert.ok(status.host.cpuCores >= 1, 'host facts (systeminformation) missing');
      } finally {
        if (child.exitCode === null) child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, out);
      assert.match(out, /midcert-agent stopped/);
    });
  });

  describe('embedded native addon (better-sqlite3) through the controller store', () => {
    let probe: string;
    before(async () => {
      const b = await buildTarget({ name: 'store-probe', entry: 'test/packaging/fixtures/store-probe.ts', allow: ['test/packaging/fixtures/store-probe.ts'], checkVersion: false }, { outDir: binDir, workRoot: tmp });
      assert.deepEqual(b.nativeAddons, ['better-sqlite3']);
      assert.ok(b.assets.includes('native/better_sqlite3.node'));
      probe = b.path;
    });

    it('opens the SQLite store with no node_modules, extracting the addon once to a private cache', async () => {
      const cwd = await emptyDir('sqlite');
      const first = JSON.parse((await sandbox.ok(probe, ['data'], cwd)).stdout);
      assert.equal(first.ok, true);
      assert.equal(first.header, 'SQLite format 3');
      assert.ok(first.schema >= 1);
      const cache = join(sandbox.home, '.cache', 'midcert');
      assert.equal((await lstat(cache)).mode & 0o777, 0o700);
      const files = await readdir(cache);
      assert.equal(files.length, 1);
      assert.match(files[0]!, /^better_sqlite3-[0-9a-f]{16}\.node$/);
      const before = await stat(join(cache, files[0]!));

      await sandbox.ok(probe, ['data'], cwd);
      const again = await stat(join(cache, files[0]!));
      assert.equal(again.ino, before.ino, 'the addon was extracted again instead of reused');

      // A tampered cache file is replaced, not loaded.
      await chmod(join(cache, files[0]!), 0o700);
      await writeFile(join(cache, files[0]!), 'not an addon');
      await sandbox.ok(probe, ['data'], cwd);
      assert.ok((await stat(join(cache, files[0]!))).size > 1_000_000);
    });
  });

  describe('midcert (controller)', () => {
    let ctl: string;
    before(async function () {
      if (!existsSync(CONTROLLER_ENTRY) && !PREBUILT) {
        process.stdout.write(`      (${TARGETS.controller.entry} does not exist yet: controller binary not tested)\n`);
        this.skip();
      }
      ctl = await binary('controller');
    });

    it('answers --version, and init + agents list work on SQLite inside the binary', async () => {
      const cwd = await emptyDir('controller');
      assert.equal((await sandbox.ok(ctl, ['--version'], cwd)).stdout.trim(), VERSION);
      const init = JSON.parse((await sandbox.ok(ctl, ['--data-dir', 'data', 'init', '--json'], cwd)).stdout);
      assert.equal(init.ok, true);
      assert.ok(existsSync(join(cwd, 'data', 'midcert.db')));
      const list = JSON.parse((await sandbox.ok(ctl, ['--data-dir', 'data', 'agents', 'list', '--json'], cwd)).stdout);
      assert.deepEqual(list, { ok: true, agents: [] });
    });
  });

  describe('release tarball (packaging/release.sh)', () => {
    it('holds the binaries, unit, example config, docs and (when it exists) the Ansible collection, with SHA256SUMS', async function () {
      const bins = PREBUILT ?? binDir;
      await binary('agent');
      if (existsSync(CONTROLLER_ENTRY)) await binary('controller');
      const out = await emptyDir('release');
      const r = await runOk('bash', [join(ROOT, 'packaging', 'release.sh'), '--no-build', '--bin-dir', bins, '--out-dir', out], { timeoutMs: 300_000 });
      const tarball = r.stdout.trim();
      assert.equal(tarball, join(out, `midcert-${VERSION}-linux-x64.tar.gz`));
      const list = (await runOk('tar', ['-tzf', tarball])).stdout.split('\n').filter(Boolean);
      const top = `midcert-${VERSION}-linux-x64/`;
      for (const f of ['bin/midcert-agent', 'systemd/midcert-agent.service', 'etc/agent.example.yaml', 'docs/packaging.md', 'README.md', 'SHA256SUMS']) {
        assert.ok(list.includes(top + f), `${f} missing from ${list.join(' ')}`);
      }
      if (existsSync(CONTROLLER_ENTRY)) assert.ok(list.includes(`${top}bin/midcert`));
      if (existsSync(join(ROOT, 'ansible', 'ansible_collections', 'midcert', 'fleet', 'galaxy.yml'))) {
        assert.ok(list.some((f) => /^[^/]+\/ansible\/midcert-fleet-.*\.tar\.gz$/.test(f)), 'no built collection');
      }
      await runOk('tar', ['-xzf', tarball, '-C', out]);
      await runOk('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: join(out, top) });
    });
  });
});
