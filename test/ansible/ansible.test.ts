/**
 * The Ansible collection midcert.fleet (ansible/ansible_collections/midcert/fleet/).
 *
 * Real ansible-doc, ansible-galaxy and ansible-playbook (Debian ansible-core) run here. The
 * controller, however, is a FAKE: test/ansible/fake-midcert.py answers with canned JSON in the
 * shapes of docs/controller-cli.md and keeps its state in a temp file. It stands in for the
 * controller ONLY to isolate the modules' own logic (arguments, check mode, idempotence, diffs,
 * error codes); it proves nothing about the controller. A separate end-to-end test runs the same
 * playbooks against the real controller and the simulated lab.
 *
 * The role test deploys the agent into a temp "root" on this host (connection local, systemd not
 * touched) with the real `bin/midcert-agent` for the key, the CSR and the status, and the fake
 * controller (signing with openssl) for `agent-identity sign` and `agents add`.
 *
 * Everything runs with HOME, TMPDIR and ANSIBLE_LOCAL_TEMP/REMOTE_TEMP in a temp dir that is
 * removed at the end.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadAgentConfig } from '../../agent/config.js';
import { run, runOk, type RunResult } from '../helpers/run.js';

const ANSIBLE_DIR = resolve('ansible');
const COLLECTION_DIR = join(ANSIBLE_DIR, 'ansible_collections/midcert/fleet');
const PLAYBOOKS_DIR = join(ANSIBLE_DIR, 'playbooks');
const EXAMPLE_INVENTORY = join(ANSIBLE_DIR, 'inventory/example.yml');
const FAKE_SRC = resolve('test/ansible/fake-midcert.py');
const CALLBACKS_DIR = resolve('test/ansible/callback_plugins');
const AGENT_BIN = resolve('bin/midcert-agent');
const MODULES = ['midcert_info', 'midcert_certificate', 'midcert_rotation', 'midcert_ca_chain', 'midcert_preflight', 'midcert_agent'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

interface PlaybookRun extends RunResult {
  /** The result of the task with this name on this host (default: the first host that ran it). */
  task: (name: string, host?: string) => Json;
  stats: Json;
}

