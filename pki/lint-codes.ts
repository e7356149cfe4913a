/**
 * Every problem the bundle linter can report. Codes are a stable contract (CLI, JSON, gRPC,
 * Ansible); add new ones, never rename. Each row of the troubleshooting table in
 * docs/bundle-lint.md that can be seen in a file is one of these.
 */
export const LINT_CODES = {
  NOT_PEM: 'error',
  PEM_MALFORMED: 'error',
  NO_CERTIFICATE: 'error',
  CERT_UNREADABLE: 'error',
  UNEXPECTED_BLOCK: 'error',
  KEY_MISSING: 'error',
  KEY_MULTIPLE: 'error',
  KEY_NOT_PKCS8: 'error',
  KEY_ENCRYPTED: 'error',
  KEY_UNREADABLE: 'error',
  KEY_MISMATCH: 'error',
  KEY_WEAK: 'error',
  CRLF: 'error',
  EOF_MARKER: 'error',
  TEXT_OUTSIDE_PEM: 'warning',
  BLANK_LINES: 'warning',
  CHAIN_ORDER: 'error',
  CHAIN_INCOMPLETE: 'error',
  CHAIN_BROKEN: 'error',
  CA_FLAG_MISSING: 'error',
  LEAF_SELF_SIGNED: 'error',
  LEAF_IS_CA: 'error',
  EKU_CLIENT_AUTH_MISSING: 'error',
  KEY_USAGE_MISSING: 'error',
  CERT_EXPIRED: 'error',
  CERT_NOT_YET_VALID: 'error',
  CERT_EXPIRING: 'warning',
  KEY_NOT_LAST: 'warning',
  DUPLICATE_CERT: 'warning',
  UNRELATED_CERT: 'warning',
  WEAK_SIGNATURE: 'warning',
  KEY_TYPE_UNVERIFIED: 'warning',
} as const;

export type LintCode = keyof typeof LINT_CODES;
export type Severity = 'error' | 'warning';

export interface Finding {
  code: LintCode;
  severity: Severity;
  /** One line saying what is wrong, naming the certificate where it helps. */
  message: string;
  /** A concrete way out, with a command where one exists. */
  fix: string;
}

export function finding(code: LintCode, message: string, fix: string): Finding {
  return { code, severity: LINT_CODES[code], message, fix };
}
