#!/usr/bin/env node
/**
 * Builds midcert's single executables with Node's own SEA support (DESIGN.md §6), fully offline:
 *
 *   1. esbuild bundles the entry and everything it imports (our TypeScript and node_modules) into
 *      ONE ES module. ESM output is what allows top-level await in the entry; every `import` of a
 *      Node built-in is turned into a `require()` so the output has no import statements left.
 *   2. That module body is wrapped in an async function inside a CommonJS script (a Node 20 SEA
 *      main must be CommonJS and can only `require` built-ins). The wrapper is compiled once
 *      here to prove it is a valid CommonJS script.
 *   3. sea-config.json lists the assets (proto/midcert/v1/*.proto, and native addons such as
 *      better-sqlite3's .node file when the bundle uses them); `node --experimental-sea-config`
 *      writes the preparation blob.
 *   4. A copy of the running `node` gets the blob injected with postject (sentinel fuse
 *      NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2) and is renamed into place atomically.
 *
 * Native addons: a bundle that reaches `require('bindings')` from a package listed in NATIVE gets
 * a shim instead (packaging/sea/native-addon.cjs) that extracts the embedded .node asset to a
 * private, content-addressed cache file and dlopens it. Any other native loader is a build error.
 *
 * Usage: node packaging/build-sea.mjs [--target agent|controller|all]... [--out-dir dist]
 *          [--keep-work] [--no-code-cache] [--minify] [--json] [--quiet]
 *   A target whose entry file does not exist is skipped with a message (an error when that
 *   target was asked for by name).
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import vm from 'node:vm';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const require = createRequire(import.meta.url);

/** What we build. `allow` lists the only files outside the product folders a target may contain. */
export const TARGETS = {
  agent: {
    name: 'midcert-agent',
    entry: 'agent/cli/main.ts',
    allow: [],
  },
  controller: {
    name: 'midcert',
    entry: 'controller/cli/main.ts',
    // The `local` CA adapter reuses the lab CA's file layout (pure PKI, no runtime file lookups).
    allow: ['lab/lab-ca.ts'],
  },
};

/** Folders of this repo a product bundle may draw from; anything else (lab/, test/, scripts/, bench/) fails the build. */
const PRODUCT_DIRS = ['agent/', 'controller/', 'common/', 'pki/', 'proto/', 'packaging/sea/'];

/** Native addons we know how to embed: the package that loads it through `bindings`, and the file. */
export const NATIVE = {
  'better-sqlite3': {
    asset: 'native/better_sqlite3.node',
    stem: 'better_sqlite3',
    file: 'node_modules/better-sqlite3/build/Release/better_sqlite3.node',
    names: ['better_sqlite3.node', 'better_sqlite3'],
  },
};

const NATIVE_LOADERS = /^(bindings|node-gyp-build|node-gyp-build-optional-packages|node-pre-gyp|@mapbox\/node-pre-gyp|prebuild-install)$|\.node$/;
const LOADER_MODULE = join(ROOT, 'packaging', 'sea', 'native-addon.cjs');

function escapeRegex(s) {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Node built-ins as import statements become `require` calls (a SEA main has `require` for them, and no module loader). */
function builtinsAsRequire() {
  const names = new Set(builtinModules.flatMap((m) => (m.startsWith('node:') ? [m, m.slice(5)] : [m, `node:${m}`])));
  for (const m of ['sea', 'test', 'test/reporters', 'sqlite']) names.add(`node:${m}`);
  const filter = new RegExp(`^(${[...names].map(escapeRegex).join('|')})$`);
  return {
    name: 'sea-builtins',
    setup(build) {
      build.onResolve({ filter }, (args) => {
        if (args.kind === 'require-call' || args.kind === 'require-resolve') return { path: args.path, external: true };
        return { path: args.path, namespace: 'sea-builtin' };
      });
      build.onLoad({ filter: /.*/, namespace: 'sea-builtin' }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: 'js',
        resolveDir: ROOT,
      }));
    },
  };
}

