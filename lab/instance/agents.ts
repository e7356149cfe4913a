import type { Log } from './log.js';
import type { TableRules, TableStore } from './tables.js';
import { parseSnowDateTime, snowDateTime } from './time.js';
import type { TableRecord } from './types.js';

export interface Heartbeat {
  name: string;
  hostName: string;
  version: string;
  ipAddress: string;
}

/**
 * ecc_agent status from heartbeats: a heartbeat makes the record Up; an Up record whose last
 * heartbeat is older than downAfterMs reads Down. Settled before every read of the table (so a
 * read is exact) and by a light sweep (so the log and the state file follow without readers).
 */
export class AgentMonitor implements TableRules {
  /** ecc_agent sys_id → epoch ms of the last accepted heartbeat (ms precision; last_refreshed has seconds). */
  private readonly lastBeat = new Map<string, number>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly tables: TableStore, private readonly downAfterMs: number, private readonly log: Log) {
    this.sweep = setInterval(() => this.settle(), Math.max(100, Math.min(downAfterMs / 2, 5000)));
    this.sweep.unref();
  }

  heartbeat(beat: Heartbeat): TableRecord {
    const now = Date.now();
    const existing = this.tables.rawRows('ecc_agent').find((a) => a['name'] === beat.name);
    const fields = {
      name: beat.name, status: 'Up', validated: 'true', host_name: beat.hostName, version: beat.version,
      ip_address: beat.ipAddress, last_refreshed: snowDateTime(new Date(now)), is_using_custom_cert: 'true',
    };
    const record = existing
      ? this.tables.update('ecc_agent', existing['sys_id'] as string, fields)
      : this.tables.insert('ecc_agent', fields);
    this.lastBeat.set(record['sys_id'] as string, now);
    if (existing?.['status'] !== 'Up') this.log(`ecc_agent "${beat.name}" is Up (host ${beat.hostName})`);
    return record;
  }

  beforeRead(table: string): void {
    if (table === 'ecc_agent') this.settle();
  }

  afterDelete(table: string, record: TableRecord): void {
    if (table === 'ecc_agent') this.lastBeat.delete(record['sys_id'] as string);
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  private settle(): void {
    const now = Date.now();
    for (const agent of this.tables.rawRows('ecc_agent')) {
      if (agent['status'] !== 'Up') continue;
      const last = this.lastBeat.get(agent['sys_id'] as string) ?? parseSnowDateTime(agent['last_refreshed'] ?? '');
      if (last === undefined || now - last <= this.downAfterMs) continue;
      this.tables.update('ecc_agent', agent['sys_id'] as string, { status: 'Down' }, { system: true });
      this.log(`ecc_agent "${agent['name']}" is Down: no heartbeat for ${now - last} ms`);
    }
  }
}
