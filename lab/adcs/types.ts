import type { CertificateProfile } from '../../pki/issue.js';
import type { LabCa } from '../lab-ca.js';

/** What the CA does with a request for a template: issue at once, hold for a manager, or refuse. */
export type TemplateMode = 'issue' | 'pending' | 'deny';

/** Named KU/EKU sets matching the stock ADCS templates the lab offers (see templates.ts). */
export type TemplateProfileName = 'client' | 'server' | 'user';

/**
 * A certificate template as the CA applies it. As on a real ADCS, the template (not the CSR)
 * decides keyUsage, extendedKeyUsage and validity; only the subject and key come from the CSR.
 */
export interface TemplateConfig {
  profile: TemplateProfileName | CertificateProfile;
  validityDays: number;
  mode: TemplateMode;
  /** In `pending` mode: answer "Taken Under Submission" to this many polls, then issue. */
  autoApproveAfterPolls?: number;
  /**
   * Who holds Enroll permission: basic-auth user names or client-certificate subject CNs,
   * compared case-insensitively. Omitted = every authenticated caller.
   */
  enrollees?: string[];
}

export interface AdcsUser {
  username: string;
  password: string;
}

export interface AdcsOptions {
  /** The lab CA; leaves are issued by its intermediate (the "issuing CA"). */
  ca: LabCa;
  /** Server identity (certPem may carry the intermediate after the leaf). */
  tls: { certPem: string; keyPem: string };
  host?: string;
  /** 0 (default) picks an ephemeral port. */
  port?: number;
  /** HTTP Basic credentials (user names compare case-insensitively, like Windows accounts). */
  users?: AdcsUser[];
  /** Trust anchors for client-certificate authentication; omit to not ask for client certificates. */
  clientCaPem?: string;
  /** Template name → config; defaults to DEFAULT_TEMPLATES. Names compare case-insensitively. */
  templates?: Record<string, TemplateConfig>;
  /** JSON file keeping requests, request ids, CA renewals and template modes across restarts. */
  stateFile?: string;
  /** First request id handed out (default 100). */
  firstRequestId?: number;
  /**
   * Answer 400 to callers whose User-Agent does not look like a browser (no "Mozilla"; public
   * clients send "Mozilla" or "Mozilla/5.0 …").
   * Real certsrv keys page behaviour on browser detection; clients must send a browser-like
   * User-Agent, and the lab makes forgetting it fail loudly. Default true.
   */
  requireBrowserUserAgent?: boolean;
}

export type RequestStatus = 'issued' | 'pending' | 'denied' | 'failed';

/** One row of the simulated CA database, as `requests()` and the state file hold it. */
export interface AdcsRequestRecord {
  id: number;
  status: RequestStatus;
  /** The template name as the client sent it (null when none was given). */
  template: string | null;
  subject: string | null;
  dispositionMessage: string;
  requester: string;
  authMethod: AuthMethod;
  userAgent: string;
  submittedAt: string;
  resolvedAt: string | null;
  /** certnew.cer polls answered while the request was pending. */
  polls: number;
  csrPem: string | null;
  certPem: string | null;
  /** Template settings captured at submission, used when a pending request is approved. */
  profile: TemplateProfileName | CertificateProfile | null;
  validityDays: number | null;
  autoApproveAfterPolls: number | null;
}

export type AuthMethod = 'basic' | 'client-certificate';

export interface AccessLogEntry {
  time: string;
  method: string;
  path: string;
  status: number;
  /** Authenticated principal, or null when the request was refused before that. */
  user: string | null;
  /** The User-Agent header as sent ('' when absent). */
  userAgent: string;
}

/** A running simulator plus the admin handle tests use in place of the CA console. */
export interface RunningAdcs {
  /** https://HOST:PORT/certsrv */
  url: string;
  port: number;
  close(): Promise<void>;
  /** Issues a pending request (CA console: Pending Requests → Issue). */
  approve(reqId: number): Promise<AdcsRequestRecord>;
  /** Denies a pending request; the disposition message always starts with "Denied by". */
  deny(reqId: number, reason?: string): Promise<AdcsRequestRecord>;
  setTemplateMode(name: string, mode: TemplateMode): Promise<void>;
  requests(): AdcsRequestRecord[];
  /** Renews the issuing CA certificate (same key); certcarc.asp's nRenewals goes up by one. */
  renewCa(): Promise<number>;
  /** The most recent requests served (bounded), with the User-Agent each one sent. */
  accessLog(): AccessLogEntry[];
}
