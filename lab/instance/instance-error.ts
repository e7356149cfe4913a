/**
 * A refusal the instance answers with ServiceNow's error body
 * `{"error":{"message","detail"},"status":"failure"}`. `reason` is for the instance log only
 * (never a secret); clients see message and detail.
 */
export class InstanceError extends Error {
  readonly status: number;
  readonly detail: string;
  readonly reason: string | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, options: { detail?: string; reason?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'InstanceError';
    this.status = status;
    this.detail = options.detail ?? '';
    this.reason = options.reason;
    this.headers = options.headers ?? {};
  }
}

export function errorBody(err: InstanceError): { error: { message: string; detail: string }; status: 'failure' } {
  return { error: { message: err.message, detail: err.detail }, status: 'failure' };
}

/** The messages real instances send, so clients can be tested against the same text. */
export const refuse = {
  notAuthenticated: (reason: string): InstanceError =>
    new InstanceError(401, 'User Not Authenticated', {
      detail: 'Required to provide Auth information', reason, headers: { 'WWW-Authenticate': 'Basic realm="Service-now"' },
    }),
  /** An expired (or revoked) OAuth access token: RFC 6750's invalid_token in WWW-Authenticate. */
  invalidToken: (reason: string): InstanceError =>
    new InstanceError(401, 'User Not Authenticated', {
      detail: 'Required to provide Auth information (invalid_token: the access token expired or was revoked)', reason,
      headers: { 'WWW-Authenticate': `Bearer realm="Service-now", error="invalid_token", error_description="The access token expired"` },
    }),
  forbidden: (operation: 'Insert' | 'Update' | 'Delete', reason: string): InstanceError =>
    new InstanceError(403, 'Operation Failed', { detail: `ACL Exception ${operation} Failed due to security constraints`, reason }),
  noRecord: (): InstanceError =>
    new InstanceError(404, 'No Record found', { detail: "Record doesn't exist or ACL restricts the record retrieval" }),
  invalidTable: (table: string): InstanceError =>
    new InstanceError(404, `Invalid table ${table}`, { detail: '' }),
  badRequest: (message: string, detail = ''): InstanceError => new InstanceError(400, message, { detail, reason: detail || message }),
  invalidUri: (): InstanceError =>
    new InstanceError(400, 'Requested URI does not represent any resource', { detail: '' }),
  methodNotAllowed: (): InstanceError => new InstanceError(405, 'Method not Supported', { detail: '' }),
  tooLarge: (limit: number): InstanceError =>
    new InstanceError(413, 'Request entity too large', { detail: `The request body exceeds ${limit} bytes`, reason: `body over ${limit} bytes` }),
};
