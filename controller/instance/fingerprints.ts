import { readCertificates } from '../../pki/certificate.js';
import type { CertificateRecord } from './records.js';
import type { InstanceClient } from './rest.js';

/**
 * No fingerprint field is documented for sys_ca_certificate / sys_user_certificate (vendor-facts
 * §12: "Idempotency must not depend on an undocumented fingerprint column: … download the record's
 * attachment and hash the certificate client-side"). The record's own field is used when the
 * instance has it and filled it; otherwise the SHA-256 of the first certificate of its newest
 * attachment, computed here. '' when neither is available.
 */
export async function recordSha256(client: InstanceClient, table: string, record: CertificateRecord): Promise<string> {
  if (record.sha256 !== '') return record.sha256;
  return (await attachedCertificates(client, table, record.sysId))[0]?.sha256 ?? '';
}

/** The certificates of a record's newest attachment (empty when it has none or it holds none). */
export async function attachedCertificates(client: InstanceClient, table: string, sysId: string): Promise<Array<{ sha256: string; subject: string; notAfter: string }>> {
  const attachments = (await client.listAttachments(table, sysId)).filter((a) => a['table_sys_id'] === undefined || a['table_sys_id'] === sysId);
  const newest = attachments[0];
  if (!newest?.['sys_id']) return [];
  const body = await client.downloadAttachment(newest['sys_id']);
  try {
    return readCertificates(body).map((c) => ({ sha256: c.sha256, subject: c.subjectText, notAfter: c.notAfter.toISOString() }));
  } catch {
    return [];
  }
}

/** The record with its sha256 filled from the attachment when the instance gave none. */
export async function withSha256(client: InstanceClient, table: string, record: CertificateRecord): Promise<CertificateRecord> {
  return record.sha256 !== '' ? record : { ...record, sha256: await recordSha256(client, table, record) };
}