/** Native loaders: `bindings` inside a NATIVE package → the embedded-asset shim; anything else → error. */
function nativeAddons(used) {
  return {
    name: 'sea-native-addons',
    setup(build) {
      build.onResolve({ filter: NATIVE_LOADERS }, (args) => {
        const rel = relative(ROOT, args.importer).split(sep).join('/');
        const pkg = Object.keys(NATIVE).find((p) => rel.startsWith(`node_modules/${p}/`));
        if (pkg && args.path === 'bindings') {
          used.add(pkg);
          return { path: pkg, namespace: 'sea-native' };
        }
        return { errors: [{ text: `native addon loader "${args.path}" (from ${rel}) cannot work inside a single executable; add the package to NATIVE in packaging/build-sea.mjs` }] };
      });
      build.onLoad({ filter: /.*/, namespace: 'sea-native' }, (args) => {
        const n = NATIVE[args.path];
        return {
          loader: 'js',
          resolveDir: ROOT,
          contents: [
            `const { loadEmbeddedAddon } = require(${JSON.stringify(LOADER_MODULE)});`,
            `const NAMES = ${JSON.stringify(n.names)};`,
            'module.exports = function bindings(opts) {',
            "  const name = typeof opts === 'string' ? opts : opts && opts.bindings;",
            `  if (!NAMES.includes(name)) throw new Error('this single executable embeds only ' + NAMES[0] + ', not ' + name);`,
            `  return loadEmbeddedAddon(${JSON.stringify(n.asset)}, ${JSON.stringify(n.stem)});`,
            '};',
          ].join('\n'),
        };
      });
    },
  };
}

