import { isMidcertError } from '../../common/errors.js';
import type { Agent } from '../store/index.js';
import type { KeptPorts } from './kept-ports.js';
import type { AgentPort } from './ports.js';
import { runPool } from './waves.js';

export interface Candidate {
  agent: Agent;
  leafSha256: string;
}

export interface Skip {
  name: string;
  reason: string;
}

export type Probe = { selected: Candidate } | { skipped: Skip };

export interface SelectOptions {
  force: boolean;
  expiringWithinDays: number;
  concurrency: number;
  /** Keep each selected MID's connection in the KeptPorts for its rotation. */
  keep: boolean;
}

/** The order waves are planned in: by name, as `midcert rotate` has always listed them. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name.localeCompare(b.name);
}

/** One agent's status decides: rotate it (forced, or expiring soon) or skip it, saying why. */
export async function probe(dial: (agent: Agent) => AgentPort, agent: Agent, options: SelectOptions, kept: KeptPorts): Promise<Probe> {
  const port = dial(agent);
  let keep = false;
  try {
    const status = await port.status();
    const daysLeft = status.notAfter ? (Date.parse(status.notAfter) - Date.now()) / 86_400_000 : -Infinity;
    if (!options.force && daysLeft > options.expiringWithinDays) return { skipped: { name: agent.name, reason: `not-expiring (${Math.floor(daysLeft)} days left)` } };
    keep = options.keep;
    return { selected: { agent, leafSha256: status.leafSha256 } };
  } catch (err) {
    return { skipped: { name: agent.name, reason: `unreachable: ${isMidcertError(err) ? `[${err.code}] ${err.message}` : String(err)}` } };
  } finally {
    if (keep) kept.keep(agent.name, port);
    else port.close();
  }
}

/**
 * Probes `agents` `concurrency` at a time and reports every answer in the agents' order, as soon
 * as all before it are in: what a rotation needs to start its first MIDs before the last answers.
 * `pace` is awaited before each probe: the caller holds the probing back until it needs more
 * answers; false stops it (no later agent is asked, nor reported).
 */
export async function probeInOrder(dial: (agent: Agent) => AgentPort, agents: Agent[], options: SelectOptions, kept: KeptPorts, onProbe: (probe: Probe) => void, pace: () => Promise<boolean> = async () => true): Promise<void> {
  const answers: Array<Probe | undefined> = new Array(agents.length);
  let reported = 0;
  let stopped = false;
  await runPool(agents.map((agent, i) => ({ agent, i })), Math.max(4, options.concurrency), async ({ agent, i }) => {
    if (stopped || !(await pace())) {
      stopped = true;
      return;
    }
    answers[i] = await probe(dial, agent, options, kept);
    for (; reported < agents.length && answers[reported]; reported++) onProbe(answers[reported] as Probe);
  });
}
