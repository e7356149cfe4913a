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
  lastRefreshed: Date | undefined;
  isUsingCustomCert: boolean;
  hostName: string;
  version: string;
}

const AGENT_FIELDS = ['sys_id', 'name', 'status', 'validated', 'last_refreshed', 'is_using_custom_cert', 'host_name', 'version'];

export async function midStatus(client: InstanceClient, midName: string): Promise<MidStatus | undefined> {
  const [row] = await client.tableGet('ecc_agent', { query: `name=${queryValue(midName)}`, fields: AGENT_FIELDS, limit: 1 });
  return row && toMidStatus(row);
}

export interface WaitForUpOptions {
  /** Only a heartbeat after this instant counts (e.g. when the MID was restarted). */
  since?: Date;
  timeoutMs: number;
  pollIntervalMs?: number;
}

/** Beyond this, the instance's clock (from its Date header) is used to place `since`. */
const SKEW_TOLERANCE_MS = 2000;

/**
 * Polls until the MID reads Up with `last_refreshed` after `since`, so an Up left over from before
 * a restart does not count. last_refreshed has whole seconds and comes from the instance's clock:
 * it must be strictly later than `since` (a heartbeat in the same second is not trusted; the next
 * one is), and a controller clock more than 2 s off the instance's is corrected for.
 * HEALTH_CHECK_FAILED on timeout, with the last status seen.
 */
export async function waitForMidUp(client: InstanceClient, midName: string, options: WaitForUpOptions): Promise<MidStatus> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const status = await midStatus(client, midName);
    const offset = client.clockOffsetMs() ?? 0;
    const since = options.since && options.since.getTime() + (Math.abs(offset) > SKEW_TOLERANCE_MS ? offset : 0);
    const fresh = since === undefined || (status?.lastRefreshed !== undefined && status.lastRefreshed.getTime() > since);
    if (status?.status === 'Up' && fresh) return status;
    if (Date.now() >= deadline) {
      const seen = status ? `status ${status.status}, last_refreshed ${status.lastRefreshed?.toISOString() ?? 'never'}` : 'no ecc_agent record';
      const after = options.since ? ` with a heartbeat after ${options.since.toISOString()}` : '';
      throw new MidcertError('HEALTH_CHECK_FAILED', `MID "${midName}" did not read Up${after} within ${Math.round(options.timeoutMs / 1000)} s (last seen: ${seen})`);
    }
    await sleep(Math.min(options.pollIntervalMs ?? 2000, Math.max(1, deadline - Date.now())));
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
 * Marks the MID not validated before its conversion to mutual TLS (the vendor KB says to
 * invalidate a validated MID first). The vendor documents only the "Invalidate" UI action; over
 * REST we write `validated` = `value` (default "false") — an assumption, see docs/instance-client.md.
 */
export async function invalidateMid(client: InstanceClient, midName: string, value = 'false'): Promise<MidStatus> {
  const agent = await requireAgent(client, midName);
  return toMidStatus(await client.tablePatch('ecc_agent', agent.sysId, { validated: value }));
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
    isUsingCustomCert: isTrue(r['is_using_custom_cert']),
    hostName: r['host_name'] ?? '',
    version: r['version'] ?? '',
  };
}
