import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { sendControlRequest } from './mid/control-protocol.js';
import type { MidStatus, UnitState } from './mid/simulated-mid.js';
import { isRunning } from './processes.js';
import { InstanceRest } from './rest.js';
import { expectedParts, requireLabState, type LabPart, type LabState } from './state.js';

/**
 * `midcert-lab status`: what `up` recorded and what runs now — each process (pid alive), the
 * instance URL, and each MID: its unit state in the runner and its ecc_agent status.
 */

export interface LabStatusReport {
  dir: string;
  /** running: every process runs; stopped: none does; degraded: some do. */
  state: 'running' | 'stopped' | 'degraded';
  recorded: LabState['state'];
  /** `agents` only for a lab started with --with-agents. */
  processes: Partial<Record<LabPart, { pid: number | null; running: boolean; log: string | null }>>;
  instance: { url: string | null; answers: boolean };
  adcs: { url: string | null };
  caFile: string;
  mids: Array<{ name: string; home: string; user: string; leafNotAfter: string; unit: UnitState | 'unknown'; ecc: string; lastError?: string }>;
  /** With --with-agents: the controller data dir and each agent (listening: its mTLS port accepts connections). */
  controller?: { dataDir: string };
  agents?: Array<{ name: string; address: string; config: string; listening: boolean }>;
}

export async function labStatus(dir: string): Promise<LabStatusReport> {
  const state = await requireLabState(dir);
  const parts = expectedParts(state);
  const processes: LabStatusReport['processes'] = {};
  for (const part of parts) {
    const proc = state.processes[part];
    processes[part] = { pid: proc?.pid ?? null, running: proc ? await isRunning(proc) : false, log: proc?.log ?? null };
  }
  const running = (part: LabPart): boolean => processes[part]?.running ?? false;
  const runningCount = parts.filter(running).length;

  const units = running('runner')
    ? await sendControlRequest(state.runner.socket, { verb: 'list' }, 5000).then((r) => (r.ok ? r.units ?? [] : []), () => [] as MidStatus[])
    : [];
  const agents = state.agents && await Promise.all(state.agents.list.map(async (a) => ({
    name: a.name, address: a.address, config: a.config, listening: running('agents') && await listening(a.address),
  })));
  const { answers, ecc } = running('instance') ? await askInstance(state) : { answers: false, ecc: new Map<string, string>() };

  return {
    dir: state.dir,
    state: runningCount === parts.length ? 'running' : runningCount === 0 ? 'stopped' : 'degraded',
    recorded: state.state,
    processes,
    instance: { url: state.instance.url, answers },
    adcs: { url: state.adcs.url },
    caFile: state.caFile,
    mids: state.mids.map((m) => {
      const unit = units.find((u) => u.unit === m.unit);
      return {
        name: m.name, home: m.home, user: m.user, leafNotAfter: m.leafNotAfter,
        unit: unit?.state ?? 'unknown', ecc: ecc.get(m.name) ?? 'unknown',
        ...(unit?.lastError ? { lastError: unit.lastError } : {}),
      };
    }),
    ...(state.agents && agents ? { controller: { dataDir: state.agents.controllerDir }, agents } : {}),
  };
}

/** Whether the instance answers, and each MID's ecc_agent status (admin credentials from the lab's 0600 file). */
async function askInstance(state: LabState): Promise<{ answers: boolean; ecc: Map<string, string> }> {
  const ecc = new Map<string, string>();
  if (!state.instance.url) return { answers: false, ecc };
  const [caPem, password] = await Promise.all([
    readFile(state.caFile, 'utf8'),
    readFile(state.instance.passwordFile, 'utf8').then((t) => t.replace(/\r?\n$/, '')),
  ]).catch(() => [undefined, undefined]);
  if (caPem === undefined || password === undefined) return { answers: false, ecc };
  const rest = new InstanceRest(state.instance.url, { username: state.instance.username, password }, caPem, 5000);
  let answered = false;
  try {
    const ping = await rest.call('GET', '/adcv2/server', undefined, false);
    if (ping.status !== 200) return { answers: false, ecc };
    answered = true;
    if (state.mids.length > 0) {
      const rows = await rest.query('ecc_agent', `nameIN${state.mids.map((m) => m.name).join(',')}`, ['name', 'status']);
      for (const row of rows) if (row['name']) ecc.set(row['name'], row['status'] ?? '');
    }
    return { answers: true, ecc };
  } catch {
    return { answers: answered, ecc };
  } finally {
    rest.close();
  }
}

/** Whether something accepts TCP connections at host:port (cheap, no TLS). */
function listening(address: string, timeoutMs = 1000): Promise<boolean> {
  const at = address.lastIndexOf(':');
  return new Promise((done) => {
    const socket = connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    const finish = (ok: boolean): void => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}
