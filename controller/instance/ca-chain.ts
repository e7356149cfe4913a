import { readCertificates } from '../../pki/certificate.js';
import { CERTIFICATE_FIELDS, toCertificateRecord, type CertificateRecord } from './records.js';
import type { InstanceClient } from './rest.js';

export interface ChainCertificate {
  sha256: string;
  subject: string;
  notAfter: string;
}

/** An active, published CA record and every certificate of the PEM attached to it. */
export interface PublishedChain extends CertificateRecord {
  /** From the newest attachment (the record's own fields describe only its first certificate). */
  certificates: ChainCertificate[];
}

/**
 * The CA chain the instance trusts for client certificates now: the active, published
 * sys_ca_certificate record(s) — normally one, since the instance keeps one chain active.
 */
export async function activeCaChain(client: InstanceClient): Promise<PublishedChain[]> {
  const records = (await client.tableGet('sys_ca_certificate', { query: 'active=true^ORDERBYDESCsys_created_on', fields: CERTIFICATE_FIELDS }))
    .map(toCertificateRecord).filter((r) => r.published);
  const chains: PublishedChain[] = [];
  for (const record of records) chains.push({ ...record, certificates: await attachedCertificates(client, record.sysId) });
  return chains;
}

async function attachedCertificates(client: InstanceClient, sysId: string): Promise<ChainCertificate[]> {
  const [newest] = await client.listAttachments('sys_ca_certificate', sysId);
  if (!newest?.['sys_id']) return [];
  const body = await client.downloadAttachment(newest['sys_id']);
  return readCertificates(body).map((c) => ({ sha256: c.sha256, subject: c.subjectText, notAfter: c.notAfter.toISOString() }));
}
