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
  // What the MID logged after a restart (agent/health.ts; docs/vendor-facts.md §5, §8).
  MID_AUTH_FAILED: 'the MID logged "User cannot be authenticated or is missing the proper roles": the instance refused its credentials or certificate',
  MID_KEYS_MISMATCH: "the MID's key pair no longer matches the public key the instance holds; credentials sent by the instance cannot be decrypted (KB0535234, KB1048088)",
  MID_HANDSHAKE_FAILED: 'the MID logged a TLS handshake failure with the instance (SSLHandshakeException, PKIX path building failed, bad_certificate, certificate_required)',
  MID_KEY_INVALID: 'the MID logged "Could not find valid private key": the imported key is not a usable PKCS#8 key',
  MID_LOG_SEVERE: 'the MID logged a SEVERE *** ERROR *** line after the restart',
  KEY_TYPE_REFUSED: 'the bundle key type or size is not documented by the vendor (RSA 2048) and was not allowed',
  RENEWAL_NOT_PREPARED: 'no prepared renewal matches the request',
  RENEWAL_BUSY: 'another renewal is in progress',
  RENEWAL_NOT_FOUND: 'the agent has no record of this renewal id (never prepared there, superseded, or older than its remembered history)',
  RENEWAL_MISMATCH: 'the agent reports a renewal outcome that does not match what the controller sent (another leaf)',
  BACKUP_MISSING: 'no keystore backup to roll back to',
  ROLLBACK_FAILED: 'restoring the keystore backup failed',
  // The lab command (lab/cli.ts): starting and stopping the simulated world.
  LAB_RUNNING: 'a lab is already running in this directory (or another lab command holds it)',
  LAB_NOT_FOUND: 'no lab has been set up in this directory',
  LAB_START_FAILED: 'a part of the lab did not start, or a MID did not come Up',
  LAB_STOP_FAILED: 'a lab process could not be stopped',
  // Agent status and preflight (agent/status.ts, agent/preflight.ts): host-side readiness findings.
  MID_CONFIG_INCOMPLETE: 'config.xml lacks a required value or still holds a vendor placeholder',
  CONFIG_ALIAS_CONFLICT: 'config.xml sets two documented names of one setting (e.g. mid.instance.username and glide.glidesoap.username) to different values; which one the MID uses is not documented',
  KEYSTORE_ALIAS_MISSING: 'the keystore holds no private key entry under the client alias',
  SERVICE_INACTIVE: 'the MID service is not running',
  STATE_DIR_UNUSABLE: 'the agent state directory cannot be created or written, or others can read it',
  INSTANCE_UNREACHABLE: 'the instance URL cannot be reached over HTTPS in time',
  PROXY_REFUSED: 'the configured proxy refused to open a tunnel to the instance',
  INSTANCE_TLS_UNTRUSTED: 'the certificate the instance presents is not trusted or does not match its host name',
  TLS_INTERCEPTED: 'a TLS-intercepting proxy sits between this host and the instance (it strips the client certificate)',
  INSTANCE_NOT_ADCV2: 'the instance does not answer with Server: snow_adc (ADCv2)',
  CLOCK_SKEW: "this host's clock differs from the instance's by more than the allowed skew",
  CHECK_SKIPPED: 'a check could not run because what it needs is missing or failed',
  // Controller state and identity (controller/store/, controller/data-dir.ts, controller/fleet-ca.ts).
  STORE_UNAVAILABLE: 'the controller database cannot be opened, read or written',
  STORE_TOO_NEW: 'the controller database was written by a newer midcert (upgrade midcert)',
  STORE_BUSY: 'the controller database stayed locked by another midcert process past the busy timeout',
  STORE_UNREACHABLE: 'the PostgreSQL server of the controller store cannot be reached (refused, timed out, TLS failed)',
  AGENT_INVALID: 'an agent record is invalid (name, address, server name, fingerprint or tags)',
  AGENT_EXISTS: 'an agent with this name is already registered',
  AGENT_NOT_FOUND: 'no agent with this name is registered',
  AGENT_BUSY: 'the agent takes part in a job that has not finished',
  JOB_NOT_FOUND: 'no job with this id exists',
  JOB_CONFLICT: 'another live midcert process owns the job or the MID (its lease has not expired)',
  STORE_NOT_EMPTY: 'the target database of a store migration already holds midcert data',
  STATE_TRANSITION_INVALID: 'a job, job agent, step or certificate cannot move from its current state to the requested one',
  RECORD_CONFLICT: 'a record conflicts with one already stored',
  DATA_DIR_UNUSABLE: 'the controller data directory cannot be created or used',
  FLEET_CA_MISSING: 'the fleet CA or the controller identity is missing or incomplete (run midcert init)',
  CERTIFICATE_NOT_FOUND: 'no certificate with this fingerprint is recorded',
  CSR_REFUSED: 'a CSR was refused (bad signature, CA request, weak key or bad name)',
  // ServiceNow instance client (controller/instance/): REST failures and instance-side findings.
  INSTANCE_AUTH: 'the instance refused the credentials (HTTP 401)',
  INSTANCE_FORBIDDEN: 'the instance user may not do this (HTTP 403, an ACL refused it)',
  INSTANCE_NOT_FOUND: 'the instance has no such table or record (HTTP 404)',
  INSTANCE_BAD_REQUEST: 'the instance refused the request (HTTP 400 or another 4xx)',
  INSTANCE_RATE_LIMITED: 'the instance still answered 429 Too Many Requests after every retry',
  INSTANCE_UNAVAILABLE: 'the instance answered 5xx or could not be reached, after every retry',
  INSTANCE_TIMEOUT: 'the instance did not answer in time',
  INSTANCE_RESPONSE_INVALID: 'the instance answered with a body that is too large or not the expected JSON',
  INSTANCE_PUBLISH_TIMEOUT: 'a certificate record did not reach publish status Exists (or Active) in time',
  PRIVATE_KEY_REFUSED: 'an upload to the instance holds a private key; nothing was sent',
  MID_NOT_FOUND: 'the instance has no ecc_agent record with this MID name',
  MID_USER_NOT_FOUND: 'the MID service user does not exist on the instance, or is inactive or locked out',
  MID_USER_NO_ROLE: 'the MID service user lacks the mid_server role',
  LEAF_NOT_PUBLISHED: 'the leaf to keep is not active and published on the instance, so older leaves stay',
  MTLS_NOT_SUPPORTED: 'the instance does not support mutual TLS (/adcv2/supports_tls answers false)',
  MUTUAL_AUTH_PLUGIN_INACTIVE: 'the plugin com.glide.auth.mutual is missing or inactive on the instance',
  TLS_SNI_DISABLED: 'glide.outbound.tls_sni.enabled is false on the instance: mutual-TLS MIDs go Down',
  CA_CHAIN_MISSING: 'no active, published CA chain on the instance (sys_ca_certificate)',
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

/**
 * By shape as well as by class: a module loaded both through `import()` and statically (tsx under
 * mocha) has two MidcertError classes, and an error must keep its code across that seam.
 */
export function isMidcertError(err: unknown): err is MidcertError {
  return err instanceof MidcertError
    || (err instanceof Error && err.name === 'MidcertError' && typeof (err as { code?: unknown }).code === 'string');
}

/**
 * Wraps anything a parser throws into a typed error of the given code. A MidcertError passes
 * through; anything else (a RangeError such as `The value of "offset" is out of range`, OpenSSL's
 * `error:…:asn1 encoding routines::…`, forge's or an XML parser's text, which may quote the input)
 * becomes `sentence`, a message written for the user, and stays reachable only as `cause`.
 */
export function asMidcertError(err: unknown, code: ErrorCode, sentence: string): MidcertError {
  if (isMidcertError(err)) return err;
  return new MidcertError(code, sentence, { cause: err });
}
