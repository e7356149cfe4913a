import { join } from 'node:path';
import { MidcertError } from '../common/errors.js';
import { execProgram } from '../common/exec.js';
import type { AgentConfig } from './config.js';
import { parameterValue, readConfigXml } from './mid-config.js';
import { defaultMidServiceName, windowsServiceManager } from './windows/sc.js';

/** Starts, stops and asks about the MID service, whatever runs it on this host. */
export interface ServiceManager {
  readonly manager: AgentConfig['service']['manager'];
  readonly unit: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  isActive(): Promise<boolean>;
}

/** Unit names seen in the field, tried in order when the config names none. */
export const USUAL_UNIT_NAMES = ['mid', 'snc_mid', 'mid-server', 'midserver', 'servicenow-mid'];

interface Commands {
  start: string[];
  stop: string[];
  status: string[];
}

export async function createServiceManager(cfg: AgentConfig, midHome: string): Promise<ServiceManager> {
  const svc = cfg.service;
  const timeoutMs = svc.timeoutSeconds * 1000;
  switch (svc.manager) {
    case 'command':
      return commandManager('command', '(command)', { start: svc.start!, stop: svc.stop!, status: svc.status! }, timeoutMs);
    case 'mid-scripts':
      // The MID ships start.sh/stop.sh in agent/ and a wrapper with a status verb in agent/bin.
      return commandManager('mid-scripts', 'mid.sh', {
        start: [join(midHome, 'agent', 'start.sh')],
        stop: [join(midHome, 'agent', 'stop.sh')],
        status: [join(midHome, 'agent', 'bin', 'mid.sh'), 'status'],
      }, timeoutMs);
    case 'systemd': {
      const unit = svc.unit ?? (await detectSystemdUnit());
      return commandManager('systemd', unit, { start: ['systemctl', 'start', unit], stop: ['systemctl', 'stop', unit], status: ['systemctl', 'is-active', '--quiet', unit] }, timeoutMs);
    }
    case 'windows': {
      // sc.exe stop/start/query, waiting for STOPPED/RUNNING (agent/windows/sc.ts).
      const unit = svc.unit ?? (await detectWindowsServiceName(midHome));
      return windowsServiceManager(unit, { timeoutMs });
    }
    case 'sysv': {
      const unit = svc.unit ?? (await detectSysvUnit());
      return commandManager('sysv', unit, { start: ['service', unit, 'start'], stop: ['service', unit, 'stop'], status: ['service', unit, 'status'] }, timeoutMs);
    }
  }
}

function commandManager(manager: ServiceManager['manager'], unit: string, commands: Commands, timeoutMs: number): ServiceManager {
  const run = async (verb: keyof Commands): Promise<number> => {
    const [file, ...args] = commands[verb];
    const result = await execProgram(file as string, args, { timeoutMs });
    if (result.timedOut) throw new MidcertError('SERVICE_FAILED', `${verb} of ${unit} did not finish within ${Math.round(timeoutMs / 1000)} s`);
    if (verb !== 'status' && result.code !== 0) {
      throw new MidcertError('SERVICE_FAILED', `${verb} of ${unit} exited ${result.code}`, { detail: `${result.stdout}${result.stderr}`.trim() });
    }
    return result.code;
  };
  return {
    manager,
    unit,
    start: async () => { await run('start'); },
    stop: async () => { await run('stop'); },
    isActive: async () => (await run('status')) === 0,
  };
}

async function detectSystemdUnit(): Promise<string> {
  for (const name of USUAL_UNIT_NAMES) {
    const result = await execProgram('systemctl', ['list-unit-files', '--no-legend', `${name}.service`], { timeoutMs: 10_000 });
    if (result.code === 0 && result.stdout.includes(`${name}.service`)) return name;
  }
  throw new MidcertError('CONFIG_INVALID', `service.unit is not set and none of ${USUAL_UNIT_NAMES.join(', ')} is a systemd unit here; set service.unit`);
}

/** "ServiceNow MID Server_<name>", the name from config.xml (the MID installer's service name). */
async function detectWindowsServiceName(midHome: string): Promise<string> {
  const params = await readConfigXml(join(midHome, 'agent', 'config.xml')).catch(() => undefined);
  const name = params && parameterValue(params, 'name');
  if (!name || /[\u0000-\u001f"]/.test(name) || name.startsWith('YOUR_')) {
    throw new MidcertError('CONFIG_INVALID', 'service.unit is not set and config.xml names no MID (parameter "name"); set service.unit to the MID\'s Windows service name, e.g. "ServiceNow MID Server_mid01"');
  }
  return defaultMidServiceName(name);
}

async function detectSysvUnit(): Promise<string> {
  for (const name of USUAL_UNIT_NAMES) {
    const result = await execProgram('test', ['-x', `/etc/init.d/${name}`], { timeoutMs: 5_000 });
    if (result.code === 0) return name;
  }
  throw new MidcertError('CONFIG_INVALID', `service.unit is not set and none of ${USUAL_UNIT_NAMES.join(', ')} is in /etc/init.d; set service.unit`);
}

/**
 * For status reports only (never for install health checks): answers isActive from a short cache
 * and shares one in-flight query, so a controller polling hundreds of agents does not start a
 * service-manager process per GetStatus.
 */
export function cachedStatusView<T extends ServiceManager>(service: T, ttlMs = 5000): T {
  let cached: { at: number; value: Promise<boolean> } | undefined;
  return Object.assign(Object.create(service) as T, {
    isActive: () => {
      const now = Date.now();
      if (!cached || now - cached.at > ttlMs) {
        const value = service.isActive();
        cached = { at: now, value };
        value.catch(() => { cached = undefined; });
      }
      return cached.value;
    },
  });
}
