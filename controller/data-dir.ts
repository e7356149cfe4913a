import { lstat, mkdir, readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { controllerConfigPath, parseControllerConfig, type ControllerConfig } from './config.js';
import { ensureFleetCa } from './fleet-ca.js';
import { openStore, storePath } from './store/index.js';

/**
 * `midcert init`: the data dir (0700), `controller.yaml` (a commented template with the embedded
 * `local` CA; no instance until one is configured), the state database and the fleet CA with
 * the controller's identity. Idempotent: each part is created only when missing, a second run
 * reports that nothing changed, and an existing fleet CA or configuration is never replaced.
 */
export const CONTROLLER_YAML_TEMPLATE = `# midcert controller configuration (see docs/controller-config.md).
# Paths are relative to this file. Secrets live in separate files (passwordFile, oauthTokenFile),
# never in this file.

# The CA that signs MID client certificates (not the fleet CA in fleet/, which is only for
# controller <-> agent TLS). type: local | adcs | cfssl | exec | est
ca:
  type: local
  # url: https://adcs.example.com/certsrv         # adcs, cfssl, est
  # template: MIDClientAuth                       # adcs certificate template
  # profile: client                               # cfssl profile
  # command: [/usr/libexec/certmonger/cepces-submit, --server=ca.example.com]   # exec
  # username: svc-midcert
  # passwordFile: secrets/ca.password
  # chainFile: ca-chain.pem                       # issuing chain when the CA returns only the leaf
  # validityDays: 365

# The ServiceNow instance. Uncomment and fill in before rotating.
# instance:
#   url: https://YOUR_INSTANCE.service-now.com/
#   username: midcert.integration
#   passwordFile: secrets/instance.password
#   # oauthTokenFile: secrets/instance.token
#   # caFile: instance-ca.pem

# rotation:
#   canary: 1
#   batch: 10
#   maxFailures: 1
#   renewWithinDays: 30

# serve:
#   intervalSeconds: 300
#   maintenanceWindows: ["daily 02:00-04:00"]
`;

export interface InitOptions {
  /** Recorded in the audit log (default: the store's default, `user:<login>`). */
  actor?: string;
  /** controller.yaml to write instead of the template (validated first), e.g. by the lab. */
  configText?: string;
  now?: Date;
}

export interface InitResult {
  dataDir: string;
  /** Paths created, relative to the data dir; empty when nothing changed. */
  created: string[];
  changed: boolean;
  /** Things worth fixing that init does not change by itself (e.g. a data dir others can read). */
  warnings: string[];
  /** One line for people. */
  message: string;
}

export async function initDataDir(dataDir: string, options: InitOptions = {}): Promise<InitResult> {
  const created: string[] = [];
  const warnings: string[] = [];
  const info = await lstat(dataDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new MidcertError('DATA_DIR_UNUSABLE', `cannot inspect ${dataDir}: ${err.code ?? 'error'}`);
  });
  if (info && !info.isDirectory()) throw new MidcertError('DATA_DIR_UNUSABLE', `${dataDir} exists and is not a directory`);
  if (!info) {
    try {
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new MidcertError('DATA_DIR_UNUSABLE', `cannot create ${dataDir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    created.push('.');
  } else if ((info.mode & 0o077) !== 0) {
    warnings.push(`${dataDir} is accessible to other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 700 ${dataDir}`);
  }

  const configPath = controllerConfigPath(dataDir);
  const existingConfig = await readFile(configPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new MidcertError('CONFIG_UNREADABLE', `cannot read ${configPath}: ${err.code ?? 'error'}`);
  });
  let cfg: ControllerConfig;
  if (existingConfig === undefined) {
    const text = options.configText ?? CONTROLLER_YAML_TEMPLATE;
    cfg = parseControllerConfig(text, configPath); // never write a file the controller would then refuse
    await writeFileAtomic(configPath, text, { mode: 0o600 });
    created.push(relative(dataDir, configPath));
  } else {
    // An existing configuration is kept as it is, but init still says when it is broken.
    cfg = parseControllerConfig(existingConfig, configPath);
  }

  const dbExisted = await lstat(storePath(dataDir)).then(() => true, () => false);
  // The database the configuration names (its `store` section), as every later command opens it.
  const store = await openStore(dataDir, { actor: options.actor, now: options.now && (() => options.now as Date), config: cfg.store });
  try {
    if (!dbExisted) created.push(relative(dataDir, store.path));
    else if (store.migrations.applied.length > 0) warnings.push(`migrated the database to schema version ${store.migrations.version}`);

    const fleet = await ensureFleetCa(dataDir, { now: options.now });
    created.push(...fleet.created.map((p) => relative(dataDir, p)));

    const changed = created.length > 0 || store.migrations.applied.length > 0;
    if (changed) await store.audit.record({ action: 'init', target: 'data-dir', params: { created, migrated: store.migrations.applied } });
    const message = changed
      ? `initialised ${dataDir}: created ${created.length > 0 ? created.map((p) => (p === '.' ? 'the directory' : p)).join(', ') : 'nothing new'}${store.migrations.applied.length > 0 && dbExisted ? ' (database migrated)' : ''}`
      : `${dataDir} is already initialised; nothing changed`;
    return { dataDir, created, changed, warnings, message };
  } finally {
    await store.close();
  }
}
