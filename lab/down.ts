import { rm } from 'node:fs/promises';
import { stopProcess, waitGone, type StopOutcome } from './processes.js';
import { acquireLabLock, labPaths, readLabState, writeLabState, type LabPart, type LabState } from './state.js';

/**
 * `midcert-lab down`: stops every process `up` recorded (the agents process first, when the lab
 * has agents; then the MID runner, so each MID logs its shutdown and stops heartbeating; then ADCS
 * and the instance, which writes its state file),
 * SIGTERM then SIGKILL after a grace period, and removes the runner socket. Idempotent: a lab
 * that is already stopped, or no lab at all, is not an error.
 */

export interface StoppedPart {
  part: LabPart;
  pid: number;
  outcome: StopOutcome;
}

export interface DownResult {
  dir: string;
  /** False when DIR holds no lab.json. */
  found: boolean;
  stopped: StoppedPart[];
}

export async function downLab(dir: string, options: { graceMs: number }): Promise<DownResult> {
  const paths = labPaths(dir);
  const state = await readLabState(paths.dir);
  if (!state) return { dir: paths.dir, found: false, stopped: [] };
  const release = await acquireLabLock(paths.dir);
  try {
    // Read again under the lock: an `up` that held it may have recorded more processes since.
    const current = (await readLabState(paths.dir)) ?? state;
    const stopped = await stopLabProcesses(current, options.graceMs);
    if (current.state !== 'failed') current.state = 'stopped';
    await writeLabState(current);
    return { dir: paths.dir, found: true, stopped };
  } finally {
    await release();
  }
}

/** Stops the recorded processes (only those that are still the very processes recorded). */
export async function stopLabProcesses(state: LabState, graceMs: number): Promise<StoppedPart[]> {
  const stop = async (part: LabPart): Promise<StoppedPart | undefined> => {
    const proc = state.processes[part];
    return proc ? { part, pid: proc.pid, outcome: await stopProcess(proc, graceMs) } : undefined;
  };
  // The agents first: they drive the MIDs (a rotation in flight stops before its MID vanishes).
  // The runner goes as soon as the agents process has exited; init may reap it a little later.
  const stoppingAgents = stop('agents');
  stoppingAgents.catch(() => undefined); // settled below
  const agentsProc = state.processes.agents;
  if (agentsProc) await Promise.race([stoppingAgents.catch(() => undefined), waitGone(agentsProc, graceMs + 5000)]);
  const [runner] = await Promise.allSettled([stop('runner')]);
  const others = await Promise.allSettled([stop('adcs'), stop('instance')]);
  const [agents] = await Promise.allSettled([stoppingAgents]);
  if (agents?.status === 'fulfilled') for (const agent of state.agents?.list ?? []) await rm(agent.socket, { force: true });
  await rm(state.runner.socket, { force: true });
  const all = [agents, runner, ...others] as PromiseSettledResult<StoppedPart | undefined>[];
  const failure = all.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failure) throw failure.reason;
  return all.map((o) => (o.status === 'fulfilled' ? o.value : undefined)).filter((s): s is StoppedPart => s !== undefined);
}
