import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeystoreBackups } from '../../agent/backups.js';
import { Journal } from '../../agent/journal.js';
import { scriptRunner } from '../../agent/manage-certificates.js';
import type { MidPaths } from '../../agent/mid-install.js';
import type { HostEffects } from '../../agent/renewal/effects.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { startInstance, type RunningInstance } from '../../lab/instance/index.js';
import type { InstanceOptions } from '../../lab/instance/types.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { createMidHost, type MidHost } from '../../lab/mid/host.js';
import { MidRunner } from '../../lab/mid/runner.js';
import { PROFILES } from '../../pki/issue.js';

/**
 * One simulated MID host, Up against a simulated instance, for agent tests: lab CA, instance
 * (in-process), MID host tree with a published leaf in its keystore, and the MID runner.
 */
export interface MidWorld {
  dir: string;
  ca: LabCa;
  instance: RunningInstance;
  runner: MidRunner;
  host: MidHost;
  name: string;
  serviceUserSysId: string;
  publishLeaf(certPem: string): Promise<void>;
  midStatus(): ReturnType<MidRunner['status']>;
  effects(overrides?: Partial<HostEffects>): HostEffects;
  close(): Promise<void>;
}

const sysId = (): string => randomBytes(16).toString('hex');

export async function startMidWorld(name = 'mid01', options: { instance?: Pick<InstanceOptions, 'mtlsKeyUpdate' | 'autoValidate'> } = {}): Promise<MidWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-world-'));
  const ca = await createLabCa(`World ${name}`);
  const server = await ca.issueIdentity('CN=localhost', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const instance = await startInstance({
    tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem },
    admin: { username: 'admin', password: randomBytes(12).toString('hex') },
    publishDelayMs: 50, downAfterMs: 60_000, log: () => undefined, ...options.instance,
  });
  const user = instance.admin.addUser({ userName: `mid.${name}`, roles: ['mid_server'] });
  const publish = async (table: 'sys_ca_certificate' | 'sys_user_certificate', pem: string, fields: Record<string, string>): Promise<void> => {
    const id = sysId();
    instance.admin.attach({ tableName: table, tableSysId: id, fileName: 'cert.pem', contentType: 'application/x-pem-file', body: Buffer.from(pem) });
    instance.admin.tables.insert(table, { sys_id: id, name: `${name} ${table}`, ...fields });
    await new Promise((r) => setTimeout(r, 120)); // publish delay
  };
  await publish('sys_ca_certificate', ca.chainPem, {});
  const leaf: Identity = await ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, { days: 20 });
  await publish('sys_user_certificate', leaf.certPem, { user: user.sys_id as string });
  const host = await createMidHost({ home: join(dir, name), name, instanceUrl: instance.url, auth: 'mutual', bundlePem: leaf.certPem + ca.chainPem + leaf.keyPem });
  await writeFile(join(dir, 'root.pem'), ca.root.certPem);
  // Vendor timings × 0.005: poll 200 ms, MID start 150 ms.
  const runner = new MidRunner({ caPem: ca.root.certPem, timeScale: 0.005, timings: { connectionMaxAgeMs: 0, repeatLogMs: 0 } });
  runner.register(name, host.home);
  await runner.start(name);
  const world: MidWorld = {
    dir, ca, instance, runner, host, name, serviceUserSysId: user.sys_id as string,
    publishLeaf: (certPem) => publish('sys_user_certificate', certPem, { user: user.sys_id as string }),
    midStatus: () => runner.status(name),
    effects: (overrides = {}) => ({
      paths: pathsOf(host),
      alias: 'defaultsecuritykeypairhandle',
      storepass: 'changeit',
      script: scriptRunner(pathsOf(host), { timeoutMs: 60_000 }),
      service: runnerService(runner, name),
      backups: new KeystoreBackups(join(dir, 'state', 'backups'), 3),
      journal: new Journal(join(dir, 'state')),
      verify: { settleMs: 1200, startTimeoutMs: 10_000 },
      ...overrides,
    }),
    close: async () => {
      await runner.close();
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await waitFor(() => world.midStatus().instanceStatus === 'Up', 15_000, 'the MID never came Up');
  return world;
}

export function pathsOf(host: MidHost): MidPaths {
  return { home: host.home, agentDir: host.agentDir, configXml: host.configPath, keystore: host.keystorePath, script: host.scriptPath, log: host.logPath };
}

/** The service manager stand-in: the runner in-process, with systemd's verbs. */
export function runnerService(runner: MidRunner, unit: string): ServiceManager {
  return {
    manager: 'command',
    unit,
    start: async () => { await runner.start(unit); },
    stop: async () => { await runner.stop(unit); },
    isActive: async () => runner.status(unit).state === 'active',
  };
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(message);
    await new Promise((r) => setTimeout(r, 50));
  }
}
