import { constants, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import { refuse } from './instance-error.js';
import type { Log } from './log.js';
import type { TableRules, TableStore } from './tables.js';
import { snowDateTime } from './time.js';
import { AGENT_STATUSES, VALIDATED_VALUES, type TableRecord } from './types.js';

/**
 * The instance side of docs/lab/mid-instance-protocol.md (vendor-facts §5, §7): MID polls carry
 * command responses; commands are ecc_queue output rows; the "MID Server Monitor" sends a
 * HeartbeatProbe to every Up MID each period and marks a MID Down when the previous round's probe
 * is still unanswered (SND servicenow-platform/mid-server/r_MIDServerHeartbeat.md: "send a
 * synthetic transaction via the Heartbeat probe to every MID Server every 5 minutes … If the
 * instance does not detect a response from a MID Server, the instance marks that MID Server as
 * Down"). Period = 300 s × timeScale.
 */

/** What the MID answers to a command (protocol §1). */
export interface CommandResponse {
  response_to: string;
  topic: string;
  name: string;
  payload: string;
}

export interface Poll {
  name: string;
  hostName: string;
  version: string;
  ipAddress: string;
  starting: boolean;
  /** SPKI PEM of the MID's defaultsecuritykeypairhandle key, or '' when not sent. */
  publicKey: string;
  responses: CommandResponse[];
  credentialOk: boolean | undefined;
  /** mutual TLS (a client certificate) or Basic auth (a mid_server user). */
  auth: 'mtls' | 'basic';
}

export interface PollAnswer {
  record: TableRecord;
  commands: Array<{ sys_id: string; topic: string; name: string; source: string; payload: string }>;
  credential?: string;
}

export interface AgentMonitorOptions {
  timeScale: number;
  autoValidate: boolean;
  mtlsKeyUpdate: 'update' | 'keep';
  log: Log;
}

/** The vendor's monitor period (r_MIDServerHeartbeat.md: every 5 minutes). */
export const MONITOR_PERIOD_MS = 300_000;
export const HEARTBEAT_PROBE = 'HeartbeatProbe';
export const DELETE_MID_KEYPAIR = 'delete_mid_keypair';
/** The fixed lab secret the credential probe encrypts (protocol §5). Not a real credential. */
export const LAB_TEST_SECRET = 'midcert-lab-credential-probe';
const PENDING_STATES = ['ready', 'processing'];

export function agentQueueName(midName: string): string {
  return `mid.server.${midName}`;
}

export class AgentMonitor implements TableRules {
  private readonly timer: NodeJS.Timeout;
  /** EC keys logged once per agent (the credential probe is RSA only). */
  private readonly skippedKeys = new Set<string>();
  readonly periodMs: number;

  constructor(private readonly tables: TableStore, private readonly options: AgentMonitorOptions) {
    this.periodMs = Math.max(10, Math.round(MONITOR_PERIOD_MS * options.timeScale));
    this.timer = setInterval(() => this.runMonitor(), this.periodMs);
    this.timer.unref();
  }

  /** One accepted MID poll (protocol §1–§5). */
  poll(beat: Poll): PollAnswer {
    const now = new Date();
    const queue = agentQueueName(beat.name);
    for (const response of beat.responses) this.recordResponse(queue, response, now);
    if (beat.credentialOk === false) {
      this.options.log(`ecc_agent "${beat.name}" reports it cannot decrypt the credential probe (encryption keys do not match)`);
    }
    const existing = this.tables.rawRows('ecc_agent').find((a) => a['name'] === beat.name);
    const fields: Record<string, string> = {
      name: beat.name, host_name: beat.hostName, version: beat.version, ip_address: beat.ipAddress,
      last_refreshed: snowDateTime(now), is_using_custom_cert: beat.auth === 'mtls' ? 'true' : 'false',
    };
    const status = existing?.['status'] ?? 'Down';
    // Protocol §3 (mid_server.up event: from Down, Paused or Upgrading to Up, r_MIDServerHeartbeat.md).
    if (!existing || beat.starting || status === 'Down') fields['status'] = 'Up';
    Object.assign(fields, this.validation(beat, existing, now));
    const record = existing
      ? this.tables.update('ecc_agent', existing['sys_id'] as string, fields, { system: true })
      : this.tables.insert('ecc_agent', fields, { system: true });
    if (record['status'] === 'Up' && status !== 'Up') this.options.log(`ecc_agent "${beat.name}" is Up (host ${beat.hostName}, ${beat.auth})`);
    const answer: PollAnswer = { record, commands: this.deliver(queue) };
    const credential = this.credentialFor(record);
    if (credential !== undefined) answer.credential = credential;
    return answer;
  }

  /** A MID Server Monitor round (protocol §3). */
  runMonitor(): void {
    const now = snowDateTime(new Date());
    const queueRows = this.tables.rawRows('ecc_queue');
    // Answered probes of earlier rounds are of no further use; keep the queue small.
    for (const row of queueRows) {
      if (row['topic'] === HEARTBEAT_PROBE && row['state'] === 'processed') this.tables.delete('ecc_queue', row['sys_id'] as string);
    }
    for (const agent of this.tables.rawRows('ecc_agent')) {
      if (agent['status'] !== 'Up') continue;
      const queue = agentQueueName(agent['name'] ?? '');
      const unanswered = this.tables.rawRows('ecc_queue').some((r) => r['agent'] === queue && r['queue'] === 'output'
        && r['topic'] === HEARTBEAT_PROBE && PENDING_STATES.includes(r['state'] ?? ''));
      if (unanswered) {
        this.tables.update('ecc_agent', agent['sys_id'] as string, { status: 'Down' }, { system: true });
        this.options.log(`ecc_agent "${agent['name']}" is Down: no answer to the HeartbeatProbe of the previous MID Server Monitor round`);
        continue;
      }
      this.tables.insert('ecc_queue', {
        agent: queue, queue: 'output', state: 'ready', topic: HEARTBEAT_PROBE, name: HEARTBEAT_PROBE, source: 'MID Server Monitor',
        payload: `<parameters><parameter name="sent" value="${now}"/></parameters>`,
      }, { system: true });
    }
  }

  /** Client writes to ecc_agent: validated values, invalidate → delete_mid_keypair, no validate for mTLS MIDs. */
  beforeWrite(table: string, record: TableRecord, previous: TableRecord | undefined, system: boolean): void {
    if (table !== 'ecc_agent' || system) return;
    const validated = record['validated'] ?? '';
    if (!(VALIDATED_VALUES as readonly string[]).includes(validated)) {
      throw refuse.badRequest('Invalid value', `validated must be one of ${VALIDATED_VALUES.map((v) => `"${v}"`).join(', ')}`);
    }
    if (!(AGENT_STATUSES as readonly string[]).includes(record['status'] ?? '')) {
      throw refuse.badRequest('Invalid value', `status must be one of ${AGENT_STATUSES.join(', ')}`);
    }
    // SND install-mid-mutual-auth.md: "A MID Server using mutual authentication cannot be re-keyed
    // or validated as a UI action on the instance." (protocol §6)
    const validating = (validated === 'true' || validated === 'validating' || validated === 'rekey') && validated !== previous?.['validated'];
    if (previous && validating && previous['is_using_custom_cert'] === 'true') {
      throw refuse.badRequest('Operation Failed', `MID Server "${previous['name']}" uses mutual authentication: it cannot be validated or re-keyed as a UI action`);
    }
  }

  afterWrite(table: string, record: TableRecord, previous: TableRecord | undefined, system: boolean): void {
    if (table !== 'ecc_agent' || system) return;
    if (record['validated'] === 'false' && previous && previous['validated'] !== 'false') this.queueInvalidate(record);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Invalidate = cancel pending delete_mid_keypair, queue a new one (vendor-facts §5, "invalidate
   * the MID server. This will create a delete_mid_keypair system command in the ecc_queue",
   * SND mid-unified-keystore.md; MIDServerManage script include).
   */
  private queueInvalidate(agent: TableRecord): void {
    const queue = agentQueueName(agent['name'] ?? '');
    for (const row of this.pendingKeypairDeletes(queue)) {
      this.tables.update('ecc_queue', row['sys_id'] as string, { state: 'processed', error_string: 'superseded by a newer Invalidate' }, { system: true });
    }
    this.tables.insert('ecc_queue', {
      agent: queue, queue: 'output', state: 'ready', topic: 'SystemCommand', name: 'Invalidate', source: DELETE_MID_KEYPAIR, payload: '',
    }, { system: true });
    this.options.log(`ecc_agent "${agent['name']}" invalidated: delete_mid_keypair queued`);
  }

  private pendingKeypairDeletes(queue: string): TableRecord[] {
    return this.tables.rawRows('ecc_queue').filter((r) => r['agent'] === queue && r['queue'] === 'output'
      && r['source'] === DELETE_MID_KEYPAIR && PENDING_STATES.includes(r['state'] ?? ''));
  }

  /** public_key and validated after this poll (protocol §4). */
  private validation(beat: Poll, existing: TableRecord | undefined, now: Date): Record<string, string> {
    const stored = existing?.['public_key'] ?? '';
    const validated = existing?.['validated'] ?? 'false';
    const presented = beat.publicKey;
    // While a delete_mid_keypair is pending, the old key is about to go: nothing is validated.
    if (existing && this.pendingKeypairDeletes(agentQueueName(beat.name)).length > 0) return {};
    const out: Record<string, string> = {};
    const validate = (): void => {
      if (validated !== 'true') Object.assign(out, { validated: 'true', validated_at: snowDateTime(now), validated_by: 'midcert-lab' });
    };
    if (beat.auth === 'mtls') {
      // "MID Server then connects to the instance and auto-validates" (SND mid-build-docker-linux.md).
      if (presented !== '' && (stored === '' || validated !== 'true' || (presented !== stored && this.options.mtlsKeyUpdate === 'update'))) {
        out['public_key'] = presented;
      } else if (presented !== '' && presented !== stored) {
        this.options.log(`ecc_agent "${beat.name}" presents a new public key; mtlsKeyUpdate=keep keeps the stored one`);
      }
      validate();
      return out;
    }
    if (validated === 'true') {
      if (stored === '' && presented !== '') out['public_key'] = presented;
      return out;
    }
    if (presented !== '') out['public_key'] = presented;
    // "validating" means an admin clicked Validate: the MID's answer completes it (t_ValidateAMIDServer.md).
    if (validated === 'validating' || this.options.autoValidate) validate();
    return out;
  }

  private recordResponse(queue: string, response: CommandResponse, now: Date): void {
    const output = this.tables.rawRows('ecc_queue').find((r) => r['sys_id'] === response.response_to && r['agent'] === queue && r['queue'] === 'output');
    if (!output) {
      this.options.log(`${queue} answered an unknown command ${response.response_to.slice(0, 40)}: ignored`);
      return;
    }
    this.tables.insert('ecc_queue', {
      agent: queue, queue: 'input', state: 'processed', processed: snowDateTime(now), response_to: response.response_to,
      topic: response.topic || (output['topic'] ?? ''), name: response.name || (output['name'] ?? ''), source: output['source'] ?? '',
      payload: response.payload,
    }, { system: true });
    this.tables.update('ecc_queue', output['sys_id'] as string, { state: 'processed', processed: snowDateTime(now) }, { system: true });
  }

  /** Ready output rows for this MID; delivering them sets state=processing (protocol §2). */
  private deliver(queue: string): PollAnswer['commands'] {
    const ready = this.tables.rawRows('ecc_queue').filter((r) => r['agent'] === queue && r['queue'] === 'output' && r['state'] === 'ready');
    return ready.map((row) => {
      this.tables.update('ecc_queue', row['sys_id'] as string, { state: 'processing' }, { system: true });
      return { sys_id: row['sys_id'] as string, topic: row['topic'] ?? '', name: row['name'] ?? '', source: row['source'] ?? '', payload: row['payload'] ?? '' };
    });
  }

  /**
   * Protocol §5: base64 of RSA-OAEP (SHA-256) of the lab secret to the stored public key, when
   * validated (t_RekeyAMIDServer.md: "credentials are secured by encrypting them in the instance
   * with the MID Server's trusted public key"). EC keys: skipped with a log line.
   */
  private credentialFor(record: TableRecord): string | undefined {
    const pem = record['public_key'] ?? '';
    if (pem === '' || record['validated'] !== 'true') return undefined;
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      return this.skip(record, 'its stored public key does not parse');
    }
    if (key.asymmetricKeyType !== 'rsa') return this.skip(record, `its key is ${key.asymmetricKeyType ?? 'unknown'}, not RSA`);
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(LAB_TEST_SECRET)).toString('base64');
  }

  private skip(record: TableRecord, why: string): undefined {
    const id = `${record['sys_id']}:${(record['public_key'] ?? '').length}`;
    if (!this.skippedKeys.has(id)) {
      this.skippedKeys.add(id);
      this.options.log(`ecc_agent "${record['name']}": no credential probe, ${why}`);
    }
    return undefined;
  }
}
