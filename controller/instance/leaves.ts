import { MidcertError } from '../../common/errors.js';
import { withSha256 } from './fingerprints.js';
import { forbiddenHint } from './publish.js';
import { LEAF_FIELDS, normalizeFingerprint, toCertificateRecord, type CertificateRecord } from './records.js';
import { queryValue, type InstanceClient } from './rest.js';

/**
 * The leaf records (sys_user_certificate) of one MID service user. Retiring means setting
 * `active=false`, not deleting: the instance stops accepting that certificate at once, the record
 * stays as history, and a rollback can set it active again. (Deleting is `client.tableDelete`.)
 */

/** Every leaf record of the user, active or not, newest first. */
export async function listLeaves(client: InstanceClient, userSysId: string): Promise<CertificateRecord[]> {
  const rows = await client.tableGet('sys_user_certificate', {
    query: `user=${queryValue(userSysId)}^ORDERBYDESCsys_created_on`, fields: LEAF_FIELDS,
  });
  // Re-checked: a dropped condition would return every user's leaves (vendor-facts §1).
  const mine = rows.map(toCertificateRecord).filter((r) => r.user === userSysId);
  // No documented fingerprint field: hash the attachment when the instance gave none (vendor-facts §12).
  return Promise.all(mine.map((r) => withSha256(client, 'sys_user_certificate', r)));
}

export async function retireLeaf(client: InstanceClient, sysId: string): Promise<CertificateRecord> {
  const patched = await client.tablePatch('sys_user_certificate', sysId, { active: 'false' }).catch((err: unknown) => { throw forbiddenHint(err, 'sys_user_certificate'); });
  return toCertificateRecord(patched);
}

/**
 * Retires every active leaf of the user except the one with `keepSha256`, which must be active and
 * published first (LEAF_NOT_PUBLISHED otherwise): the user is never left without a working leaf.
 */
export async function retireOldLeaves(client: InstanceClient, userSysId: string, keepSha256: string): Promise<CertificateRecord[]> {
  const keep = normalizeFingerprint(keepSha256);
  const leaves = await listLeaves(client, userSysId);
  if (!leaves.some((l) => l.active && l.published && l.sha256 === keep)) {
    throw new MidcertError('LEAF_NOT_PUBLISHED', `no active, published leaf with SHA-256 ${keep.slice(0, 16)}… for user ${userSysId}; older leaves are left active`);
  }
  const retired: CertificateRecord[] = [];
  for (const leaf of leaves) {
    if (leaf.active && leaf.sha256 !== keep && leaf.sha256 !== '') retired.push(await retireLeaf(client, leaf.sysId));
  }
  return retired;
}
