import { setTimeout as sleep } from 'node:timers/promises';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { isTrue, parseGlideDateTime } from './records.js';
import { queryValue, type InstanceClient, type TableRecord } from './rest.js';

/** The MID's ecc_agent record (DESIGN §4), typed. */
export interface MidStatus {
  sysId: string;
  name: string;
  /** Up, Down, Paused, Upgrading, … as the instance writes it. */
  status: string;
  /** The raw `validated` value ("true", "false", …). */
  validated: string;
  /** `last_refreshed` (not a documented column, vendor-facts §1) when the instance has it. */
  lastRefreshed: Date | undefined;
  /** `sys_updated_on`: moves whenever the instance writes the record (the MID's start/stop, status). */
  updatedOn: Date | undefined;
  isUsingCustomCert: boolean;
  hostName: string;
  version: string;
}

const AGENT_FIELDS = ['sys_id', 'name', 'status', 'validated', 'last_refreshed', 'sys_updated_on', 'is_using_custom_cert', 'host_name', 'version'];

export async function midStatus(client: InstanceClient, midName: string): Promise<MidStatus | undefined> {
  const rows = await client.tableGet('ecc_agent', { query: `name=${queryValue(midName)}`, fields: AGENT_FIELDS, limit: 10 });
  // Re-checked: a dropped condition returns every agent (vendor-facts §1).
  const row = rows.find((r) => r['name'] === midName);
  return row && toMidStatus(row);
}

export interface WaitForUpOptions {
  /** Only evidence after this instant counts (e.g. when the MID was restarted). */
  since?: Date;
  /** Default 600 s (the 5-minute heartbeat probe + JVM start, vendor-facts §7). */
  timeoutMs?: number;
  pollIntervalMs?: number;
  /** Confirm with an ECC queue round trip after Up (default true; docs/lab/mid-instance-protocol.md §7). */
  eccRoundTrip?: boolean;
}

/** vendor-facts §7: "Default timeout ≥ 10 min (5-min heartbeat + JVM start)". */
export const DEFAULT_UP_TIMEOUT_MS = 600_000;
/** Beyond this, the instance's clock (from its Date header) is used to place `since`. */
const SKEW_TOLERANCE_MS = 2000;
export const PING_COMMAND = 'midcert.ping';

/**
 * Waits for documented evidence that the MID is back (vendor-facts §7):
 *
 * 1. ecc_agent status `Up` with a timestamp that moved after `since` — `last_refreshed` when the
 *    instance has that (undocumented) column, else `sys_updated_on`. An `Up` alone is no evidence:
 *    the instance marks a MID Down only after an unanswered Heartbeat probe, up to 5 minutes
 *    later (SND r_MIDServerHeartbeat.md), so a stale Up can outlive a stop.
 * 2. then an ECC queue round trip: an output SystemCommand `midcert.ping` for
 *    `agent=mid.server.<name>` and its input answer (`response_to` = our sys_id). The MID polls
 *    the queue every mid.poll.time (40 s, SND ecc-queue-mid-server.md).
 *
 * Timestamps have whole seconds from the instance's clock: strictly later than `since`, and a
 * controller clock more than 2 s off the instance's is corrected for. Paused, Upgrading, Upgrade
 * Failed and unknown statuses are "not healthy yet" and reported verbatim. HEALTH_CHECK_FAILED on
 * timeout, with the last status seen.
 */
export async function waitForMidUp(client: InstanceClient, midName: string, options: WaitForUpOptions = {}): Promise<MidStatus> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_UP_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const pollMs = options.pollIntervalMs ?? 2000;
  const after = options.since ? ` with evidence after ${options.since.toISOString()}` : '';
  let up: MidStatus | undefined;
  for (;;) {
    const status = await midStatus(client, midName);
    const offset = client.clockOffsetMs() ?? 0;
    const since = options.since && options.since.getTime() + (Math.abs(offset) > SKEW_TOLERANCE_MS ? offset : 0);
    const stamp = status?.lastRefreshed ?? status?.updatedOn;
    const fresh = since === undefined || (stamp !== undefined && stamp.getTime() > since);
    if (status?.status === 'Up' && fresh) { up = status; break; }
    if (Date.now() >= deadline) {
      const seen = status ? `status ${status.status}, ${status.lastRefreshed ? 'last_refreshed' : 'sys_updated_on'} ${stamp?.toISOString() ?? 'never'}` : 'no ecc_agent record';
      throw new MidcertError('HEALTH_CHECK_FAILED', `MID "${midName}" did not read Up${after} within ${Math.round(timeoutMs / 1000)} s (last seen: ${seen})`);
    }
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  }
  if (options.eccRoundTrip === false) return up;
  await eccRoundTrip(client, midName, { deadline, pollMs, what: `MID "${midName}" read Up${after} but` });
  return up;
}

