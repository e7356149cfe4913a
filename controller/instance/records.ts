import { randomBytes } from 'node:crypto';
import type { TableRecord } from './rest.js';

/**
 * Certificate records (sys_ca_certificate, sys_user_certificate) as the operations see them, and
 * the small value rules they share.
 */
export interface CertificateRecord {
  sysId: string;
  name: string;
  active: boolean;
  /** As the instance wrote it: '' (never saw an attachment), 'Pending', 'Exists', 'Active', … */
  publishStatus: string;
  /** publish_status reads Exists (vendor docs) or Active (community guides): both mean published. */
  published: boolean;
  /**
   * SHA-256 of the record's (first) certificate, lower-case hex without colons; '' until filled or
   * when the instance has no such field (none is documented, vendor-facts §12): then compare by
   * the attachment's content (fingerprints.ts).
   */
  sha256: string;
  expires: string;
  subject: string;
  issuer: string;
  /** Whether the instance returned the (undocumented) sha256_fingerprint field at all. */
  hasFingerprintField: boolean;
  /** sys_user_certificate only: the user's sys_id. */
  user: string;
  createdOn: string;
}

export const CERTIFICATE_FIELDS = ['sys_id', 'name', 'short_description', 'type', 'format', 'active', 'expires', 'subject', 'issuer',
  'publish_status', 'sha256_fingerprint', 'sys_created_on'] as const;
export const LEAF_FIELDS = [...CERTIFICATE_FIELDS, 'user'] as const;

const PUBLISHED_WORDS = new Set(['exists', 'active']);

export function isPublished(publishStatus: string): boolean {
  return PUBLISHED_WORDS.has(publishStatus.trim().toLowerCase());
}

/** Still being published (the record saw its attachment and waits for the platform). */
export function isPending(publishStatus: string): boolean {
  return publishStatus.trim().toLowerCase() === 'pending';
}

/**
 * Accepts `AB:CD:…` or `abcd…` (instances and tools print both) and returns lower-case hex
 * without separators, so fingerprints compare the same whatever the instance's format.
 */
export function normalizeFingerprint(text: string): string {
  return text.replace(/[\s:]/g, '').toLowerCase();
}

/** Glide booleans arrive as strings ("true"/"false"; "1"/"0" on some fields). */
export function isTrue(value: string | undefined): boolean {
  return value === 'true' || value === '1';
}

export function toCertificateRecord(r: TableRecord): CertificateRecord {
  const publishStatus = r['publish_status'] ?? '';
  return {
    sysId: r['sys_id'] ?? '',
    name: r['name'] ?? '',
    active: isTrue(r['active']),
    publishStatus,
    published: isPublished(publishStatus),
    sha256: normalizeFingerprint(r['sha256_fingerprint'] ?? ''),
    hasFingerprintField: Object.hasOwn(r, 'sha256_fingerprint'),
    expires: r['expires'] ?? '',
    subject: r['subject'] ?? '',
    issuer: r['issuer'] ?? '',
    user: r['user'] ?? '',
    createdOn: r['sys_created_on'] ?? '',
  };
}

/** A client-chosen sys_id (32 lower-case hex), as the attachment-first upload needs. */
export function newSysId(): string {
  return randomBytes(16).toString('hex');
}

/** A ServiceNow date-time value (`YYYY-MM-DD HH:MM:SS`, UTC in the Table API) as a Date. */
export function parseGlideDateTime(text: string | undefined): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(text ?? '');
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}
