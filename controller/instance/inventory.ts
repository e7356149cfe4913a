import { MidcertError, isMidcertError } from '../../common/errors.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { DistinguishedName } from '../../pki/name.js';
import { normalizeFingerprint } from './records.js';
import { queryValue, type InstanceClient, type TableRecord } from './rest.js';

/**
 * Certificate Inventory and Management (docs/vendor-facts.md §16, docs/instance-client.md
 * "Certificate inventory"): the MID's installed leaf as a Unique Certificate
 * [cmdb_ci_certificate] record, matched on `fingerprint` (SHA-256, lower-case hex — the vendor's
 * own example), `state` installed; the MID's earlier leaves (by their fingerprints, never by name)
 * set to `state` retired; the record related to the MID's host CI through cmdb_rel_ci
 * `Uses::Used by` (host = parent, certificate = child) when the host CI can be found.
 *
 * Only documented column names are written. The Table API silently drops fields it does not know
 * (SND c_TableAPI.md), so every write is read back and compared: what did not stick is reported in
 * `dropped`, and a record whose fingerprint did not stick is deleted again (it could never be
 * matched, and every pass would add another).
 */
export const INVENTORY_TABLE = 'cmdb_ci_certificate';
/** Values of `state` (SND run-cert-inventory-mgmt-bulk-url.md: "issued, installed, revoked, retired, or other"). */
export const INVENTORY_STATE_INSTALLED = 'installed';
export const INVENTORY_STATE_RETIRED = 'retired';
/** SND aws-certificate-manager-discovery-pattern.md: "Discovery calculates fingerprints by the SHA-256 algorithm, so the value … is: SHA-256". */
export const FINGERPRINT_ALGORITHM = 'SHA-256';
/** The one relation type the documents name for a CI using a certificate (SND run-cert-inventory-mgmt-urls.md). */
export const USES_RELATION = 'Uses::Used by';

export const INVENTORY_FIELDS = ['sys_id', 'name', 'fingerprint', 'fingerprint_algorithm', 'serial_number', 'signature_algorithm',
  'subject_distinguished_name', 'subject_common_name', 'subject_organization', 'subject_organizational_unit', 'subject_country',
  'issuer_distinguished_name', 'issuer_common_name', 'valid_from', 'valid_to', 'key_size', 'state'] as const;

export interface InventoryLeaf {
  /** The MID's name (ecc_agent.name): the record's `name`. */
  midName: string;
  certificatePem: string;
  /** Fingerprints (SHA-256) of the MID's earlier leaves: their records are set to retired. */
  retireSha256?: readonly string[];
  /** Host name of the MID's host (ecc_agent host name): the cmdb_ci_computer looked up by `name`. */
  hostName?: string;
}

export interface InventoryOutcome {
  sysId: string;
  /** inserted, updated (something differed), unchanged (no write). */
  action: 'inserted' | 'updated' | 'unchanged';
  /** Fields sent that the instance did not keep (unknown to it, or read-only to this user). */
  dropped: string[];
  retired: string[];
  /** The host CI's sys_id when related (or already related); '' when none was found. */
  hostCi: string;
  /** Why there is no relation, when there is none. */
  relationNote: string;
}

/** The documented columns for one leaf, in the formats of the vendor's own examples. */
export function inventoryFields(midName: string, cert: Certificate): Record<string, string> {
  const fields: Record<string, string> = {
    name: midName,
    fingerprint: cert.sha256,
    fingerprint_algorithm: FINGERPRINT_ALGORITHM,
    // "70 d8 c9 52 …" (SND aws-certificate-manager-discovery-pattern.md).
    serial_number: (cert.serial.length % 2 ? `0${cert.serial}` : cert.serial).match(/../g)?.join(' ') ?? cert.serial,
    signature_algorithm: cert.signatureAlgorithm,
    subject_distinguished_name: cert.subjectText,
    subject_common_name: attribute(cert.subject, 'CN'),
    subject_organization: attribute(cert.subject, 'O'),
    subject_organizational_unit: attribute(cert.subject, 'OU'),
    subject_country: attribute(cert.subject, 'C'),
    issuer_distinguished_name: cert.issuerText,
    issuer_common_name: attribute(cert.issuer, 'CN'),
    valid_from: glideDateTime(cert.notBefore),
    valid_to: glideDateTime(cert.notAfter),
    key_size: String(cert.key.bits),
    state: INVENTORY_STATE_INSTALLED,
  };
  for (const [k, v] of Object.entries(fields)) if (v === '') delete fields[k];
  return fields;
}

