/**
 * Errors are values with a stable code. The CLI prints `[CODE] message`, gRPC (later) carries the
 * code in status details, Ansible modules show it as `error_code`. Never put a secret in `message`.
 */
export const ERROR_CODES = {
  USAGE: 'bad command-line usage',
  INPUT_TOO_LARGE: 'an input exceeds its documented size bound',
  INPUT_UNREADABLE: 'an input file cannot be read',
  OUTPUT_FAILED: 'an output file cannot be written',
  PEM_MALFORMED: 'PEM text is malformed',
  CERT_MALFORMED: 'a certificate cannot be parsed',
  KEY_MALFORMED: 'a private key cannot be parsed',
  KEY_PASSWORD: 'a private key needs a password, or the password is wrong',
  KEY_UNSUPPORTED: 'a key type or size is not supported',
  SUBJECT_INVALID: 'a distinguished name cannot be parsed',
  SAN_INVALID: 'a subjectAltName cannot be parsed',
  PKCS12_MALFORMED: 'a PKCS#12/PFX file cannot be parsed',
  PKCS12_PASSWORD: 'the PKCS#12/PFX password is wrong',
  PKCS12_CONTENT: 'a PKCS#12/PFX file does not hold what is needed',
  KEYSTORE_MALFORMED: 'a keystore cannot be parsed',
  KEYSTORE_PASSWORD: 'the keystore integrity check failed (wrong store password?)',
  CHAIN_INVALID: 'certificates do not form a usable chain',
  BUNDLE_INVALID: 'the bundle would not lint clean of errors',
  CONFIG_INVALID: 'a configuration file is invalid',
  CONFIG_UNREADABLE: 'a configuration file cannot be read',
  MID_CONFIG_INVALID: 'the MID config.xml cannot be read or parsed',
  KEYSTORE_UNREADABLE: 'the MID keystore cannot be read',
  KEYSTORE_VERIFY_FAILED: 'the keystore after import does not hold the expected alias, chain and key',
  SCRIPT_FAILED: 'manage-certificates failed',
  SCRIPT_TIMEOUT: 'manage-certificates did not finish in time',
  SERVICE_FAILED: 'the MID service could not be stopped, started or queried',
  HEALTH_CHECK_FAILED: 'the MID did not come back healthy after the change',
  RENEWAL_NOT_PREPARED: 'no prepared renewal matches the request',
  RENEWAL_BUSY: 'another renewal is in progress',
  BACKUP_MISSING: 'no keystore backup to roll back to',
  ROLLBACK_FAILED: 'restoring the keystore backup failed',
  INTERNAL: 'an unexpected internal error',
  // RPC transport and access (proto/grpc-adapter.ts, agent/rpc/): what a gRPC status means to us.
  PERMISSION_DENIED: 'the caller is not allowed to make this call',
  UNAUTHENTICATED: 'the caller presented no usable identity',
  UNAVAILABLE: 'the peer cannot be reached (network, TLS handshake, or shutting down)',
  DEADLINE_EXCEEDED: 'a call did not finish before its deadline',
  CANCELLED: 'a call was cancelled',
  UNIMPLEMENTED: 'the peer does not implement this call',
  MESSAGE_TOO_LARGE: 'an RPC message exceeds its size bound',
  TOO_MANY_CALLS: 'the peer is handling too many calls at once',
  LISTEN_FAILED: 'cannot listen on an address or socket',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class MidcertError extends Error {
  readonly code: ErrorCode;
  /** Extra human detail (e.g. a script's output); same redaction rules as message. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, options: { detail?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MidcertError';
    this.code = code;
    this.detail = options.detail;
  }
}

export function isMidcertError(err: unknown): err is MidcertError {
  return err instanceof MidcertError;
}

/** Wraps anything thrown by a third-party parser into a typed error of the given code. */
export function asMidcertError(err: unknown, code: ErrorCode, context: string): MidcertError {
  if (err instanceof MidcertError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new MidcertError(code, `${context}: ${firstLine(reason)}`, { cause: err });
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
