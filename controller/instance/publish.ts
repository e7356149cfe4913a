import { setTimeout as sleep } from 'node:timers/promises';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { certificateToPem, readCertificates, type Certificate } from '../../pki/certificate.js';
import {
  CERTIFICATE_FIELDS, LEAF_FIELDS, isPending, newSysId, toCertificateRecord, type CertificateRecord,
} from './records.js';
import { queryValue, type InstanceClient, type TableRecord } from './rest.js';

/**
 * Publishing certificates to the instance the documented way (DESIGN §4): pick a sys_id, upload
 * the PEM as an attachment to it FIRST, then insert the record with that sys_id (a record saved
 * without its attachment never publishes), then poll until publish_status reads Exists or Active.
 * Idempotent by the SHA-256 of the (first) certificate: an active record for it that is published
 * is returned as is, one still Pending is waited for; nothing is uploaded twice.
 */
export interface PublishSettings {
  client: InstanceClient;
  publishTimeoutMs: number;
  pollIntervalMs: number;
}

export type CertificateTable = 'sys_ca_certificate' | 'sys_user_certificate';

export async function publishCaChain(s: PublishSettings, chainPem: string, name: string): Promise<CertificateRecord> {
  const certs = certificatesOf(chainPem, 'the CA chain');
  return publish(s, 'sys_ca_certificate', certs, 'active=true', { name, type: 'trust_store_ca', format: 'pem', active: 'true' });
}

/** Only the first certificate (the leaf) is uploaded, whatever else the PEM carries. */
export async function publishLeaf(s: PublishSettings, certPem: string, userSysId: string, name: string): Promise<CertificateRecord> {
  const [leaf] = certificatesOf(certPem, 'the leaf certificate') as [Certificate];
  return publish(s, 'sys_user_certificate', [leaf], `user=${queryValue(userSysId)}^active=true`,
    { name, user: userSysId, type: 'client_cert', format: 'pem', active: 'true' });
}

/** Polls one record until it is published; INSTANCE_PUBLISH_TIMEOUT after `publishTimeoutMs`. */
export async function waitForPublished(s: PublishSettings, table: CertificateTable, sysId: string): Promise<CertificateRecord> {
  const deadline = Date.now() + s.publishTimeoutMs;
  for (;;) {
    const record = toCertificateRecord(await s.client.tableGetOne(table, sysId, { fields: fieldsOf(table) }));
    if (record.published) return record;
    if (Date.now() >= deadline) {
      const hint = record.publishStatus === '' ? ' (empty: the instance saw no attachment when the record was saved)' : '';
      throw new MidcertError('INSTANCE_PUBLISH_TIMEOUT',
        `${table} ${sysId} still reads publish_status "${record.publishStatus}"${hint} after ${Math.round(s.publishTimeoutMs / 1000)} s`);
    }
    await sleep(Math.min(s.pollIntervalMs, Math.max(1, deadline - Date.now())));
  }
}

async function publish(s: PublishSettings, table: CertificateTable, certs: Certificate[], sameScope: string, fields: Record<string, string>): Promise<CertificateRecord> {
  const sha256 = (certs[0] as Certificate).sha256;
  // Filtered here rather than in the query: instances print fingerprints in more than one format.
  const candidates = (await s.client.tableGet(table, { query: sameScope, fields: fieldsOf(table) }))
    .map(toCertificateRecord).filter((r) => r.active && r.sha256 === sha256);
  const published = candidates.find((r) => r.published);
  if (published) return published;
  const pending = candidates.find((r) => isPending(r.publishStatus));
  if (pending) return waitForPublished(s, table, pending.sysId);

  const sysId = newSysId();
  const pem = certs.map(certificateToPem).join('');
  const attachment = await uploadAttachment(s.client, table, sysId, pem);
  await insertWithId(s.client, table, sysId, fields, attachment);
  return waitForPublished(s, table, sysId);
}

/** Re-encodes what was parsed (no Bag Attributes, LF only); a private key is refused, never sent. */
function certificatesOf(pem: string, what: string): Certificate[] {
  if (/PRIVATE KEY-----/.test(pem)) {
    throw new MidcertError('PRIVATE_KEY_REFUSED', `${what} holds a private key; it is never sent to the instance`);
  }
  const certs = readCertificates(Buffer.from(pem, 'utf8'));
  if (certs.length === 0) throw new MidcertError('CERT_MALFORMED', `${what} holds no certificate`);
  return certs;
}

const isAmbiguous = (err: unknown): boolean => isMidcertError(err) && (err.code === 'INSTANCE_TIMEOUT' || err.code === 'INSTANCE_UNAVAILABLE');

/** Uploads the PEM; when the answer was lost, the attachment list for our sys_id tells what happened. */
async function uploadAttachment(client: InstanceClient, table: CertificateTable, sysId: string, pem: string): Promise<string | undefined> {
  try {
    const attachment = await client.attach(table, sysId, `${table === 'sys_ca_certificate' ? 'ca-chain' : 'client-cert'}.pem`, 'application/x-pem-file', pem);
    return attachment['sys_id'];
  } catch (err) {
    if (!isAmbiguous(err)) throw err;
    const [found] = await client.listAttachments(table, sysId);
    if (!found) throw err;
    return found['sys_id'];
  }
}

/**
 * Inserts the record under our sys_id. The id being ours makes a lost answer checkable: read the
 * record back. A definite refusal removes the attachment it would have used (best effort).
 */
async function insertWithId(client: InstanceClient, table: CertificateTable, sysId: string, fields: Record<string, string>, attachmentId: string | undefined): Promise<TableRecord> {
  try {
    return await client.tableInsert(table, { sys_id: sysId, ...fields });
  } catch (err) {
    if (isAmbiguous(err)) {
      const found = await client.tableGetOne(table, sysId).catch((e: unknown) => {
        if (isMidcertError(e) && e.code === 'INSTANCE_NOT_FOUND') return undefined;
        throw e;
      });
      if (found) return found;
    } else if (attachmentId) {
      await client.deleteAttachment(attachmentId).catch(() => undefined);
    }
    throw err;
  }
}

function fieldsOf(table: CertificateTable): readonly string[] {
  return table === 'sys_user_certificate' ? LEAF_FIELDS : CERTIFICATE_FIELDS;
}
