import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { AttachmentStore } from './attachments.js';
import { refuse } from './instance-error.js';
import type { Log } from './log.js';
import type { TableRules, TableStore } from './tables.js';
import { snowDateTime } from './time.js';
import type { PublishWord, TableRecord } from './types.js';

const CERT_TABLES = ['sys_ca_certificate', 'sys_user_certificate'];
export const PENDING = 'Pending';

/** Both words mean published (DESIGN §4: "Exists" in vendor docs, "Active" in community guides). */
export function isPublished(record: TableRecord): boolean {
  return record['publish_status'] === 'Exists' || record['publish_status'] === 'Active';
}

function isLive(record: TableRecord): boolean {
  return record['active'] === 'true' && isPublished(record);
}

export interface CertificateRulesOptions {
  tables: TableStore;
  attachments: AttachmentStore;
  publishDelayMs: number;
  publishWord: PublishWord;
  log: Log;
  /** Called whenever the set of active, published CA records may have changed. */
  onTrustChange: () => void;
}

/**
 * The certificate-table rules as documented for real instances: the PEM must be attached before
 * the record is inserted; on insert the instance reads it, fills the read-only fields and starts
 * publishing; a record saved without its attachment never publishes. One CA chain is active at a
 * time: when a chain becomes active and published, the others are deactivated.
 */
export class CertificateRules implements TableRules {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly options: CertificateRulesOptions) {}

  beforeWrite(table: string, record: TableRecord, previous: TableRecord | undefined): void {
    if (!CERT_TABLES.includes(table)) return;
    if (table === 'sys_user_certificate' && record['user'] !== previous?.['user']) this.assertUser(record['user'] ?? '');
    if (!previous) this.fillFromAttachment(table, record);
  }

  afterWrite(table: string, record: TableRecord, previous: TableRecord | undefined): void {
    if (!CERT_TABLES.includes(table)) return;
    if (!previous && record['publish_status'] === PENDING) this.schedulePublish(table, record['sys_id'] as string);
    if (table !== 'sys_ca_certificate') return;
    if (isLive(record) && !(previous && isLive(previous))) this.deactivateOtherChains(record['sys_id'] as string);
    this.options.onTrustChange();
  }

  afterDelete(table: string, record: TableRecord): void {
    if (!CERT_TABLES.includes(table)) return;
    this.cancel(record['sys_id'] as string);
    if (table === 'sys_ca_certificate') this.options.onTrustChange();
  }

  /** After a restart: records saved while pending publish after a full delay. */
  resumePending(): void {
    for (const table of CERT_TABLES) {
      for (const record of this.options.tables.rawRows(table)) {
        if (record['publish_status'] === PENDING) this.schedulePublish(table, record['sys_id'] as string);
      }
    }
  }

  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  /** Every certificate of every active, published CA record: the client-certificate trust anchors. */
  trustAnchors(): Certificate[] {
    const anchors = new Map<string, Certificate>();
    for (const record of this.options.tables.rawRows('sys_ca_certificate')) {
      if (!isLive(record)) continue;
      for (const cert of this.certificatesOf('sys_ca_certificate', record)) anchors.set(cert.sha256, cert);
    }
    return [...anchors.values()];
  }

  /** The active, published sys_user_certificate record for a leaf, by SHA-256. */
  findLiveLeaf(sha256: string): TableRecord | undefined {
    return this.options.tables.rawRows('sys_user_certificate').find((r) => r['sha256_fingerprint'] === sha256 && isLive(r));
  }

  private assertUser(userId: string): void {
    if (userId === '' || !this.options.tables.rawRows('sys_user').some((u) => u['sys_id'] === userId)) {
      throw refuse.badRequest('Invalid user', 'user must be the sys_id of a sys_user record');
    }
  }

  private fillFromAttachment(table: string, record: TableRecord): void {
    const attachments = this.options.attachments.listFor(table, record['sys_id'] as string);
    const latest = attachments[attachments.length - 1];
    if (!latest) {
      this.options.log(`${table} ${record['sys_id']} saved with no attachment: it will never publish`);
      return;
    }
    const leaf = firstCertificate(latest.content);
    if (!leaf) throw refuse.badRequest('Invalid certificate', `attachment "${latest.record['file_name']}" holds no readable certificate`);
    record['expires'] = snowDateTime(leaf.notAfter);
    record['subject'] = leaf.subjectText;
    record['issuer'] = leaf.issuerText;
    record['sha256_fingerprint'] = leaf.sha256;
    record['publish_status'] = PENDING;
  }

  /** The certificates of the attachment this record was read from (matched by fingerprint). */
  private certificatesOf(table: string, record: TableRecord): Certificate[] {
    for (const { content } of this.options.attachments.listFor(table, record['sys_id'] as string)) {
      const certs = readQuietly(content);
      if (certs[0]?.sha256 === record['sha256_fingerprint']) return certs;
    }
    return [];
  }

  private schedulePublish(table: string, sysId: string): void {
    this.cancel(sysId);
    const timer = setTimeout(() => this.publish(table, sysId), this.options.publishDelayMs);
    timer.unref();
    this.timers.set(sysId, timer);
  }

  private publish(table: string, sysId: string): void {
    this.timers.delete(sysId);
    const record = this.options.tables.rawRows(table).find((r) => r['sys_id'] === sysId);
    if (!record || record['publish_status'] !== PENDING) return;
    this.options.tables.update(table, sysId, { publish_status: this.options.publishWord }, { system: true });
    this.options.log(`${table} ${sysId} published (${record['subject']})`);
  }

  private deactivateOtherChains(keep: string): void {
    for (const other of this.options.tables.rawRows('sys_ca_certificate')) {
      if (other['sys_id'] === keep || !isLive(other)) continue;
      this.options.tables.update('sys_ca_certificate', other['sys_id'] as string, { active: 'false' }, { system: true });
      this.options.log(`sys_ca_certificate ${other['sys_id']} deactivated: chain ${keep} is now the active one`);
    }
  }

  private cancel(sysId: string): void {
    const timer = this.timers.get(sysId);
    if (timer) clearTimeout(timer);
    this.timers.delete(sysId);
  }
}

function firstCertificate(content: Buffer): Certificate | undefined {
  return readQuietly(content)[0];
}

function readQuietly(content: Buffer): Certificate[] {
  try {
    return readCertificates(content);
  } catch {
    return [];
  }
}
