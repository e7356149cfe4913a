import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { loadControllerConfig } from '../../controller/config.js';
import { initDataDir } from '../../controller/data-dir.js';
import { controllerIdentity } from '../../controller/fleet-ca.js';
import { openStore } from '../../controller/store/index.js';

const code = (expected: string) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  return true;
};

/** Every file under `dir` with its bytes and mtime: what "nothing changed" means. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.endsWith('-shm')) continue; // SQLite's shared-memory index is rebuilt on open
    const path = join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name);
    out[path] = `${(await stat(path)).mtimeMs}:${(await readFile(path)).toString('base64')}`;
  }
  return out;
}

describe('controller/data-dir: midcert init', () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'midcert-init-'));
    dir = join(root, 'data');
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('creates the directory (0700), a valid commented config, the database and the fleet CA', async () => {
    const result = await initDataDir(dir, { actor: 'user:setup' });
    assert.equal(result.changed, true);
    assert.deepEqual(result.created, ['.', 'controller.yaml', 'midcert.db', 'fleet/ca.key', 'fleet/ca.pem', 'fleet/controller.key', 'fleet/controller.pem']);
    assert.deepEqual(result.warnings, []);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, 'controller.yaml'))).mode & 0o777, 0o600);
    const config = await loadControllerConfig(dir);
    assert.equal(config.ca.type, 'local');
    assert.equal(config.instance, undefined);
    assert.match(await readFile(join(dir, 'controller.yaml'), 'utf8'), /# instance:\n#   url: https:\/\/YOUR_INSTANCE\.service-now\.com\//);
    assert.equal((await controllerIdentity(dir)).cert.subjectText, 'CN=midcert-controller,O=midcert');
    const store = await openStore(dir);
    const audit = await store.audit.list();
    await store.close();
    assert.deepEqual(audit.map((a) => [a.actor, a.action, a.result]), [['user:setup', 'init', 'ok']]);
    assert.deepEqual(audit[0]?.params.created, result.created);
  });

  it('is idempotent: a second init changes nothing and says so', async () => {
    await initDataDir(dir);
    const before = await snapshot(dir);
    const again = await initDataDir(dir);
    assert.deepEqual({ changed: again.changed, created: again.created }, { changed: false, created: [] });
    assert.match(again.message, /already initialised; nothing changed/);
    assert.deepEqual(await snapshot(dir), before);
    const store = await openStore(dir);
    assert.equal((await store.audit.list()).length, 1);
    await store.close();
  });

  it('completes a partly initialised directory without touching what is there', async () => {
    await mkdir(dir, { mode: 0o700 });
    const mine = 'ca:\n  type: cfssl\n  url: https://cfssl.example:8888\n  profile: client\n';
    await writeFile(join(dir, 'controller.yaml'), mine);
    const result = await initDataDir(dir);
    assert.deepEqual(result.created, ['midcert.db', 'fleet/ca.key', 'fleet/ca.pem', 'fleet/controller.key', 'fleet/controller.pem']);
    assert.equal(await readFile(join(dir, 'controller.yaml'), 'utf8'), mine);
  });

  it('writes a given configuration instead of the template, after validating it', async () => {
    await assert.rejects(initDataDir(dir, { configText: 'ca:\n  type: nonsense\n' }), code('CONFIG_INVALID'));
    await assert.rejects(stat(join(dir, 'controller.yaml')), /ENOENT/);
    const text = 'ca:\n  type: local\ninstance:\n  url: https://lab.example:8443/\n  username: admin\n';
    await initDataDir(dir, { configText: text });
    assert.equal(await readFile(join(dir, 'controller.yaml'), 'utf8'), text);
    assert.equal((await loadControllerConfig(dir)).instance?.url, 'https://lab.example:8443/');
  });

  it('reports a broken existing configuration, a file in the way, and a directory others can read', async () => {
    await mkdir(dir, { mode: 0o700 });
    await writeFile(join(dir, 'controller.yaml'), 'ca: [not, a, mapping]\n');
    await assert.rejects(initDataDir(dir), code('CONFIG_INVALID'));
    assert.equal(await readFile(join(dir, 'controller.yaml'), 'utf8'), 'ca: [not, a, mapping]\n');

    const file = join(root, 'plain-file');
    await writeFile(file, 'x');
    await assert.rejects(initDataDir(file), code('DATA_DIR_UNUSABLE'));

    const open = join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o755);
    const result = await initDataDir(open);
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0] as string, /mode 755.*chmod 700/);
    assert.equal((await stat(open)).mode & 0o777, 0o755);
  });
});