/** Upserts the leaf's cmdb_ci_certificate record, retires the earlier ones, relates it to the host CI. */
export async function upsertInventory(client: InstanceClient, leaf: InventoryLeaf): Promise<InventoryOutcome> {
  const cert = readCertificates(Buffer.from(leaf.certificatePem))[0];
  if (!cert) throw new MidcertError('CERT_MALFORMED', 'inventory: the PEM holds no certificate');
  const wanted = inventoryFields(leaf.midName, cert);
  const existing = await findByFingerprint(client, cert.sha256);
  let sysId: string;
  let action: InventoryOutcome['action'];
  let sent: Record<string, string>;
  if (existing) {
    sysId = existing['sys_id'] as string;
    // Only what differs; `name` is left as found (Discovery names the record after the host/domain).
    sent = Object.fromEntries(Object.entries(wanted).filter(([k, v]) => k !== 'name' && !sameValue(k, existing[k], v)));
    action = Object.keys(sent).length === 0 ? 'unchanged' : 'updated';
    if (action === 'updated') await client.tablePatch(INVENTORY_TABLE, sysId, sent).catch((err: unknown) => { throw inventoryHint(err); });
  } else {
    sent = wanted;
    const inserted = await client.tableInsert(INVENTORY_TABLE, sent).catch((err: unknown) => { throw inventoryHint(err); });
    sysId = inserted['sys_id'] ?? '';
    if (!/^[0-9a-f]{32}$/.test(sysId)) throw new MidcertError('INSTANCE_RESPONSE_INVALID', `POST ${INVENTORY_TABLE}: the answer has no sys_id`);
    action = 'inserted';
  }
  const dropped = action === 'unchanged' ? [] : await droppedFields(client, sysId, sent);
  if (dropped.includes('fingerprint')) {
    // Unmatchable record: every later pass would insert another. Take back what we created.
    if (action === 'inserted') await client.tableDelete(INVENTORY_TABLE, sysId).catch(() => undefined);
    throw new MidcertError('INSTANCE_RESPONSE_INVALID', `${INVENTORY_TABLE}: the instance did not keep the fingerprint field (not in this instance's schema, or read-only to this user); nothing is kept. Dropped: ${dropped.join(', ')}`);
  }
  const retired = await retireBySha256(client, (leaf.retireSha256 ?? []).filter((s) => normalizeFingerprint(s) !== cert.sha256));
  // The relation is a convenience: its failure (e.g. no sn_cmdb_editor) is a note, not an error.
  const relation = await relateToHost(client, sysId, leaf.hostName).catch((err: unknown) => ({ hostCi: '', relationNote: `cmdb_rel_ci: ${isMidcertError(err) ? `[${err.code}] ${err.message}` : String(err)}` }));
  return { sysId, action, dropped, retired, ...relation };
}

/** The record with this SHA-256 fingerprint (any of the spellings instances use), re-checked client-side. */
export async function findByFingerprint(client: InstanceClient, sha256: string): Promise<TableRecord | undefined> {
  const hex = normalizeFingerprint(sha256);
  const spellings = [...new Set([hex, hex.toUpperCase(), hex.match(/../g)?.join(':').toUpperCase() ?? hex])];
  const rows = await client.tableGet(INVENTORY_TABLE, {
    query: spellings.map((s, i) => `${i ? 'OR' : ''}fingerprint=${queryValue(s)}`).join('^'), fields: INVENTORY_FIELDS, limit: 20,
  }).catch((err: unknown) => { throw inventoryHint(err); });
  // Re-checked: a dropped condition returns every row (vendor-facts §1); another algorithm's hash is not this one.
  const matches = rows.filter((r) => normalizeFingerprint(r['fingerprint'] ?? '') === hex && sha256Algorithm(r['fingerprint_algorithm']));
  // The Fingerprint column is unique (SND cert-invt-mgmt-tables.md); if not, prefer the one not retired.
  return matches.find((r) => r['state'] !== INVENTORY_STATE_RETIRED) ?? matches[0];
}

async function retireBySha256(client: InstanceClient, shas: readonly string[]): Promise<string[]> {
  const retired: string[] = [];
  for (const sha of new Set(shas.map(normalizeFingerprint).filter((s) => /^[0-9a-f]{64}$/.test(s)))) {
    const row = await findByFingerprint(client, sha);
    if (!row || row['state'] === INVENTORY_STATE_RETIRED) continue;
    await client.tablePatch(INVENTORY_TABLE, row['sys_id'] as string, { state: INVENTORY_STATE_RETIRED }).catch((err: unknown) => { throw inventoryHint(err); });
    retired.push(row['sys_id'] as string);
  }
  return retired;
}