/** Step 1: one ES module with no import statements. */
export async function bundle(target, options = {}) {
  const esbuild = await import('esbuild');
  const usedNative = new Set();
  const result = await esbuild.build({
    stdin: { contents: `import ${JSON.stringify(`./${target.entry}`)};\n`, resolveDir: ROOT, sourcefile: `sea-entry-${target.name}.js`, loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    outfile: join(ROOT, 'dist', `${target.name}.bundle.mjs`),
    metafile: true,
    keepNames: true,
    minifySyntax: true,
    // Whitespace only by default: function and class names stay readable in stack traces.
    minifyWhitespace: true,
    minifyIdentifiers: Boolean(options.minify),
    legalComments: 'none',
    // ASCII output (non-ASCII escaped) lets V8 keep the ~3 MB source as a one-byte string, not UTF-16.
    charset: 'ascii',
    tsconfig: join(ROOT, 'tsconfig.json'),
    define: {
      'import.meta.url': '__sea_import_meta_url',
      'import.meta.filename': '__filename',
      'import.meta.dirname': '__dirname',
    },
    plugins: [builtinsAsRequire(), nativeAddons(usedNative)],
    logLevel: 'silent',
  });
  const warnings = result.warnings.map((w) => `${w.location ? `${w.location.file}:${w.location.line}: ` : ''}${w.text}`);
  const inputs = Object.keys(result.metafile.inputs).filter((p) => !p.includes(':'));
  const own = inputs.filter((p) => !p.startsWith('node_modules/') && !p.startsWith('sea-entry-'));
  const stray = own.filter((p) => !PRODUCT_DIRS.some((d) => p.startsWith(d)) && !target.allow.includes(p));
  if (stray.length > 0) {
    throw new Error(`${target.name}: the bundle pulls in files outside the product (${stray.join(', ')}); only ${PRODUCT_DIRS.join(' ')} and ${target.allow.join(' ') || 'nothing else'} may be bundled`);
  }
  const packages = new Map();
  for (const [p, info] of Object.entries(result.metafile.inputs)) {
    const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(p);
    if (m) packages.set(m[1], (packages.get(m[1]) ?? 0) + info.bytes);
  }
  const code = result.outputFiles[0].text;
  return { code, warnings, inputs, ownFiles: own, packages, usedNative: [...usedNative] };
}

/** Step 2: the CommonJS SEA main around the ES module body. */
export function wrapAsCommonJs(esmCode, target, version) {
  const body = esmCode.replace(/^#!.*\n/, '');
  const wrapped = [
    '"use strict";',
    `// ${target.name} ${version}: single-executable main generated by packaging/build-sea.mjs; do not edit.`,
    'const __sea_import_meta_url = require("node:url").pathToFileURL(__filename).href;',
    '(async () => {',
    body,
    '})().catch((err) => {',
    `  process.stderr.write(${JSON.stringify(`${target.name}: fatal: `)} + (err && err.stack ? err.stack : String(err)) + "\\n");`,
    '  process.exitCode = 70;',
    '});',
    '',
  ].join('\n');
  // Fails on any import/export statement, import.meta (other than .url/.filename/.dirname, which
  // the bundle step defines) or top-level await left outside the async function.
  try {
    vm.compileFunction(wrapped, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: `${target.name}-sea-main.cjs` });
  } catch (err) {
    if (err instanceof SyntaxError) err.message = `${target.name}: the bundle is not a valid CommonJS SEA main: ${err.message}`;
    throw err;
  }
  // Valid syntax in a script, but a SEA main has no module loader to serve it.
  const leftovers = /(^|[^.\w$])import\s*\(/.test(body) ? ['dynamic import()'] : [];
  return { code: wrapped, leftovers };
}

export async function protoAssets() {
  const dir = join(ROOT, 'proto', 'midcert', 'v1');
  if (!existsSync(dir)) return {};
  const files = (await readdir(dir)).filter((f) => f.endsWith('.proto')).sort();
  return Object.fromEntries(files.map((f) => [`proto/midcert/v1/${f}`, join(dir, f)]));
}

function run(file, args, options = {}) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // a loader such as tsx must not leak into the blob generator
  const r = spawnSync(file, args, { encoding: 'utf8', env, ...options });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r;
}

function sha256File(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/** postject's CLI, run in a child process: its ELF library prints harmless warnings we only show on failure. */
function postjectCli() {
  let api;
  try {
    api = require.resolve('postject');
  } catch {
    throw new Error('postject is not installed: add it to devDependencies (npm install --save-dev postject); it is the offline injector for Node SEA blobs');
  }
  return join(dirname(api), 'cli.js');
}

/**
 * Builds one target — a key of TARGETS, or a `{ name, entry, allow, checkVersion? }` object
 * (tests build small fixtures this way) — and returns what was built.
 */
export async function buildTarget(key, options = {}) {
  const target = typeof key === 'string' ? TARGETS[key] : key;
  if (!target) throw new Error(`unknown target ${key} (known: ${Object.keys(TARGETS).join(', ')})`);
  const outDir = resolve(options.outDir ?? join(ROOT, 'dist'));
  const nodeBin = options.nodeBin ?? process.execPath;
  const t0 = performance.now();
  const say = options.log ?? (() => undefined);
  const log = (m) => say(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${m}`);
  const version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
  const work = await mkdtemp(join(options.workRoot ?? tmpdir(), `midcert-sea-${target.name}-`));
  try {
    log(`${target.name}: bundling ${target.entry}`);
    const b = await bundle(target, options);
    for (const w of b.warnings) log(`${target.name}: esbuild warning: ${w}`);
    const main = wrapAsCommonJs(b.code, target, version);
    if (main.leftovers.length > 0) log(`${target.name}: warning: the bundle still mentions ${main.leftovers.join(', ')} (unavailable in a SEA main)`);
    // A relative name: it is what stack traces show inside the binary.
    const mainName = `${target.name}.cjs`;
    const mainPath = join(work, mainName);
    await writeFile(mainPath, main.code);

    const assets = await protoAssets();
    for (const pkg of b.usedNative) {
      const file = join(ROOT, NATIVE[pkg].file);
      if (!existsSync(file)) throw new Error(`${target.name}: ${NATIVE[pkg].file} is missing (npm ci builds it)`);
      assets[NATIVE[pkg].asset] = file;
    }
    const blobPath = join(work, 'sea-prep.blob');
    const config = {
      main: mainName,
      output: 'sea-prep.blob',
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: options.codeCache !== false,
      assets,
    };
    await writeFile(join(work, 'sea-config.json'), `${JSON.stringify(config, null, 2)}\n`);
    log(`${target.name}: ${Object.keys(assets).length} assets (${Object.keys(assets).join(', ')}); writing the SEA blob`);
    run(nodeBin, ['--experimental-sea-config', 'sea-config.json'], { cwd: work });
    const blob = await readFile(blobPath);

    log(`${target.name}: injecting into a copy of ${nodeBin}`);
    const cli = postjectCli();
    await mkdir(outDir, { recursive: true });
    const finalPath = join(outDir, target.name);
    const tmpPath = join(outDir, `.${target.name}.${process.pid}.tmp`);
    await copyFile(nodeBin, tmpPath);
    await chmod(tmpPath, 0o755);
    try {
      run(process.execPath, [cli, tmpPath, 'NODE_SEA_BLOB', blobPath, '--sentinel-fuse', SEA_FUSE]);
      await rename(tmpPath, finalPath);
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    const size = (await stat(finalPath)).size;
    // The binary must answer --version with no Node and no node_modules around it.
    const check = target.checkVersion === false ? undefined : run(finalPath, ['--version'], { cwd: work, env: { PATH: '/usr/bin:/bin', HOME: work } });
    if (check && check.stdout.trim() !== version) throw new Error(`${finalPath} --version printed ${JSON.stringify(check.stdout.trim())}, expected ${version}`);
    const built = {
      target: typeof key === 'string' ? key : target.name,
      name: target.name,
      path: finalPath,
      version,
      node: run(nodeBin, ['--version']).stdout.trim(),
      sizeBytes: size,
      mainBytes: Buffer.byteLength(main.code),
      blobBytes: blob.length,
      assets: Object.keys(assets),
      nativeAddons: b.usedNative,
      ownFiles: b.ownFiles.length,
      packages: Object.fromEntries([...b.packages.entries()].sort((a, c) => c[1] - a[1])),
      blobSha256: sha256File(blob),
      buildSeconds: Math.round(performance.now() - t0) / 1000,
    };
    if (options.keepWork) built.workDir = work;
    log(`${target.name}: ${finalPath} ${(size / 1048576).toFixed(1)} MiB (main ${(built.mainBytes / 1048576).toFixed(2)} MiB) in ${built.buildSeconds} s`);
    return built;
  } finally {
    if (!options.keepWork) await rm(work, { recursive: true, force: true });
  }
}

export async function main(argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: 'string', multiple: true },
      'out-dir': { type: 'string' },
      'keep-work': { type: 'boolean' },
      'no-code-cache': { type: 'boolean' },
      minify: { type: 'boolean' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node packaging/build-sea.mjs [--target agent|controller|all]... [--out-dir dist] [--keep-work] [--no-code-cache] [--minify] [--json] [--quiet]\n');
    return 0;
  }
  const asked = values.target ?? ['all'];
  const explicit = !asked.includes('all');
  const keys = explicit ? asked : Object.keys(TARGETS);
  const log = values.quiet ? () => undefined : (m) => process.stderr.write(`build-sea: ${m}\n`);
  const results = [];
  const skipped = [];
  for (const key of keys) {
    const target = TARGETS[key];
    if (!target) throw new Error(`unknown target ${key} (known: ${Object.keys(TARGETS).join(', ')}, all)`);
    if (!existsSync(join(ROOT, target.entry))) {
      if (explicit) throw new Error(`${target.name}: entry ${target.entry} does not exist`);
      log(`${target.name}: SKIPPED — ${target.entry} does not exist yet`);
      skipped.push({ target: key, name: target.name, reason: `${target.entry} does not exist` });
      continue;
    }
    results.push(await buildTarget(key, { outDir: values['out-dir'], keepWork: values['keep-work'], codeCache: !values['no-code-cache'], minify: values.minify, log }));
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ built: results, skipped }, null, 2)}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then((code) => { process.exitCode = code; }, (err) => {
    process.stderr.write(`build-sea: error: ${err && err.message ? err.message : err}\n`);
    process.exitCode = 1;
  });
}