/**
 * One ECC queue round trip (protocol §7): inserts the output command and waits for the input row
 * answering it. Every row read is re-checked client-side (response_to, agent, queue).
 */
export async function eccRoundTrip(client: InstanceClient, midName: string, options: { deadline: number; pollMs: number; what?: string }): Promise<TableRecord> {
  const agent = `mid.server.${queryValue(midName)}`;
  const output = await client.tableInsert('ecc_queue', {
    agent, queue: 'output', state: 'ready', topic: 'SystemCommand', name: PING_COMMAND, source: 'midcert',
  });
  const id = output['sys_id'] ?? '';
  if (!/^[0-9a-f]{32}$/.test(id)) throw new MidcertError('INSTANCE_RESPONSE_INVALID', 'POST ecc_queue: the answer has no sys_id');
  for (;;) {
    const rows = await client.tableGet('ecc_queue', {
      query: `response_to=${id}^queue=input`, fields: ['sys_id', 'agent', 'queue', 'state', 'response_to', 'topic', 'name'], limit: 10,
    });
    const answer = rows.find((r) => r['response_to'] === id && r['queue'] === 'input' && (r['agent'] ?? agent) === agent);
    if (answer) return answer;
    if (Date.now() >= options.deadline) {
      throw new MidcertError('HEALTH_CHECK_FAILED', `${options.what ?? `MID "${midName}"`} did not answer the ECC queue command ${PING_COMMAND} (ecc_queue ${id}) in time`);
    }
    await sleep(Math.min(options.pollMs, Math.max(1, options.deadline - Date.now())));
  }
}

/**
 * Adds capabilities to a MID (a MID created under mutual auth gets none automatically). A real
 * instance keeps capabilities in ecc_agent_capability (field `capability` holds the name) and the
 * m2m row references it by sys_id; the lab has no such table and stores the name in the m2m row.
 * So: names are resolved through ecc_agent_capability when that table exists, else written as is.
 * Capabilities the MID already has are left alone.
 */
export async function addCapabilities(client: InstanceClient, midName: string, capabilityNames: readonly string[]): Promise<{ added: string[]; present: string[] }> {
  const agent = await requireAgent(client, midName);
  const names = [...new Set(capabilityNames)];
  for (const n of names) {
    if (/,/.test(queryValue(n))) throw new MidcertError('USAGE', `capability name "${n.slice(0, 80)}" holds a comma`);
  }
  const values = await capabilityValues(client, names);
  const rows = await client.tableGet('ecc_agent_capability_m2m', { query: `agent=${agent.sysId}`, fields: ['capability'] });
  const held = new Set(rows.map((r) => r['capability']));
  const added: string[] = [];
  const present: string[] = [];
  for (const name of names) {
    const value = values.get(name) as string;
    if (held.has(value)) {
      present.push(name);
      continue;
    }
    await client.tableInsert('ecc_agent_capability_m2m', { agent: agent.sysId, capability: value });
    added.push(name);
  }
  return { added, present };
}

async function capabilityValues(client: InstanceClient, names: string[]): Promise<Map<string, string>> {
  let rows: TableRecord[];
  try {
    rows = await client.tableGet('ecc_agent_capability', { query: `capabilityIN${names.join(',')}`, fields: ['sys_id', 'capability'] });
  } catch (err) {
    // No capability table (the lab): the m2m row holds the name. Real instances answer 400 "Invalid table", the lab 404.
    if (isMidcertError(err) && /Invalid table/i.test(err.message) && (err.code === 'INSTANCE_NOT_FOUND' || err.code === 'INSTANCE_BAD_REQUEST')) {
      return new Map(names.map((n) => [n, n]));
    }
    throw err;
  }
  const byName = new Map(rows.map((r) => [r['capability'] ?? '', r['sys_id'] ?? '']));
  const missing = names.filter((n) => !byName.get(n));
  if (missing.length > 0) throw new MidcertError('INSTANCE_NOT_FOUND', `no such MID capability on the instance: ${missing.join(', ')}`);
  return new Map(names.map((n) => [n, byName.get(n) as string]));
}