/**
 * cmdb_rel_ci parent = the host (cmdb_ci_computer found by `name`, exactly one), child = the
 * certificate, type = cmdb_rel_type `Uses::Used by`. No host found (or several) → no relation,
 * and midcert never creates a host CI.
 */
async function relateToHost(client: InstanceClient, certSysId: string, hostName: string | undefined): Promise<{ hostCi: string; relationNote: string }> {
  const host = hostName?.trim() ?? '';
  if (host === '') return { hostCi: '', relationNote: 'the MID has no host name on its ecc_agent record' };
  const lower = host.toLowerCase();
  const short = lower.split('.')[0] as string;
  const names = [...new Set([host, short])];
  const computers = (await client.tableGet('cmdb_ci_computer', {
    query: names.map((n, i) => `${i ? 'OR' : ''}name=${queryValue(n)}`).join('^'), fields: ['sys_id', 'name'], limit: 10,
  })).filter((r) => { const n = (r['name'] ?? '').toLowerCase(); return n === lower || n === short; });
  if (computers.length !== 1) return { hostCi: '', relationNote: computers.length === 0 ? `no cmdb_ci_computer named "${host}"` : `${computers.length} cmdb_ci_computer records named "${host}"` };
  const hostCi = computers[0]?.['sys_id'] as string;
  const types = (await client.tableGet('cmdb_rel_type', { query: `name=${queryValue(USES_RELATION)}`, fields: ['sys_id', 'name'], limit: 5 }))
    .filter((r) => r['name'] === USES_RELATION);
  const type = types[0]?.['sys_id'];
  if (!type) return { hostCi: '', relationNote: `no cmdb_rel_type "${USES_RELATION}"` };
  const existing = (await client.tableGet('cmdb_rel_ci', {
    query: `parent=${hostCi}^child=${certSysId}^type=${type}`, fields: ['sys_id', 'parent', 'child', 'type'], limit: 10,
  })).filter((r) => r['parent'] === hostCi && r['child'] === certSysId && r['type'] === type);
  if (existing.length === 0) await client.tableInsert('cmdb_rel_ci', { parent: hostCi, child: certSysId, type });
  return { hostCi, relationNote: '' };
}

/** Read back: the fields sent whose stored value is not what was sent. */
async function droppedFields(client: InstanceClient, sysId: string, sent: Record<string, string>): Promise<string[]> {
  const stored = await client.tableGetOne(INVENTORY_TABLE, sysId, { fields: ['sys_id', ...Object.keys(sent)] });
  return Object.entries(sent).filter(([k, v]) => !sameValue(k, stored[k], v)).map(([k]) => k);
}

function sameValue(field: string, stored: string | undefined, sent: string): boolean {
  if (stored === undefined) return false;
  if (field === 'fingerprint' || field === 'serial_number') return normalizeFingerprint(stored) === normalizeFingerprint(sent);
  if (field === 'fingerprint_algorithm') return sha256Algorithm(stored) === sha256Algorithm(sent);
  if (field === 'state') return stored.toLowerCase() === sent.toLowerCase();
  return stored === sent;
}

/** SHA-256, sha256, SHA256 … or empty (not filled: taken as the default Discovery uses). */
function sha256Algorithm(value: string | undefined): boolean {
  const v = (value ?? '').replace(/[\s_-]/g, '').toLowerCase();
  return v === '' || v === 'sha256';
}

function attribute(dn: DistinguishedName, type: string): string {
  for (let i = dn.length - 1; i >= 0; i -= 1) {
    const found = dn[i]?.find((a) => a.type === type);
    if (found) return found.value;
  }
  return '';
}

/** `YYYY-MM-DD HH:MM:SS`, UTC (the Table API's date-time format; SND examples "2023-09-25 10:43:03"). */
export function glideDateTime(date: Date): string {
  return date.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, '');
}

/** docs/instance-client.md "Certificate inventory": least privilege for these writes. */
export const INVENTORY_ROLE_HINT = 'sn_disco_certmgmt.pki_admin (cmdb_ci_certificate incl. state), cmdb_read and sn_cmdb_editor (cmdb_rel_ci)';

function inventoryHint(err: unknown): unknown {
  if (!isMidcertError(err) || err.code !== 'INSTANCE_FORBIDDEN') return err;
  return new MidcertError('INSTANCE_FORBIDDEN', `${err.message} — the integration user needs ${INVENTORY_ROLE_HINT}`);
}
