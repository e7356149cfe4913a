import { setTimeout as sleep } from 'node:timers/promises';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { certificateToPem, readCertificates, type Certificate } from '../../pki/certificate.js';
import { withSha256 } from './fingerprints.js';
import {
  CERTIFICATE_FIELDS, LEAF_FIELDS, isPending, newSysId, toCertificateRecord, type CertificateRecord,
} from './records.js';
import { queryValue, type InstanceClient, type TableRecord } from './rest.js';

/**
 * Publishing certificates to the instance. Primary path (what public automation does, vendor-facts
 * §13): pick a sys_id, upload the PEM as an attachment to it FIRST, then insert the record with that
 * sys_id. The Attachment API documents 404 for a table_sys_id with no record (SND
 * api-reference/rest-apis/c_AttachmentAPI.md); on that 404 the fallback is: insert the record
 * with active=false, attach the PEM to it, then PATCH active=true (re-saving lets the instance read
 * the attachment), then wait. Published = publish_status Exists (documented) or Active (tolerated).
 * Idempotent by the SHA-256 of the (first) certificate, computed from the attachment when the
 * instance has no fingerprint field (none is documented, vendor-facts §12).
 */
export interface PublishSettings {
  client: InstanceClient;
  publishTimeoutMs: number;
  pollIntervalMs: number;
}

export type CertificateTable = 'sys_ca_certificate' | 'sys_user_certificate';

/** The documented roles for writing the certificate tables (SND set-up-mutual-auth.md: "Role required: sso_config_admin"). */
export const CERTIFICATE_ROLE_HINT = 'sso_config_admin (or admin)';

/** A 403 on a certificate table names the role the integration user likely lacks (vendor-facts §3). */
export function forbiddenHint(err: unknown, table: string): unknown {
  if (!isMidcertError(err) || err.code !== 'INSTANCE_FORBIDDEN') return err;
  return new MidcertError('INSTANCE_FORBIDDEN', `${err.message} — the integration user needs role ${CERTIFICATE_ROLE_HINT} to write ${table}`);
}

export async function publishCaChain(s: PublishSettings, chainPem: string, name: string): Promise<CertificateRecord> {
  const certs = certificatesOf(chainPem, 'the CA chain');
  const type = await caCertType(s.client);
  return publish(s, 'sys_ca_certificate', certs, 'active=true', (r) => r.active, { name, type, format: 'pem', active: 'true' });
}

/**
 * Only the first certificate (the leaf) is uploaded, whatever else the PEM carries. `name` must be
 * the MID Server's name (SND install-mid-mutual-auth.md step 9: "The record must have the MID
 * Server's name"; vendor-facts §11); serial and validity go in short_description.
 */
export async function publishLeaf(s: PublishSettings, certPem: string, userSysId: string, name: string): Promise<CertificateRecord> {
  const [leaf] = certificatesOf(certPem, 'the leaf certificate') as [Certificate];
  const description = `midcert leaf serial ${leaf.serial}, valid ${leaf.notBefore.toISOString().slice(0, 10)} to ${leaf.notAfter.toISOString().slice(0, 10)}`;
  return publish(s, 'sys_user_certificate', [leaf], `user=${queryValue(userSysId)}^active=true`, (r) => r.active && r.user === userSysId,
    { name, short_description: description, user: userSysId, type: 'client_cert', format: 'pem', active: 'true' });
}

/**
 * The stored value behind the CA record's Type label "CA Cert" (SND set-up-mutual-auth.md: Type CA
 * Cert / Intermediate Cert; the values are not documented, vendor-facts §12), read from sys_choice.
 * Never "Intermediate Cert" (not synced to the load balancer). Falls back to `trust_store_ca`.
 */
export async function caCertType(client: InstanceClient): Promise<string> {
  const rows = await client.tableGet('sys_choice', { query: 'name=sys_ca_certificate^element=type', fields: ['name', 'element', 'value', 'label'], limit: 50 })
    .catch(() => [] as TableRecord[]);
  const choice = rows.find((r) => r['name'] === 'sys_ca_certificate' && r['element'] === 'type' && /^ca cert(ificate)?$/i.test((r['label'] ?? '').trim()));
  return choice?.['value'] || 'trust_store_ca';
}