/**
 * Sets ecc_agent.validated (default "false"). Low level; for the conversion use
 * invalidateForConversion. NEVER for an mTLS MID (vendor-facts §5: invalidation queues
 * delete_mid_keypair, which deletes the MID's custom certificate, and an mTLS MID "cannot be
 * re-keyed or validated as a UI action", SND install-mid-mutual-auth.md): refused with USAGE.
 */
export async function invalidateMid(client: InstanceClient, midName: string, value = 'false'): Promise<MidStatus> {
  const agent = await requireAgent(client, midName);
  if (agent.isUsingCustomCert) {
    throw new MidcertError('USAGE', `MID "${midName}" uses a custom (mutual-auth) certificate: invalidating it would delete that certificate (delete_mid_keypair) and it cannot be validated again from the instance`);
  }
  return toMidStatus(await client.tablePatch('ecc_agent', agent.sysId, { validated: value }));
}

/**
 * The documented step before converting a validated basic-auth MID to mutual auth (SND
 * install-mid-mutual-auth.md step 8: "If the MID Server is validated, invalidate the MID Server
 * before continuing"), done BEFORE the certificate is installed so the queued delete_mid_keypair
 * deletes the old self-signed pair, not the new one (vendor-facts §5). Waits until the MID has
 * processed that command (its output row reads processed, or an input row answers it), so the
 * import that follows cannot be deleted by it. A MID that is not validated is left alone.
 */
export async function invalidateForConversion(client: InstanceClient, midName: string, options: { timeoutMs?: number; pollIntervalMs?: number } = {}): Promise<{ invalidated: boolean; command?: string }> {
  const agent = await requireAgent(client, midName);
  if (agent.isUsingCustomCert) {
    throw new MidcertError('USAGE', `MID "${midName}" already uses a custom (mutual-auth) certificate: it is never invalidated (that would delete its certificate)`);
  }
  if (agent.validated !== 'true') return { invalidated: false };
  const startedAt = Date.now();
  await invalidateMid(client, midName, 'false');
  const deadline = startedAt + (options.timeoutMs ?? DEFAULT_UP_TIMEOUT_MS);
  const queue = `mid.server.${queryValue(midName)}`;
  for (;;) {
    const rows = await client.tableGet('ecc_queue', {
      query: `agent=${queue}^source=delete_mid_keypair^ORDERBYDESCsys_created_on`, fields: ['sys_id', 'agent', 'queue', 'source', 'state', 'response_to', 'sys_created_on'], limit: 20,
    });
    const mine = rows.filter((r) => r['agent'] === queue && r['source'] === 'delete_mid_keypair');
    const command = mine.find((r) => r['queue'] === 'output');
    if (command && (command['state'] === 'processed' || mine.some((r) => r['queue'] === 'input' && r['response_to'] === command['sys_id']))) {
      return { invalidated: true, command: command['sys_id'] ?? '' };
    }
    if (Date.now() >= deadline) {
      const seen = command ? `delete_mid_keypair ${command['sys_id']} reads state "${command['state']}"` : 'no delete_mid_keypair command is visible in ecc_queue';
      throw new MidcertError('HEALTH_CHECK_FAILED', `MID "${midName}" was invalidated but did not process the delete_mid_keypair command in time (${seen}); do not install the certificate yet`);
    }
    await sleep(Math.min(options.pollIntervalMs ?? 2000, Math.max(1, deadline - Date.now())));
  }
}

async function requireAgent(client: InstanceClient, midName: string): Promise<MidStatus> {
  const agent = await midStatus(client, midName);
  if (!agent) throw new MidcertError('MID_NOT_FOUND', `the instance has no ecc_agent named "${midName}"`);
  return agent;
}

function toMidStatus(r: TableRecord): MidStatus {
  return {
    sysId: r['sys_id'] ?? '',
    name: r['name'] ?? '',
    status: r['status'] ?? '',
    validated: r['validated'] ?? '',
    lastRefreshed: parseGlideDateTime(r['last_refreshed']),
    updatedOn: parseGlideDateTime(r['sys_updated_on']),
    isUsingCustomCert: isTrue(r['is_using_custom_cert']),
    hostName: r['host_name'] ?? '',
    version: r['version'] ?? '',
  };
}
