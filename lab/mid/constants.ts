/**
 * Names every part of the lab MID shares. A leaf module (no imports), so host, set-up, the
 * simulated MID and the control channel can all use them without importing one another.
 */

/** The client alias the MID reads; Java compares aliases case-insensitively (vendor-facts §5). */
export const DEFAULT_ALIAS = 'defaultsecuritykeypairhandle';
/** The JKS default store password. */
export const DEFAULT_STOREPASS = 'changeit';
/** The environment variable the lab's manage-certificates.sh and runner read the store password from. */
export const STOREPASS_ENV = 'MIDCERT_LAB_STOREPASS';
/** The MID's own keystore backup folder and audit log, under agent/ (vendor-facts §14). */
export const BACKUP_DIR_NAME = 'security_backup';
export const BACKUP_AUDIT_LOG = 'keystore_backup_audit_trail.log';