describe('Ansible collection midcert.fleet', function () {
  this.timeout(300_000);
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let fakeDir: string;
  let fakeBin: string;
  let playbookSeq = 0;
  /** module -> the top-level keys of every result it returned in this file's playbook runs. */
  const returnedKeys = new Map<string, Set<string>>();
  /** The Python that ansible-core itself runs on (the shebang of ansible-playbook). */
  let ansiblePython = 'python3';

  const fakeStatePath = (): string => join(fakeDir, 'state.json');

  async function resetFake(state: Json): Promise<void> {
    await writeFile(fakeStatePath(), JSON.stringify(state, null, 1));
    await writeFile(join(fakeDir, 'argv.log'), '');
  }
  async function fakeState(): Promise<Json> {
    return JSON.parse(await readFile(fakeStatePath(), 'utf8'));
  }
  async function fakeCalls(): Promise<string[][]> {
    const text = await readFile(join(fakeDir, 'argv.log'), 'utf8');
    return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as string[]);
  }
  const mutating = (calls: string[][]): string[][] =>
    calls.filter((c) => ['rotate', 'rotate-ca'].includes(c[0] ?? '') ? !c.includes('--dry-run') : c[0] === 'agents' && c[1] !== 'list');

  async function playbook(yaml: string, options: { args?: string[]; inventory?: string } = {}): Promise<PlaybookRun> {
    const file = join(dir, `play-${++playbookSeq}.yml`);
    await writeFile(file, yaml);
    const inventory = options.inventory ?? join(dir, 'inventory.ini');
    const res = await run('ansible-playbook', ['-i', inventory, file, ...(options.args ?? [])], { cwd: dir, env, timeoutMs: 240_000 });
    return withResults(res);
  }

  function withResults(res: RunResult): PlaybookRun {
    const start = res.stdout.indexOf('{');
    let doc: Json;
    try {
      doc = JSON.parse(res.stdout.slice(start));
    } catch {
      throw new Error(`ansible-playbook printed no JSON (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
    }
    // task name -> host -> result (the first time that host ran a task of that name)
    const results = new Map<string, Map<string, Json>>();
    for (const play of doc.plays ?? []) {
      for (const t of play.tasks ?? []) {
        // Role tasks are named "midcert.fleet.agent : <name>"; keep both names.
        const short = String(t.task.name).replace(/^.* : /, '');
        const action = String(t.task.action ?? '');
        if (action.startsWith('midcert.fleet.')) {
          const keys = returnedKeys.get(action) ?? new Set<string>();
          for (const result of Object.values(t.hosts ?? {}) as Json[]) {
            if (result.skipped || result.unreachable) continue;
            for (const k of Object.keys(result)) keys.add(k);
          }
          returnedKeys.set(action, keys);
        }
        for (const name of new Set([t.task.name, short])) {
          const byHost = results.get(name) ?? new Map<string, Json>();
          for (const [host, result] of Object.entries(t.hosts ?? {})) if (!byHost.has(host)) byHost.set(host, result);
          if (byHost.size > 0) results.set(name, byHost);
        }
      }
    }
    return {
      ...res,
      stats: doc.stats,
      task(name: string, host?: string): Json {
        const byHost = results.get(name);
        const found = byHost && (host === undefined ? [...byHost.values()][0] : byHost.get(host));
        if (found === undefined) throw new Error(`no result for task "${name}"${host ? ` on ${host}` : ''}; tasks: ${[...results.keys()].join(' | ')}\n${res.stderr}`);
        return found;
      },
    };
  }

  /** A play on localhost with the fake as the CLI for every midcert.fleet module. */
  const play = (tasks: string, extra = ''): string => `
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/midcert.fleet.midcert:
      midcert_bin: ${JSON.stringify(fakeBin)}
${extra}
  tasks:
${tasks}`;

  const fleetState = (): Json => ({
    instance: { url: 'https://acme.example', caChain: { sha256: 'ab'.repeat(32), subject: 'CN=Old Issuing CA', notAfter: '2030-01-01T00:00:00.000Z' } },
    agents: {
      mid01: { address: 'mid01.lab:7443', serverName: 'mid01', midName: 'mid01', tags: ['prod'], cluster: 'dc1', cert: { daysLeft: 12, sha256: '01'.repeat(32) } },
      mid02: { address: 'mid02.lab:7443', serverName: 'mid02', midName: 'mid02', tags: ['prod'], cluster: 'dc1', cert: { daysLeft: 20, sha256: '02'.repeat(32) } },
      mid03: { address: 'mid03.lab:7443', serverName: 'mid03', midName: 'mid03', tags: ['dev'], cluster: null, cert: { daysLeft: 200, sha256: '03'.repeat(32) } },
    },
    validityDays: 90,
    jobSeq: 0,
  });

  before(async function () {
    const probe = await run('sh', ['-c', 'command -v ansible-playbook && command -v ansible-doc && command -v ansible-galaxy && command -v openssl']);
    if (probe.code !== 0) {
      // CI installs ansible-core (.ci/run); a developer machine without it skips with this reason.
      this.skip();
    }
    const shebang = (await readFile(probe.stdout.split('\n')[0]!.trim(), 'utf8')).split('\n')[0]!;
    ansiblePython = /^#!\s*(\S*python[\d.]*)\s*$/.exec(shebang)?.[1] ?? 'python3';
    dir = await mkdtemp(join(tmpdir(), 'midcert-ansible-'));
    for (const d of ['home', 'tmp', 'tmp/local', 'tmp/remote', 'fake']) await mkdir(join(dir, d), { recursive: true });
    fakeDir = join(dir, 'fake');
    fakeBin = join(fakeDir, 'midcert');
    await copyFile(FAKE_SRC, fakeBin);
    await chmod(fakeBin, 0o755);
    await writeFile(join(dir, 'inventory.ini'), 'localhost ansible_connection=local\n');
    env = {
      ...process.env,
      HOME: join(dir, 'home'),
      TMPDIR: join(dir, 'tmp'),
      ANSIBLE_LOCAL_TEMP: join(dir, 'tmp/local'),
      ANSIBLE_REMOTE_TEMP: join(dir, 'tmp/remote'),
      ANSIBLE_COLLECTIONS_PATH: ANSIBLE_DIR,
      ANSIBLE_COLLECTIONS_SCAN_SYS_PATH: 'false',
      ANSIBLE_PYTHON_INTERPRETER: ansiblePython,
      ANSIBLE_PIPELINING: 'true',
      ANSIBLE_STDOUT_CALLBACK: 'midcert_test_json', // test/ansible/callback_plugins: ansible-core has no JSON callback
      ANSIBLE_CALLBACK_PLUGINS: CALLBACKS_DIR,
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_RETRY_FILES_ENABLED: 'false',
      ANSIBLE_LOCALHOST_WARNING: 'false',
      ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false',
      ANSIBLE_DEPRECATION_WARNINGS: 'false',
      ANSIBLE_GATHERING: 'explicit',
      ANSIBLE_CONFIG: join(dir, 'ansible.cfg'),
      PYTHONDONTWRITEBYTECODE: '1',
    };
    delete env.MIDCERT_BIN;
    delete env.MIDCERT_DATA_DIR;
    await writeFile(join(dir, 'ansible.cfg'), '[defaults]\n');
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('packaging and documentation', () => {
    it('ansible-doc lists and renders every module with its options, and the role from its argument specs', async () => {
      const list = await runOk('ansible-doc', ['-l', 'midcert.fleet'], { cwd: dir, env });
      for (const m of MODULES) assert.match(list.stdout, new RegExp(`midcert\\.fleet\\.${m}\\b`), list.stdout);

      const json = JSON.parse((await runOk('ansible-doc', ['--json', ...MODULES.map((m) => `midcert.fleet.${m}`)], { cwd: dir, env })).stdout);
      const expected: Record<string, string[]> = {
        midcert_info: ['agents', 'tag', 'sort', 'expiring_within_days'],
        midcert_certificate: ['name', 'state', 'min_days'],
        midcert_rotation: ['agents', 'tag', 'all', 'when_expiring_within', 'force', 'canary', 'batch', 'max_failures', 'concurrency'],
        midcert_ca_chain: ['chain', 'state'],
        midcert_preflight: ['agents', 'tag', 'fail_on_error'],
        midcert_agent: ['name', 'state', 'address', 'server_name', 'mid_name', 'tags', 'cluster'],
      };
      for (const m of MODULES) {
        const doc = json[`midcert.fleet.${m}`];
        assert.ok(doc, `ansible-doc --json has no ${m}`);
        const options = Object.keys(doc.doc.options).sort();
        assert.deepEqual(options, [...expected[m]!, 'midcert_bin', 'data_dir'].sort(), `${m} options`);
        assert.ok(doc.examples.trim().length > 0, `${m} EXAMPLES`);
        assert.ok(Object.keys(doc.return).length > 0, `${m} RETURN`);
        assert.equal(doc.doc.attributes.check_mode.support, 'full', `${m} check_mode`);
      }
      // The rendered text (what an operator reads), all modules in one call.
      const text = (await runOk('ansible-doc', MODULES.map((m) => `midcert.fleet.${m}`), { cwd: dir, env })).stdout;
      for (const m of MODULES) {
        const start = text.indexOf(`> MIDCERT.FLEET.${m.toUpperCase()} `);
        assert.ok(start >= 0, `ansible-doc renders ${m}`);
        const next = text.indexOf('> MIDCERT.FLEET.', start + 1);
        const page = text.slice(start, next < 0 ? undefined : next);
        for (const o of expected[m]!) assert.match(page, new RegExp(`\\n[-=] ${o}\\n`), `${m} renders ${o}`);
        assert.match(page, /EXAMPLES:/);
        assert.match(page, /RETURN VALUES:/);
      }

      const role = await runOk('ansible-doc', ['-t', 'role', 'midcert.fleet.agent'], { cwd: dir, env });
      for (const v of ['midcert_agent_binary_src', 'midcert_agent_mid_home', 'midcert_agent_service_manager', 'midcert_agent_listen_address', 'midcert_agent_access_operators', 'midcert_controller_host']) {
        assert.match(role.stdout, new RegExp(v), `role doc names ${v}`);
      }
    });

    it('documents exactly the options each module accepts (names, types, defaults, choices, aliases)', async () => {
      const script = `
import importlib, json, sys, yaml
sys.path.insert(0, ${JSON.stringify(ANSIBLE_DIR)})
import ansible.module_utils.basic as basic
class Captured(Exception):
    pass
seen = {}
class Capture(object):
    def __init__(self, argument_spec, **kwargs):
        seen['spec'] = argument_spec
        raise Captured()
basic.AnsibleModule = Capture
from ansible_collections.midcert.fleet.plugins.doc_fragments.cli import ModuleDocFragment
fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
problems = []
for name in ${JSON.stringify(MODULES)}:
    mod = importlib.import_module('ansible_collections.midcert.fleet.plugins.modules.' + name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    yaml.safe_load(mod.RETURN)
    if doc['module'] != name:
        problems.append('%s: module: %s' % (name, doc['module']))
    options = dict(fragment)
    options.update(doc.get('options') or {})
    try:
        mod.main()
    except Captured:
        pass
    spec = seen.pop('spec')
    if sorted(spec) != sorted(options):
        problems.append('%s: spec %s != doc %s' % (name, sorted(spec), sorted(options)))
        continue
    for key, s in spec.items():
        d = options[key]
        for attr, fallback in (('type', 'str'), ('default', None), ('choices', None), ('aliases', None), ('elements', None), ('required', False)):
            if s.get(attr, fallback) != d.get(attr, fallback):
                problems.append('%s.%s: %s spec=%r doc=%r' % (name, key, attr, s.get(attr, fallback), d.get(attr, fallback)))
print(json.dumps(problems))
`;
      const res = await runOk(ansiblePython, ['-c', script], { cwd: dir, env });
      assert.deepEqual(JSON.parse(res.stdout), []);
    });

    it('ansible-galaxy collection build makes an installable artifact', async () => {
      const out = join(dir, 'build');
      await mkdir(out);
      const res = await runOk('ansible-galaxy', ['collection', 'build', COLLECTION_DIR, '--output-path', out], { cwd: dir, env });
      assert.match(res.stdout, /Created collection for midcert\.fleet/);
      const tarball = join(out, 'midcert-fleet-1.0.0.tar.gz');
      const listing = (await runOk('tar', ['tzf', tarball])).stdout.split('\n');
      for (const f of [
        'MANIFEST.json', 'meta/runtime.yml', 'CHANGELOG.rst', 'changelogs/changelog.yaml', 'changelogs/config.yaml',
        'plugins/module_utils/midcert_cli.py', 'plugins/doc_fragments/cli.py',
        ...MODULES.map((m) => `plugins/modules/${m}.py`),
        'roles/agent/tasks/main.yml', 'roles/agent/meta/argument_specs.yml', 'roles/agent/templates/midcert-agent.service.j2',
      ]) {
        assert.ok(listing.includes(f), `${f} in the artifact`);
      }
      assert.ok(!listing.some((f) => f.includes('__pycache__') || f.startsWith('tests/output')), 'no build debris');
      const manifest = JSON.parse((await runOk('tar', ['xzOf', tarball, 'MANIFEST.json'])).stdout);
      assert.equal(manifest.collection_info.namespace, 'midcert');
      assert.equal(manifest.collection_info.name, 'fleet');
      assert.equal(manifest.collection_info.version, '1.0.0');
      assert.ok(manifest.collection_info.repository, 'galaxy.yml repository (required by the galaxy schema)');
      // The artifact's runtime.yml (not just the source tree's) requires a supported ansible-core.
      const runtime = (await runOk('tar', ['xzOf', tarball, 'meta/runtime.yml'])).stdout;
      assert.match(runtime, /^requires_ansible: '>=2\.14\.0'$/m);
      assert.match((await runOk('tar', ['xzOf', tarball, 'CHANGELOG.rst'])).stdout, /^v1\.0\.0\n======$/m, 'CHANGELOG.rst has the 1.0.0 release');
      // And it installs.
      const installed = join(dir, 'installed');
      await runOk('ansible-galaxy', ['collection', 'install', tarball, '-p', installed], { cwd: dir, env });
      await stat(join(installed, 'ansible_collections/midcert/fleet/plugins/modules/midcert_rotation.py'));
    });

    it('the example playbooks pass --syntax-check', async () => {
      const inventory = EXAMPLE_INVENTORY;
      const playbooks = ['fleet-renewal.yml', 'ca-rotation.yml', 'onboard-mid.yml'].map((pb) => join(PLAYBOOKS_DIR, pb));
      const res = await run('ansible-playbook', ['--syntax-check', '-i', inventory, ...playbooks], { cwd: dir, env: { ...env, ANSIBLE_STDOUT_CALLBACK: 'default' } });
      assert.equal(res.code, 0, `${res.stdout}${res.stderr}`);
      for (const pb of playbooks) assert.ok(res.stdout.includes(`playbook: ${pb}`), `checked ${pb}`);
    });

    it('ansible-lint --profile production passes on the collection, the role and the playbooks', async function () {
      if ((await run('sh', ['-c', 'command -v ansible-lint'])).code !== 0) assert.fail('ansible-lint is not installed (Debian package ansible-lint; make deps)');
      const lintEnv: NodeJS.ProcessEnv = { ...env, NO_COLOR: '1', ANSIBLE_NOCOLOR: '1' };
      for (const k of ['ANSIBLE_STDOUT_CALLBACK', 'ANSIBLE_CALLBACK_PLUGINS', 'ANSIBLE_CONFIG']) delete lintEnv[k];
      const lint = (collectionsPath: string): Promise<RunResult> =>
        run('ansible-lint', ['--profile', 'production'], { cwd: ANSIBLE_DIR, env: { ...lintEnv, ANSIBLE_COLLECTIONS_PATH: collectionsPath }, timeoutMs: 120_000 });
      // As the platform team runs it (ANSIBLE_COLLECTIONS_PATH=$PWD inside ansible/), and with a
      // trailing slash: ansible-compat 3.x (Debian 12) installs its collection finder with the
      // *parent* of ANSIBLE_COLLECTIONS_PATH, so only then does ansible-lint resolve the modules and
      // check every task's arguments against their argument specs.
      const [plain, resolved] = await Promise.all([lint(ANSIBLE_DIR), lint(`${ANSIBLE_DIR}/`)]);
      for (const res of [plain, resolved]) {
        const out = `${res.stdout}${res.stderr}`;
        assert.equal(res.code, 0, out);
        assert.match(out, /Passed with production profile: 0 failure\(s\), 0 warning\(s\)/, out);
        assert.doesNotMatch(out, /syntax-check/, out);
      }
      assert.doesNotMatch(`${resolved.stdout}${resolved.stderr}`, /WARNING/, 'with the collection resolved, ansible-lint warns about nothing');
    });

    it('changelogs/ is in antsibull-changelog format and its latest release is the galaxy.yml version', async () => {
      const script = `
import json, os, sys, yaml
root = ${JSON.stringify(COLLECTION_DIR)}
load = lambda p: yaml.safe_load(open(os.path.join(root, p)))
galaxy = load('galaxy.yml')
config = load('changelogs/config.yaml')
changelog = load('changelogs/changelog.yaml')
problems = []
sections = set(s[0] for s in config['sections']) | {config['prelude_section_name'], config['trivial_section_name']}
notesdir = os.path.join(root, 'changelogs', config['notesdir'])
for f in sorted(os.listdir(notesdir)):
    if not f.endswith(('.yml', '.yaml')):
        continue
    frag = yaml.safe_load(open(os.path.join(notesdir, f)))
    if not isinstance(frag, dict):
        problems.append('%s: not a mapping' % f)
        continue
    for k, v in frag.items():
        if k not in sections:
            problems.append('%s: unknown section %s' % (f, k))
        elif k == config['prelude_section_name']:
            if not isinstance(v, str):
                problems.append('%s: %s must be a string' % (f, k))
        elif not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            problems.append('%s: %s must be a list of strings' % (f, k))
releases = changelog['releases']
versions = sorted(releases, key=lambda v: tuple(int(x) for x in v.split('.')))
if versions[-1] != galaxy['version']:
    problems.append('latest changelog release %s != galaxy.yml version %s' % (versions[-1], galaxy['version']))
for v, r in releases.items():
    for f in r.get('fragments', []):
        if config.get('keep_fragments') and not os.path.exists(os.path.join(notesdir, f)):
            problems.append('%s: fragment %s missing' % (v, f))
modules = set(m['name'] for r in releases.values() for m in r.get('modules', []))
for f in os.listdir(os.path.join(root, 'plugins/modules')):
    if f.endswith('.py') and f[:-3] not in modules:
        problems.append('module %s is in no release' % f[:-3])
roles = set(o['name'] for r in releases.values() for o in (r.get('objects') or {}).get('role', []))
for d in os.listdir(os.path.join(root, 'roles')):
    if d not in roles:
        problems.append('role %s is in no release' % d)
rst = open(os.path.join(root, config['changelog_filename_template'].replace('../', ''))).read()
for v in versions:
    if ('\\nv%s\\n' % v) not in rst:
        problems.append('CHANGELOG.rst has no section v%s' % v)
print(json.dumps({'problems': problems, 'version': galaxy['version'], 'versions': versions}))
`;
      const res = JSON.parse((await runOk(ansiblePython, ['-c', script], { cwd: dir, env })).stdout);
      assert.deepEqual(res.problems, []);
      assert.equal(res.version, '1.0.0');
    });

    describe('ansible-test sanity, offline (the tests that need no container or pip download)', () => {
      // A copy outside git, so tests/output and caches land in the temp dir, never in the tree.
      let copy: string;
      let pyVersion: string;
      before(async () => {
        copy = join(dir, 'sanity/ansible_collections/midcert/fleet');
        await cp(COLLECTION_DIR, copy, { recursive: true, filter: (src) => !src.includes('__pycache__') && !src.includes('tests/output') });
        pyVersion = (await runOk(ansiblePython, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'])).stdout.trim();
      });

      it('the code-smell and compile tests pass (ansible-test sanity --local)', async () => {
        const tests = [
          'action-plugin-docs', 'compile', 'empty-init', 'future-import-boilerplate', 'ignores', 'line-endings', 'metaclass-boilerplate',
          'no-assert', 'no-basestring', 'no-dict-iteritems', 'no-dict-iterkeys', 'no-dict-itervalues', 'no-get-exception',
          'no-illegal-filenames', 'no-main-display', 'no-smart-quotes', 'no-unicode-literals', 'replace-urlopen', 'shebang',
          'symlinks', 'use-argspec-type-path', 'use-compat-six',
        ];
        const res = await run('ansible-test', ['sanity', '--local', '--python', pyVersion, ...tests.flatMap((t) => ['--test', t])], { cwd: copy, env, timeoutMs: 120_000 });
        assert.equal(res.code, 0, `${res.stdout}${res.stderr}`);
        for (const t of tests) assert.match(res.stdout, new RegExp(`Running sanity test "${t}"`), `ran ${t}`);
      });

      it('validate-modules (ansible-test\'s validator with --arg-spec) finds only what tests/sanity/ignore-X.Y.txt lists', async function () {
        const probe = await run(ansiblePython, ['-c', 'import os, ansible_test, voluptuous, ansible.release as r; print(os.path.dirname(ansible_test.__file__)); print(".".join(r.__version__.split(".")[:2]))']);
        if (probe.code !== 0) assert.fail(`validate-modules needs ansible-test and python3-voluptuous (make deps): ${probe.stderr}`);
        const [testRoot, coreVersion] = probe.stdout.trim().split('\n') as [string, string];
        const validate = join(testRoot, '_util/controller/sanity/validate-modules/validate.py');
        const modules = MODULES.map((m) => `plugins/modules/${m}.py`);
        const res = await run(ansiblePython, [validate, '--format', 'json', '--arg-spec', '--collection', 'ansible_collections/midcert/fleet', '--collection-version', '1.0.0', ...modules], {
          cwd: copy, env: { ...env, ANSIBLE_COLLECTIONS_PATH: join(dir, 'sanity') },
        });
        assert.ok([0, 3].includes(res.code) && res.stderr.trim() === '', `validate.py exited ${res.code}: ${res.stderr}`);
        const found: string[] = [];
        for (const [path, r] of Object.entries(JSON.parse(res.stdout) as Record<string, Json>)) {
          for (const e of [...r.errors, ...r.warnings]) found.push(`${path} validate-modules:${e.code}`);
          for (const t of [...r.traces, ...r.warning_traces]) found.push(`${path} trace:${JSON.stringify(t)}`);
        }
        const ignores = (await readFile(join(COLLECTION_DIR, `tests/sanity/ignore-${coreVersion}.txt`), 'utf8'))
          .split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean);
        // Only the GPLv3 header check (the collection is Apache-2.0), and every ignore is still needed.
        assert.deepEqual([...new Set(found)].sort(), [...ignores].sort());
        assert.ok(ignores.every((l) => l.endsWith(' validate-modules:missing-gplv3-license')), ignores.join('\n'));
      });
    });
  });

  describe('modules against the fake controller CLI', () => {
    it('midcert_certificate: check mode changes nothing, a real run rotates, the second run is changed=false', async () => {
      await resetFake(fleetState());
      const before = await readFile(fakeStatePath(), 'utf8');
      const pb = play(`
    - name: ensure
      midcert.fleet.midcert_certificate:
        name: mid01
        min_days: 30
      register: r`);

      const check = await playbook(pb, { args: ['--check', '--diff'] });
      assert.equal(check.code, 0, check.stderr);
      const c = check.task('ensure');
      assert.equal(c.changed, true);
      assert.equal(c.rotated, false);
      assert.equal(c.reason, 'expiring');
      assert.match(c.msg, /^would rotate mid01: 12 days left, fewer than 30/);
      assert.equal(c.diff.before.sha256, '01'.repeat(32));
      assert.equal(await readFile(fakeStatePath(), 'utf8'), before, 'check mode left the controller state alone');
      assert.deepEqual(await fakeCalls(), [['status', '--agent', 'mid01', '--json']]);

      await writeFile(join(fakeDir, 'argv.log'), '');
      const real = await playbook(pb, { args: ['--diff'] });
      assert.equal(real.code, 0, real.stderr);
      const r = real.task('ensure');
      assert.equal(r.changed, true);
      assert.equal(r.rotated, true);
      assert.equal(r.days_left_before, 12);
      assert.equal(r.days_left, 90);
      assert.equal(r.not_after, '2027-02-28T12:00:00.000Z');
      assert.equal(r.previous_sha256, '01'.repeat(32));
      assert.equal(r.new_sha256, r.certificate.sha256);
      assert.equal(r.job_id, 'j-1');
      assert.deepEqual(r.diff.after, { sha256: r.new_sha256, not_after: r.not_after, days_left: 90 });
      assert.deepEqual(mutating(await fakeCalls()), [['rotate', '--agent', 'mid01', '--force', '--json']]);
      assert.equal((await fakeState()).agents.mid01.cert.daysLeft, 90);

      await writeFile(join(fakeDir, 'argv.log'), '');
      const again = await playbook(pb);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.task('ensure').changed, false);
      assert.equal(again.task('ensure').reason, 'valid');
      assert.equal(again.stats.localhost.changed, 0);
      assert.deepEqual(mutating(await fakeCalls()), []);
    });

    it('midcert_certificate: state=rotated always rotates; a failed rotation carries the error code and step', async () => {
      const state = fleetState();
      state.failRotate = { mid02: { code: 'HEALTH_CHECK_FAILED', message: 'the MID did not come back Up within 120 s', step: 'verify' } };
      await resetFake(state);
      const res = await playbook(play(`
    - name: valid enough
      midcert.fleet.midcert_certificate: {name: mid03, min_days: 30}
    - name: forced
      midcert.fleet.midcert_certificate: {name: mid03, state: rotated}
    - name: forced in check mode
      midcert.fleet.midcert_certificate: {name: mid03, state: rotated}
      check_mode: true
    - name: failing
      midcert.fleet.midcert_certificate: {name: mid02, min_days: 30}
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.task('valid enough').changed, false);
      assert.equal(res.task('forced').changed, true);
      assert.equal(res.task('forced').reason, 'forced');
      assert.equal(res.task('forced in check mode').changed, true);
      assert.match(res.task('forced in check mode').msg, /would rotate mid03: a new key was requested/);
      const failed = res.task('failing');
      assert.equal(failed.failed, true);
      assert.equal(failed.error_code, 'HEALTH_CHECK_FAILED');
      assert.equal(failed.failed_step, 'verify');
      assert.match(failed.msg, /rotating mid02 failed: the MID did not come back Up within 120 s/);
      const rotations = mutating(await fakeCalls());
      assert.deepEqual(rotations, [['rotate', '--agent', 'mid03', '--force', '--json'], ['rotate', '--agent', 'mid02', '--force', '--json']]);
    });

    // Issue 16 item 4: after a controller kill the resumed job renews the MID and the new job skips it.
    it('midcert_certificate: a MID the resumed job just renewed counts as rotated (changed), not as a failure', async () => {
      const state = fleetState();
      state.renewedByResumedJob = { mid01: 'ab'.repeat(32) };
      await resetFake(state);
      const res = await playbook(play(`
    - name: ensure
      midcert.fleet.midcert_certificate: {name: mid01, min_days: 30}`));
      assert.equal(res.code, 0, res.stderr);
      const t = res.task('ensure');
      assert.equal(t.changed, true);
      assert.equal(t.rotated, true);
      assert.equal(t.new_sha256, 'ab'.repeat(32));
      assert.match(t.msg, /rotated mid01 by the resumed job \(already-renewed/);
    });

    it('CLI failures fail the task with the controller error code: JSON error, stderr line, unknown agent, missing CLI', async () => {
      await resetFake(fleetState());
      const res = await playbook(play(`
    - name: unreachable (JSON error document, exit 5)
      midcert.fleet.midcert_info:
        data_dir: /srv/midcert-data
      environment:
        FAKE_MIDCERT_FAIL: '{"status": {"rc": 5, "code": "INSTANCE_UNAVAILABLE", "message": "the instance answered 503 after 3 tries"}}'
      ignore_errors: true
    - name: stderr line only
      midcert.fleet.midcert_certificate: {name: mid01}
      environment:
        FAKE_MIDCERT_FAIL: '{"status": {"rc": 4, "code": "STORE_UNAVAILABLE", "message": "cannot open the database", "json": false}}'
      ignore_errors: true
    - name: unknown agent
      midcert.fleet.midcert_certificate: {name: mid99}
      ignore_errors: true
    - name: no CLI
      midcert.fleet.midcert_info:
        midcert_bin: /nonexistent/midcert
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stderr);
      const a = res.task('unreachable (JSON error document, exit 5)');
      assert.equal(a.failed, true);
      assert.equal(a.error_code, 'INSTANCE_UNAVAILABLE');
      assert.equal(a.msg, 'the instance answered 503 after 3 tries');
      assert.equal(a.rc, 5);
      assert.match(a.exit_meaning, /unreachable/);
      assert.deepEqual(a.cmd, [fakeBin, '--data-dir', '/srv/midcert-data', 'status', '--json']);
      const b = res.task('stderr line only');
      assert.equal(b.error_code, 'STORE_UNAVAILABLE');
      assert.equal(b.msg, 'cannot open the database');
      assert.equal(b.rc, 4);
      const c = res.task('unknown agent');
      assert.equal(c.error_code, 'AGENT_NOT_FOUND');
      assert.match(c.msg, /mid99/);
      const d = res.task('no CLI');
      assert.equal(d.error_code, 'MIDCERT_NOT_FOUND');
      assert.match(d.msg, /\/nonexistent\/midcert/);
      assert.deepEqual(mutating(await fakeCalls()), []);
    });

    it('midcert_rotation: check mode plans with --dry-run, a real run rotates the expiring MIDs, the second run is changed=false', async () => {
      await resetFake(fleetState());
      const before = await readFile(fakeStatePath(), 'utf8');
      const pb = play(`
    - name: renew
      midcert.fleet.midcert_rotation:
        all: true
        when_expiring_within: 30d
        canary: 1
        batch: 10
        max_failures: 1
        concurrency: 2`);

      const check = await playbook(pb, { args: ['--check'] });
      assert.equal(check.code, 0, check.stderr);
      const c = check.task('renew');
      assert.equal(c.changed, true);
      assert.equal(c.dry_run, true);
      assert.deepEqual(c.plan.waves, [['mid01'], ['mid02']]);
      assert.deepEqual(c.plan.skipped, [{ name: 'mid03', reason: 'not-expiring' }]);
      assert.deepEqual(c.planned, ['mid01', 'mid02']);
      assert.deepEqual(c.rotated, []);
      assert.match(c.msg, /would rotate 2 MID\(s\) in 2 wave\(s\): mid01, mid02/);
      assert.equal(await readFile(fakeStatePath(), 'utf8'), before, 'check mode left the controller state alone');
      assert.deepEqual(await fakeCalls(), [['rotate', '--all', '--when-expiring-within', '30d', '--canary', '1', '--batch', '10', '--max-failures', '1', '--concurrency', '2', '--dry-run', '--json']]);

      const real = await playbook(pb);
      assert.equal(real.code, 0, real.stderr);
      const r = real.task('renew');
      assert.equal(r.changed, true);
      assert.deepEqual(r.rotated, ['mid01', 'mid02']);
      assert.deepEqual(r.failed_agents, []);
      assert.deepEqual(r.summary, { succeeded: 2, failed: 0, skipped: 1 });
      const after = await fakeState();
      assert.deepEqual([after.agents.mid01.cert.daysLeft, after.agents.mid02.cert.daysLeft, after.agents.mid03.cert.daysLeft], [90, 90, 200]);

      const again = await playbook(pb);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.task('renew').changed, false);
      assert.match(again.task('renew').msg, /nothing to rotate \(3 MID\(s\) skipped\)/);
    });

    it('midcert_rotation: fails when a MID failed, with every result and the first error code', async () => {
      const state = fleetState();
      state.failRotate = { mid01: { code: 'SCRIPT_FAILED', message: 'manage-certificates exited 1', step: 'import' } };
      await resetFake(state);
      const res = await playbook(play(`
    - name: renew prod
      midcert.fleet.midcert_rotation: {tag: prod, force: true, max_failures: 1}
      ignore_errors: true
    - name: two selectors
      midcert.fleet.midcert_rotation: {tag: prod, all: true}
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stderr);
      const r = res.task('renew prod');
      assert.equal(r.failed, true);
      assert.equal(r.error_code, 'SCRIPT_FAILED');
      assert.match(r.msg, /1 of 2 MID\(s\) failed to rotate: mid01 \[SCRIPT_FAILED\] manage-certificates exited 1 \(step import\)/);
      assert.match(r.msg, /stopped early/);
      assert.deepEqual(r.failed_agents, ['mid01']);
      assert.deepEqual(r.results.map((x: Json) => [x.name, x.state]), [['mid01', 'failed'], ['mid02', 'skipped']]);
      assert.equal(r.stopped_early, true);
      assert.equal(r.changed, false);
      const u = res.task('two selectors');
      assert.equal(u.error_code, 'USAGE');
      assert.deepEqual(mutating(await fakeCalls()), [['rotate', '--tag', 'prod', '--force', '--max-failures', '1', '--json']]);
    });

    it('midcert_info and midcert_preflight are read-only; preflight fails only with fail_on_error', async () => {
      const state = fleetState();
      state.agents.mid03.reachable = false;
      state.preflight = {
        agents: { mid02: [{ name: 'clock', ok: false, severity: 'error', code: 'CLOCK_SKEW', message: "mid02's clock differs by 412 s" }] },
      };
      await resetFake(state);
      const before = await readFile(fakeStatePath(), 'utf8');
      const res = await playbook(play(`
    - name: fleet
      midcert.fleet.midcert_info: {sort: days, expiring_within_days: 30}
    - name: one tag in check mode
      midcert.fleet.midcert_info: {tag: dev}
      check_mode: true
    - name: preflight report
      midcert.fleet.midcert_preflight: {}
    - name: preflight strict
      midcert.fleet.midcert_preflight: {agents: [mid01, mid02], fail_on_error: true}
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stdout + res.stderr);
      const fleet = res.task('fleet');
      assert.equal(fleet.changed, false);
      assert.equal(fleet.count, 3);
      assert.deepEqual(fleet.expiring, ['mid01', 'mid02']);
      assert.deepEqual(fleet.unreachable_agents, ['mid03']);
      assert.equal(fleet.instance.caChain.sha256, 'ab'.repeat(32));
      assert.deepEqual(res.task('one tag in check mode').agents.map((a: Json) => a.name), ['mid03']);
      const report = res.task('preflight report');
      assert.equal(report.changed, false);
      assert.ok(!report.failed);
      assert.equal(report.ok, false);
      assert.equal(report.error_count, 1);
      assert.deepEqual(report.failed_checks.map((c: Json) => [c.scope, c.code]), [['mid02', 'CLOCK_SKEW']]);
      const strict = res.task('preflight strict');
      assert.equal(strict.failed, true);
      assert.equal(strict.error_code, 'CLOCK_SKEW');
      assert.match(strict.msg, /preflight failed: mid02 clock: \[CLOCK_SKEW\]/);
      assert.equal(await readFile(fakeStatePath(), 'utf8'), before);
      assert.deepEqual((await fakeCalls()).map((c) => c[0]), ['status', 'status', 'preflight', 'preflight']);
    });

    it('midcert_agent: register, update and remove are idempotent, with before/after diffs and check mode', async () => {
      const state = fleetState();
      await resetFake(state);
      const agent = (extra: string): string => `
      midcert.fleet.midcert_agent:
        name: mid04
        address: mid04.lab:7443
        mid_name: MID 04
        tags: [prod, dc2]
        cluster: dc2${extra}`;
      const res = await playbook(play(`
    - name: add in check mode
      ${agent('').trim()}
      check_mode: true
      diff: true
    - name: add
      ${agent('').trim()}
      diff: true
    - name: add again, tags in another order
      midcert.fleet.midcert_agent: {name: mid04, address: mid04.lab:7443, tags: [dc2, prod, prod]}
    - name: move
      midcert.fleet.midcert_agent: {name: mid04, address: mid04-new.lab:7443}
      diff: true
    - name: update refused by a controller that cannot update in place
      midcert.fleet.midcert_agent: {name: mid04, address: mid04-other.lab:7443}
      environment: {FAKE_MIDCERT_NO_UPSERT: "1"}
      ignore_errors: true
    - name: remove in check mode
      midcert.fleet.midcert_agent: {name: mid04, state: absent}
      check_mode: true
    - name: remove
      midcert.fleet.midcert_agent: {name: mid04, state: absent}
      diff: true
    - name: remove again
      midcert.fleet.midcert_agent: {name: mid04, state: absent}
    - name: register without an address
      midcert.fleet.midcert_agent: {name: mid05}
      ignore_errors: true
    - name: bad address
      midcert.fleet.midcert_agent: {name: mid05, address: "no port"}
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stderr);
      const checkAdd = res.task('add in check mode');
      assert.equal(checkAdd.changed, true);
      assert.match(checkAdd.msg, /would register agent mid04/);
      assert.equal((Array.isArray(checkAdd.diff) ? checkAdd.diff[0] : checkAdd.diff).after.address, 'mid04.lab:7443');
      const add = res.task('add');
      assert.equal(add.changed, true);
      const addDiff = Array.isArray(add.diff) ? add.diff[0] : add.diff;
      assert.deepEqual(addDiff.before, {});
      assert.deepEqual(addDiff.after, { name: 'mid04', address: 'mid04.lab:7443', serverName: 'mid04', midName: 'MID 04', tags: ['dc2', 'prod'], cluster: 'dc2' });
      assert.equal(res.task('add again, tags in another order').changed, false);
      const move = res.task('move');
      assert.equal(move.changed, true);
      assert.deepEqual(move.differences, ['address']);
      const moveDiff = Array.isArray(move.diff) ? move.diff[0] : move.diff;
      assert.equal(moveDiff.before.address, 'mid04.lab:7443');
      assert.equal(moveDiff.after.address, 'mid04-new.lab:7443');
      assert.deepEqual(moveDiff.after.tags, ['dc2', 'prod'], 'fields not given keep their value');
      const refused = res.task('update refused by a controller that cannot update in place');
      assert.equal(refused.error_code, 'AGENT_EXISTS');
      assert.match(refused.msg, /remove it \(state: absent\) and register it again to change address/);
      assert.equal(res.task('remove in check mode').changed, true);
      assert.equal(res.task('remove').changed, true);
      assert.equal(res.task('remove again').changed, false);
      assert.equal(res.task('register without an address').error_code, 'USAGE');
      assert.equal(res.task('bad address').error_code, 'USAGE');
      assert.equal(res.task('bad address').rc, 2);
      assert.deepEqual(mutating(await fakeCalls()), [
        ['agents', 'add', 'mid04', '--address', 'mid04.lab:7443', '--server-name', 'mid04', '--mid-name', 'MID 04', '--tag', 'dc2', '--tag', 'prod', '--cluster', 'dc2', '--json'],
        ['agents', 'add', 'mid04', '--address', 'mid04-new.lab:7443', '--server-name', 'mid04', '--mid-name', 'MID 04', '--tag', 'dc2', '--tag', 'prod', '--cluster', 'dc2', '--json'],
        ['agents', 'add', 'mid04', '--address', 'mid04-other.lab:7443', '--server-name', 'mid04', '--mid-name', 'MID 04', '--tag', 'dc2', '--tag', 'prod', '--cluster', 'dc2', '--json'],
        ['agents', 'remove', 'mid04', '--json'],
        ['agents', 'add', 'mid05', '--address', 'no port', '--server-name', 'mid05', '--json'],
      ]);
      assert.equal((await fakeState()).agents.mid04, undefined);
    });

    it('midcert_ca_chain: compares the first certificate\'s SHA-256 with the active chain and rotates only when it differs', async () => {
      const chains = join(dir, 'chains');
      await mkdir(chains, { recursive: true });
      const makeChain = async (name: string): Promise<string> => {
        const key = join(chains, `${name}.key`);
        const cert = join(chains, `${name}.pem`);
        await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '3650', '-subj', `/CN=${name}`]);
        return cert;
      };
      const oldPem = await makeChain('Acme Issuing 2025');
      const newPem = await makeChain('Acme Issuing 2027');
      const rootPem = await makeChain('Acme Root');
      // The chain file: the new issuing CA first, then another certificate (only the first counts).
      const chainFile = join(chains, 'new-chain.pem');
      await writeFile(chainFile, (await readFile(newPem, 'utf8')) + (await readFile(rootPem, 'utf8')));
      const sha = (pem: string): string => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
      const oldSha = sha(await readFile(oldPem, 'utf8'));
      const newSha = sha(await readFile(newPem, 'utf8'));

      const state = fleetState();
      // The controller may print the fingerprint in another case/with colons; the module normalizes.
      state.instance.caChain = { sha256: new X509Certificate(await readFile(oldPem, 'utf8')).fingerprint256, subject: 'CN=Acme Issuing 2025', notAfter: '2035-01-01T00:00:00.000Z' };
      await resetFake(state);
      const res = await playbook(play(`
    - name: the active chain
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(oldPem)}}
    - name: new chain in check mode
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(chainFile)}}
      check_mode: true
      diff: true
    - name: new chain
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(chainFile)}}
    - name: new chain again
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(chainFile)}}
    - name: not a chain
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(join(chains, 'Acme Root.key'))}}
      ignore_errors: true
    - name: rotate-ca refused
      midcert.fleet.midcert_ca_chain: {chain: ${JSON.stringify(oldPem)}}
      environment:
        FAKE_MIDCERT_FAIL: '{"rotate-ca": {"rc": 3, "code": "CHAIN_INVALID", "message": "the chain does not verify"}}'
      ignore_errors: true`));
      assert.equal(res.code, 0, res.stderr);
      const same = res.task('the active chain');
      assert.equal(same.changed, false);
      assert.equal(same.sha256, oldSha);
      assert.equal(same.previous_sha256, oldSha);
      assert.ok(['cryptography', 'openssl'].includes(same.fingerprint_method));
      const check = res.task('new chain in check mode');
      assert.equal(check.changed, true);
      assert.match(check.msg, /would rotate the instance CA chain from CN=Acme Issuing 2025 to CN=Acme Issuing 2027/);
      assert.equal(check.sha256, newSha);
      const checkDiff = Array.isArray(check.diff) ? check.diff[0] : check.diff;
      assert.deepEqual([checkDiff.before.sha256, checkDiff.after.sha256], [oldSha, newSha]);
      const rotated = res.task('new chain');
      assert.equal(rotated.changed, true);
      assert.deepEqual(rotated.outage_seconds, { mid01: 0.5, mid02: 0.5, mid03: 0.5 });
      assert.equal(res.task('new chain again').changed, false);
      assert.equal(res.task('not a chain').error_code, 'PEM_MALFORMED');
      const refused = res.task('rotate-ca refused');
      assert.equal(refused.error_code, 'CHAIN_INVALID');
      assert.equal(refused.msg, 'the chain does not verify');
      assert.deepEqual(mutating(await fakeCalls()), [['rotate-ca', '--chain', chainFile, '--json'], ['rotate-ca', '--chain', oldPem, '--json']]);
      assert.equal((await fakeState()).instance.caChain.sha256, newSha, 'the fake (base64 + hashlib) agrees with the module');
    });

    it('midcert_ca_chain fingerprints with openssl when cryptography is not importable, and gets the same value', async () => {
      const pem = join(dir, 'chains', 'Acme Root.pem');
      const script = `
import json, subprocess, sys
sys.modules['cryptography'] = None  # import cryptography now raises ImportError
sys.path.insert(0, ${JSON.stringify(ANSIBLE_DIR)})
from ansible_collections.midcert.fleet.plugins.module_utils import midcert_pem
class Module(object):
    def get_bin_path(self, name, required=False):
        return subprocess.run(['sh', '-c', 'command -v ' + name], capture_output=True, text=True).stdout.strip() or None
    def run_command(self, argv, check_rc=False):
        assert isinstance(argv, list)
        p = subprocess.run(argv, capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr
print(json.dumps([midcert_pem.HAS_CRYPTOGRAPHY, midcert_pem.first_certificate_sha256(Module(), ${JSON.stringify(pem)})]))
`;
      const res = await runOk(ansiblePython, ['-c', script], { cwd: dir, env });
      const [hasCryptography, [sha, subject, method]] = JSON.parse(res.stdout);
      assert.equal(hasCryptography, false);
      assert.equal(method, 'openssl');
      assert.equal(sha, new X509Certificate(await readFile(pem, 'utf8')).fingerprint256.replace(/:/g, '').toLowerCase());
      assert.equal(subject, 'CN=Acme Root');
    });

    it('the fleet-renewal example playbook: plan in check mode, rotate, then changed=0', async () => {
      await resetFake(fleetState());
      const inventory = join(dir, 'controller-inventory.yml');
      await writeFile(inventory, `all:
  vars:
    midcert_bin: ${JSON.stringify(fakeBin)}
  children:
    midcert_controller:
      hosts:
        localhost: {ansible_connection: local}
`);
      const before = await readFile(fakeStatePath(), 'utf8');
      const runIt = async (args: string[]): Promise<PlaybookRun> =>
        withResults(await run('ansible-playbook', ['-i', inventory, join(PLAYBOOKS_DIR, 'fleet-renewal.yml'), ...args], { cwd: dir, env, timeoutMs: 240_000 }));
      const check = await runIt(['--check']);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.deepEqual(check.task('Rotate the expiring MIDs in waves').planned, ['mid01', 'mid02']);
      assert.equal(await readFile(fakeStatePath(), 'utf8'), before);
      const real = await runIt([]);
      assert.equal(real.code, 0, real.stdout + real.stderr);
      assert.deepEqual(real.task('Rotate the expiring MIDs in waves').rotated, ['mid01', 'mid02']);
      assert.match(real.task('Report').msg, /mid01 90, mid02 90, mid03 200/);
      const again = await runIt([]);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.equal(again.stats.localhost.changed, 0);
    });
  });

  describe('return values', () => {
    it('every key a module returned in the runs above is documented in its RETURN (and every module ran)', async () => {
      const json = JSON.parse((await runOk('ansible-doc', ['--json', ...MODULES.map((m) => `midcert.fleet.${m}`)], { cwd: dir, env })).stdout);
      // What ansible itself adds to every result (not the module's to document).
      const common = new Set(['changed', 'failed', 'msg', 'diff', 'invocation', 'skipped', 'ignored', 'warnings', 'deprecations', 'exception', 'module_stdout', 'module_stderr', 'attempts', 'stdout_lines', 'stderr_lines']);
      const undocumented: string[] = [];
      for (const m of MODULES) {
        const seen = returnedKeys.get(`midcert.fleet.${m}`);
        assert.ok(seen && seen.size > 0, `no run of ${m} was recorded`);
        const documented = new Set(Object.keys(json[`midcert.fleet.${m}`].return ?? {}));
        for (const k of seen) if (!common.has(k) && !documented.has(k)) undocumented.push(`${m}.${k}`);
      }
      assert.deepEqual(undocumented, []);
    });
  });

  describe('role midcert.fleet.agent', () => {
    it('deploys binary, config, identity (key made on the host, CSR signed by the controller) and unit; second run changed=0; check mode creates nothing', async function () {
      if (process.getuid?.() !== 0) this.skip(); // the role sets root ownership on /etc-like files
      const root = join(dir, 'mid-host');
      const ca = join(dir, 'fleet-ca');
      await mkdir(join(root, 'opt/mid/agent'), { recursive: true });
      await mkdir(join(root, 'systemd'), { recursive: true });
      await mkdir(ca, { recursive: true });
      await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(ca, 'ca.key'), '-out', join(ca, 'ca.pem'), '-days', '3650', '-subj', '/CN=Fake Fleet CA']);
      const state = fleetState();
      state.signer = { caCert: join(ca, 'ca.pem'), caKey: join(ca, 'ca.key') };
      await resetFake(state);
      // The "built binary": a wrapper around the checkout's agent CLI (make package is not run here).
      const binSrc = join(dir, 'midcert-agent-src');
      await writeFile(binSrc, `#!/bin/sh\nexec ${AGENT_BIN} "$@"\n`);
      await chmod(binSrc, 0o755);
      const inventory = join(dir, 'role-inventory.ini');
      const fresh = join(dir, 'mid-host-2');
      await mkdir(join(fresh, 'opt/mid/agent'), { recursive: true });
      await mkdir(join(fresh, 'systemd'), { recursive: true });
      // Two "MID hosts" on this machine, each with its own root under the temp dir; mid09 (fresh)
      // runs in check mode, in parallel with mid01's real deployment.
      await writeFile(inventory, [
        `mid01 ansible_connection=local ansible_host=10.0.0.11 mid_root=${root} dry=false`,
        `mid09 ansible_connection=local ansible_host=10.0.0.19 mid_root=${fresh} dry=true`,
        'localhost ansible_connection=local', '',
      ].join('\n'));
      const rolePlay = `
- hosts: mid01:mid09
  gather_facts: false
  vars:
    midcert_agent_binary_src: ${JSON.stringify(binSrc)}
    midcert_agent_bin_path: "{{ mid_root }}/bin/midcert-agent"
    midcert_agent_config_dir: "{{ mid_root }}/etc/midcert"
    midcert_agent_state_dir: "{{ mid_root }}/var/lib/midcert-agent"
    midcert_agent_systemd_dir: "{{ mid_root }}/systemd"
    midcert_agent_mid_home: "{{ mid_root }}/opt/mid"
    midcert_agent_listen_socket: "{{ mid_root }}/run/agent.sock"
    midcert_agent_create_user: false
    midcert_agent_user: root
    midcert_agent_group: root
    midcert_agent_manage_service: false
    midcert_agent_service_manager: command
    midcert_agent_service_start: [/bin/true]
    midcert_agent_service_stop: [/bin/true]
    midcert_agent_service_status: [/bin/true]
    midcert_agent_tags: [lab, dc1]
    midcert_agent_identity_sans: ["DNS:{{ midcert_agent_name }}", "IP:{{ ansible_host }}"]
    midcert_controller_host: localhost
    midcert_controller_bin: ${JSON.stringify(fakeBin)}
  roles:
    - role: midcert.fleet.agent
      check_mode: "{{ dry | bool }}"
`;
      const first = await playbook(rolePlay, { inventory });
      assert.equal(first.code, 0, first.stdout.slice(-4000) + first.stderr);
      assert.ok(first.stats.mid01.changed > 0);

      // Files and modes.
      const etc = join(root, 'etc/midcert');
      assert.deepEqual((await readdir(etc)).sort(), ['agent.key', 'agent.pem', 'agent.yaml', 'fleet-ca.pem'], 'no pending key or CSR left');
      assert.equal((await stat(join(etc, 'agent.key'))).mode & 0o777, 0o600);
      assert.equal((await stat(join(etc, 'agent.yaml'))).mode & 0o777, 0o640);
      assert.equal((await stat(join(root, 'var/lib/midcert-agent'))).mode & 0o777, 0o700);
      assert.equal((await stat(join(root, 'bin/midcert-agent'))).mode & 0o777, 0o755);

      // agent.yaml is what the real agent accepts, with the documented keys.
      const cfg = await loadAgentConfig(join(etc, 'agent.yaml'));
      assert.equal(cfg.mid.home, join(root, 'opt/mid'));
      assert.equal(cfg.service.manager, 'command');
      assert.deepEqual(cfg.service.start, ['/bin/true']);
      assert.equal(cfg.listen.address, '0.0.0.0:7443');
      assert.deepEqual(cfg.tls, { cert: join(etc, 'agent.pem'), key: join(etc, 'agent.key'), clientCa: join(etc, 'fleet-ca.pem') });
      assert.deepEqual(cfg.access.operators, ['midcert-controller']);
      assert.equal(cfg.stateDir, join(root, 'var/lib/midcert-agent'));

      // The identity: the controller saw only the CSR; the certificate matches the key made here.
      const calls = await fakeCalls();
      const sign = calls.find((c) => c[0] === 'agent-identity');
      assert.ok(sign, 'the controller signed');
      assert.deepEqual(sign.slice(0, 3), ['agent-identity', 'sign', '--csr']);
      assert.ok(!sign.some((a) => a.includes('.key')), 'no key path goes to the controller');
      // The name's DNS SAN is the controller's to add; only the extra SANs are passed.
      assert.deepEqual(sign.slice(4), ['--name', 'mid01', '--san', 'IP:10.0.0.11', '-o', sign[sign.indexOf('-o') + 1]!, '--json']);
      await assert.rejects(stat(sign[3]!), 'the scratch CSR on the controller is removed');
      const cert = new X509Certificate(await readFile(join(etc, 'agent.pem')));
      assert.equal(cert.subject, 'CN=mid01');
      assert.equal(cert.subjectAltName, 'DNS:mid01, IP Address:10.0.0.11');
      assert.ok(cert.verify(new X509Certificate(await readFile(join(etc, 'fleet-ca.pem'))).publicKey), 'signed by the fleet CA');
      const keyCheck = await runOk('openssl', ['pkey', '-in', join(etc, 'agent.key'), '-pubout']);
      assert.equal(keyCheck.stdout.trim(), cert.publicKey.export({ type: 'spki', format: 'pem' }).toString().trim(), 'certificate matches the key made on the host');

      // Registered with the controller at the host's address.
      const registered = (await fakeState()).agents.mid01;
      assert.equal(registered.address, '10.0.0.11:7443');
      assert.deepEqual(registered.tags, ['dc1', 'lab']);

      // The hardened unit.
      const unit = await readFile(join(root, 'systemd/midcert-agent.service'), 'utf8');
      for (const line of [
        'User=root', `ExecStart=${join(root, 'bin/midcert-agent')} run --config ${join(etc, 'agent.yaml')}`, 'Environment=NODE_OPTIONS=',
        'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', `ReadWritePaths=-${join(root, 'opt/mid/agent')} ${join(root, 'var/lib/midcert-agent')}`,
        'PrivateTmp=yes', 'CapabilityBoundingSet=', 'SystemCallFilter=@system-service',
      ]) {
        assert.ok(unit.split('\n').includes(line), `unit has ${line}`);
      }
      // Every directive of the packaged unit is in the role's unit (values differ only in paths/users).
      const directives = (text: string): Set<string> =>
        new Set(text.split('\n').filter((l) => /^[A-Z][A-Za-z]+=/.test(l)).map((l) => l.slice(0, l.indexOf('='))));
      const packaged = directives(await readFile(resolve('packaging/midcert-agent.service'), 'utf8').catch(() => ''));
      // StateDirectory= only names dirs under /var/lib; this test's state dir is elsewhere.
      const missing = [...packaged].filter((d) => !directives(unit).has(d) && !d.startsWith('StateDirectory'));
      assert.deepEqual(missing, [], 'directives of packaging/midcert-agent.service missing from the role unit');
      if ((await run('sh', ['-c', 'command -v systemd-analyze'])).code === 0) {
        const verify = await run('systemd-analyze', ['verify', join(root, 'systemd/midcert-agent.service')], { env });
        assert.doesNotMatch(verify.stderr, /Unknown (key|section)|Invalid|Failed to parse/i, verify.stderr);
      }

      // The health check read the agent's status.
      assert.match(first.task('Summary', 'mid01').msg, /^midcert-agent \d+\.\d+\.\d+ on mid01, /);

      // Check mode on the fresh host mid09: reports changes, creates nothing, signs nothing.
      assert.ok(first.stats.mid09.changed > 0);
      assert.match(first.task('Report the identity that would be made (check mode)', 'mid09').msg, /would make a new key on mid09/);
      // (Task names are templated with the first host's vars, hence "mid01" in this one.)
      assert.match(first.task('Register the agent in the controller\'s inventory as mid01', 'mid09').msg, /would register agent mid09/);
      assert.deepEqual((await readdir(fresh)).sort(), ['opt', 'systemd']);
      assert.deepEqual(await readdir(join(fresh, 'systemd')), []);
      assert.deepEqual(calls.filter((c) => c[0] === 'agent-identity').map((c) => c[c.indexOf('--name') + 1]), ['mid01']);
      assert.equal((await fakeState()).agents.mid09, undefined, 'mid09 not registered in check mode');

      // Idempotent.
      await writeFile(join(fakeDir, 'argv.log'), '');
      const second = await playbook(rolePlay, { inventory, args: ['--limit', 'mid01'] });
      assert.equal(second.code, 0, second.stdout.slice(-4000) + second.stderr);
      assert.equal(second.stats.mid01.changed, 0, 'second run changed nothing');
      assert.deepEqual(mutating(await fakeCalls()), []);
      assert.ok(!(await fakeCalls()).some((c) => c[0] === 'agent-identity'), 'no new identity while the current one is valid');
    });
  });
});