/** Polls one record until it is published; INSTANCE_PUBLISH_TIMEOUT after `publishTimeoutMs`. */
export async function waitForPublished(s: PublishSettings, table: CertificateTable, sysId: string, path = ''): Promise<CertificateRecord> {
  const deadline = Date.now() + s.publishTimeoutMs;
  for (;;) {
    const record = toCertificateRecord(await s.client.tableGetOne(table, sysId, { fields: fieldsOf(table) }));
    if (record.published) return withSha256(s.client, table, record);
    if (Date.now() >= deadline) {
      const hint = record.publishStatus === '' ? ' (empty: the instance saw no attachment when the record was saved)' : '';
      throw new MidcertError('INSTANCE_PUBLISH_TIMEOUT',
        `${table} ${sysId} still reads publish_status "${record.publishStatus}"${hint} after ${Math.round(s.publishTimeoutMs / 1000)} s${path}`);
    }
    await sleep(Math.min(s.pollIntervalMs, Math.max(1, deadline - Date.now())));
  }
}

async function publish(s: PublishSettings, table: CertificateTable, certs: Certificate[], sameScope: string,
  inScope: (r: CertificateRecord) => boolean, fields: Record<string, string>): Promise<CertificateRecord> {
  const sha256 = (certs[0] as Certificate).sha256;
  // Filtered here rather than in the query: the fingerprint field is not documented, and every
  // condition is re-checked because an instance may drop one it does not know (vendor-facts §1).
  const scoped = (await s.client.tableGet(table, { query: sameScope, fields: fieldsOf(table) })).map(toCertificateRecord).filter(inScope);
  const candidates: CertificateRecord[] = [];
  for (const record of scoped) {
    const full = await withSha256(s.client, table, record);
    if (full.sha256 === sha256) candidates.push(full);
  }
  const published = candidates.find((r) => r.published);
  if (published) return published;
  const pending = candidates.find((r) => isPending(r.publishStatus));
  if (pending) return waitForPublished(s, table, pending.sysId);

  const sysId = newSysId();
  const pem = certs.map(certificateToPem).join('');
  let attachment: string | undefined;
  try {
    attachment = await uploadAttachment(s.client, table, sysId, pem);
  } catch (err) {
    if (!isMidcertError(err) || err.code !== 'INSTANCE_NOT_FOUND') throw forbiddenHint(err, table);
    return recordFirst(s, table, sysId, pem, fields);
  }
  await insertWithId(s.client, table, sysId, fields, attachment);
  return waitForPublished(s, table, sysId, ' (attachment uploaded before the insert)');
}

/**
 * The fallback for an instance that refuses attachments to a record that does not exist yet
 * (documented 404, vendor-facts §13): insert inactive, attach, then activate.
 */
async function recordFirst(s: PublishSettings, table: CertificateTable, sysId: string, pem: string, fields: Record<string, string>): Promise<CertificateRecord> {
  await insertWithId(s.client, table, sysId, { ...fields, active: 'false' }, undefined);
  await uploadAttachment(s.client, table, sysId, pem).catch((err: unknown) => { throw forbiddenHint(err, table); });
  await s.client.tablePatch(table, sysId, { active: fields['active'] ?? 'true' }).catch((err: unknown) => { throw forbiddenHint(err, table); });
  return waitForPublished(s, table, sysId,
    '; tried both paths: attachment first (the instance answered 404, no record yet), then record first (inserted inactive, attached, activated)');
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

/** Uploads the PEM (a .pem name, application/x-pem-file); when the answer was lost, the attachment list for our sys_id tells what happened. */
async function uploadAttachment(client: InstanceClient, table: CertificateTable, sysId: string, pem: string): Promise<string | undefined> {
  try {
    const attachment = await client.attach(table, sysId, `${table === 'sys_ca_certificate' ? 'ca-chain' : 'client-cert'}.pem`, 'application/x-pem-file', pem);
    return attachment['sys_id'];
  } catch (err) {
    if (!isAmbiguous(err)) throw err;
    const found = (await client.listAttachments(table, sysId)).find((a) => a['table_sys_id'] === undefined || a['table_sys_id'] === sysId);
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
    throw forbiddenHint(err, table);
  }
}

function fieldsOf(table: CertificateTable): readonly string[] {
  return table === 'sys_user_certificate' ? LEAF_FIELDS : CERTIFICATE_FIELDS;
}
