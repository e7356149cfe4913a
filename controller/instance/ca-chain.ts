import { MidcertError } from '../../common/errors.js';
import { readCertificates } from '../../pki/certificate.js';
import { attachedCertificates } from './fingerprints.js';
import { forbiddenHint } from './publish.js';
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
 * The CA chains the instance trusts for client certificates now: the active, published
 * sys_ca_certificate records, newest first. There may be several: nothing documents that the
 * instance keeps only one active (vendor-facts §10). The record's sha256 comes from its attachment
 * when the instance has no fingerprint field (vendor-facts §12).
 */
export async function activeCaChain(client: InstanceClient): Promise<PublishedChain[]> {
  const records = (await client.tableGet('sys_ca_certificate', { query: 'active=true^ORDERBYDESCsys_created_on', fields: CERTIFICATE_FIELDS }))
    .map(toCertificateRecord).filter((r) => r.active && r.published); // re-checked client-side (vendor-facts §1)
  const chains: PublishedChain[] = [];
  for (const record of records) {
    const certificates = await attachedCertificates(client, 'sys_ca_certificate', record.sysId);
    chains.push({ ...record, sha256: record.sha256 || (certificates[0]?.sha256 ?? ''), certificates });
  }
  return chains;
}

/**
 * After a CA swap, once every MID runs on the new chain: set every other active CA record
 * `active=false` (never deleted: kept for a rollback). The instance does not do this itself
 * (vendor-facts §10: "only then set the old record active=false … Do not rely on the instance to
 * deactivate the old chain"). The chain to keep must be active and published first. Returns the
 * records deactivated.
 */
export async function retireOtherCaChains(client: InstanceClient, keepChainPem: string): Promise<CertificateRecord[]> {
  const keep = readCertificates(Buffer.from(keepChainPem))[0]?.sha256;
  if (!keep) throw new MidcertError('CHAIN_INVALID', 'the chain to keep holds no certificate');
  const chains = await activeCaChain(client);
  if (!chains.some((c) => c.sha256 === keep)) {
    throw new MidcertError('LEAF_NOT_PUBLISHED', `the new CA chain (${keep.slice(0, 16)}…) is not active and published; the other chains stay active`);
  }
  const retired: CertificateRecord[] = [];
  for (const chain of chains) {
    if (chain.sha256 === keep || chain.sha256 === '') continue;
    const patched = await client.tablePatch('sys_ca_certificate', chain.sysId, { active: 'false' }).catch((err: unknown) => { throw forbiddenHint(err, 'sys_ca_certificate'); });
    retired.push(toCertificateRecord(patched));
  }
  return retired;
}
