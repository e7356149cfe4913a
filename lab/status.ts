import { readFile } from 'node:fs/promises';
import { sendControlRequest } from './mid/control-protocol.js';
import type { MidStatus, UnitState } from './mid/simulated-mid.js';
import { isRunning } from './processes.js';
import { InstanceRest } from './rest.js';
import { LAB_PARTS, requireLabState, type LabPart, type LabState } from './state.js';

/**
 * `midcert-lab status`: what `up` recorded and what runs now — each process (pid alive), the
 * instance URL, and each MID: its unit state in the runner and its ecc_agent status.
 */

export interface LabStatusReport {
  dir: string;
  /** running: every process runs; stopped: none does; degraded: some do. */
  state: 'running' | 'stopped' | 'degraded';
  recorded: LabState['state'];
  processes: Record<LabPart, { pid: number | null; running: boolean; log: string | null }>;
  instance: { url: string | null; answers: boolean };
  adcs: { url: string | null };
  caFile: string;
  mids: Array<{ name: string; home: string; user: string; leafNotAfter: string; unit: UnitState | 'unknown'; ecc: string; lastError?: string }>;
}

export async function labStatus(dir: string): Promise<LabStatusReport> {
  const state = await requireLabState(dir);
  const processes = {} as LabStatusReport['processes'];
  for (const part of LAB_PARTS) {
    const proc = state.processes[part];
    processes[part] = { pid: proc?.pid ?? null, running: proc ? await isRunning(proc) : false, log: proc?.log ?? null };
  }
  const runningCount = LAB_PARTS.filter((p) => processes[p].running).length;

  const units = processes.runner.running
    ? await sendControlRequest(state.runner.socket, { verb: 'list' }, 5000).then((r) => (r.ok ? r.units ?? [] : []), () => [] as MidStatus[])
    : [];
  const { answers, ecc } = processes.instance.running ? await askInstance(state) : { answers: false, ecc: new Map<string, string>() };

  return {
    dir: state.dir,
    state: runningCount === LAB_PARTS.length ? 'running' : runningCount === 0 ? 'stopped' : 'degraded',
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
  try {
    const ping = await rest.call('GET', '/adcv2/server', undefined, false);
    if (ping.status !== 200) return { answers: false, ecc };
    if (state.mids.length > 0) {
      const rows = await rest.query('ecc_agent', `nameIN${state.mids.map((m) => m.name).join(',')}`, ['name', 'status']);
      for (const row of rows) if (row['name']) ecc.set(row['name'], row['status'] ?? '');
    }
    return { answers: true, ecc };
  } catch {
    return { answers: ecc.size > 0, ecc };
  } finally {
    rest.close();
  }
}
