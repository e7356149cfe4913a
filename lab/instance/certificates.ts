import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { AttachmentStore } from './attachments.js';
import { refuse } from './instance-error.js';
import type { Log } from './log.js';
import type { TableRules, TableStore } from './tables.js';
import { snowDateTime } from './time.js';
import type { PublishWord, TableRecord } from './types.js';

const CERT_TABLES = ['sys_ca_certificate', 'sys_user_certificate'];
export const PENDING = 'Pending';

/** Both words mean published ("Exists" documented, SND install-mid-mutual-auth.md; "Active" a lab alternative, vendor-facts §12). */
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
  /** Deactivate other chains when one becomes live (lab test mode; not documented, vendor-facts §10). */
  oneActiveChain: boolean;
  /** Called whenever the set of active, published CA records may have changed. */
  onTrustChange: () => void;
}

/**
 * The certificate-table rules: the instance reads the attached PEM when the record is saved,
 * fills the read-only fields and starts publishing ("During the certificate upload, the read-only
 * fields … are extracted and auto-populated", SND set-up-mutual-auth.md). A record saved with no
 * attachment does not publish until it is saved again (a client update) after the PEM was
 * attached — the UI flow "upload the certificate. Click Submit" and the Attachment-404 fallback
 * (vendor-facts §13). Several CA chains may be active at once (nothing documents automatic
 * deactivation, vendor-facts §10); option oneActiveChain restores the old lab rule.
 */
export class CertificateRules implements TableRules {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly options: CertificateRulesOptions) {}

  beforeWrite(table: string, record: TableRecord, previous: TableRecord | undefined, system: boolean): void {
    if (!CERT_TABLES.includes(table)) return;
    if (table === 'sys_user_certificate' && record['user'] !== previous?.['user']) this.assertUser(record['user'] ?? '');
    if (!previous) this.fillFromAttachment(table, record, true);
    else if (!system && (previous['publish_status'] ?? '') === '') this.fillFromAttachment(table, record, false);
  }

  afterWrite(table: string, record: TableRecord, previous: TableRecord | undefined): void {
    if (!CERT_TABLES.includes(table)) return;
    if (record['publish_status'] === PENDING && previous?.['publish_status'] !== PENDING) this.schedulePublish(table, record['sys_id'] as string);
    if (table === 'sys_user_certificate') {
      if (!previous || record['name'] !== previous['name']) this.checkLeafName(record);
      return;
    }
    if (this.options.oneActiveChain && isLive(record) && !(previous && isLive(previous))) this.deactivateOtherChains(record['sys_id'] as string);
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

  /**
   * SND install-mid-mutual-auth.md step 9: "The record must have the MID Server's name". The lab
   * warns (log) when the name is no ecc_agent's (vendor-facts §11); it does not refuse.
   */
  private checkLeafName(record: TableRecord): void {
    const name = record['name'] ?? '';
    if (!this.options.tables.rawRows('ecc_agent').some((a) => a['name'] === name)) {
      this.options.log(`sys_user_certificate ${record['sys_id']} is named "${name.slice(0, 80)}", which is no MID Server's name (the record must have the MID Server's name)`);
    }
  }

  private fillFromAttachment(table: string, record: TableRecord, onInsert: boolean): void {
    const attachments = this.options.attachments.listFor(table, record['sys_id'] as string);
    const latest = attachments[attachments.length - 1];
    if (!latest) {
      if (onInsert) this.options.log(`${table} ${record['sys_id']} saved with no attachment: it publishes only if saved again after the PEM is attached`);
      return;
    }
    const leaf = firstCertificate(latest.content);
    if (!leaf) throw refuse.badRequest('Invalid certificate', `attachment "${latest.record['file_name']}" holds no readable certificate`);
    record['expires'] = snowDateTime(leaf.notAfter);
    record['subject'] = leaf.subjectText;
    record['issuer'] = leaf.issuerText;
    record['sha256_fingerprint'] = leaf.sha256;
    record['publish_status'] = PENDING;
    if (!onInsert) this.options.log(`${table} ${record['sys_id']} saved again with its attachment: publishing`);
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
