import { parseCsr, type ParsedCsr } from '../../pki/csr.js';
import { readCertificates } from '../../pki/certificate.js';
import { scanPem, toPem } from '../../pki/pem.js';
import type { LabCa } from '../lab-ca.js';
import type { CaCertificates } from './ca-certs.js';
import { DISPOSITION, deniedByOfficer, dispositionSafe, unsupportedTemplate } from './dispositions.js';
import type { AdcsStore } from './store.js';
import { mayEnroll, resolveProfile, type TemplateSet } from './templates.js';
import type { AdcsRequestRecord, AuthMethod, TemplateConfig } from './types.js';

const DAY = 86_400_000;
/** ADCS back-dates NotBefore by its ClockSkewMinutes setting (10 by default). */
const CLOCK_SKEW_MS = 10 * 60_000;
const MAX_TEMPLATE_NAME = 256;

export interface Principal {
  name: string;
  method: AuthMethod;
}

/** The certfnsh.asp form fields that matter (names already matched case-insensitively). */
export interface Submission {
  mode: string;
  certRequest: string;
  certAttrib: string;
}

export type SubmitOutcome =
  | { kind: 'issued'; id: number }
  | { kind: 'pending'; id: number }
  | { kind: 'denied'; message: string }
  | { kind: 'error'; message: string };

export type RetrieveOutcome =
  | { kind: 'issued'; certDer: Buffer }
  | { kind: 'pending'; message: string }
  | { kind: 'denied'; message: string }
  | { kind: 'failed'; message: string }
  | { kind: 'unknown' };

/**
 * The CA and its policy module: parse the request, apply the template, decide. The template,
 * never the CSR, decides KU/EKU/validity; the subject and key come from the CSR.
 */
export class Enrollment {
  constructor(
    private readonly ca: LabCa,
    private readonly caCerts: CaCertificates,
    private readonly store: AdcsStore,
    private readonly templates: TemplateSet,
  ) {}

  submit(form: Submission, who: Principal, userAgent: string): SubmitOutcome {
    // Only `newreq` is simulated; the browser-only modes (chkpnd, …) are out of scope.
    if (form.mode.toLowerCase() !== 'newreq') return { kind: 'error', message: DISPOSITION.badMode };
    if (form.certRequest.trim() === '') return { kind: 'error', message: DISPOSITION.emptyRequest };
    const id = this.store.nextId();
    if (id === undefined) return { kind: 'error', message: DISPOSITION.databaseFull };
    const row = newRow(id, who, userAgent, templateAttribute(form.certAttrib));
    this.store.add(row);
    this.decide(row, form.certRequest);
    if (row.status === 'issued') return { kind: 'issued', id };
    if (row.status === 'pending') return { kind: 'pending', id };
    return { kind: row.status === 'denied' ? 'denied' : 'error', message: row.dispositionMessage };
  }

  /** certnew.cer?ReqID=n: what the requester may collect now (counts polls of pending requests). */
  retrieve(id: number): RetrieveOutcome {
    const row = this.store.row(id);
    if (!row) return { kind: 'unknown' };
    if (row.status === 'pending') {
      row.polls += 1;
      if (row.autoApproveAfterPolls !== null && row.polls > row.autoApproveAfterPolls) this.issue(row);
    }
    if (row.status === 'issued' && row.certPem) return { kind: 'issued', certDer: certDer(row.certPem) };
    if (row.status === 'pending') return { kind: 'pending', message: row.dispositionMessage };
    return { kind: row.status === 'denied' ? 'denied' : 'failed', message: row.dispositionMessage };
  }

  approve(id: number): AdcsRequestRecord {
    const row = this.pendingRow(id);
    this.issue(row);
    return structuredClone(row);
  }

  deny(id: number, reason?: string): AdcsRequestRecord {
    const row = this.pendingRow(id);
    resolve(row, 'denied', dispositionSafe(deniedByOfficer(reason)));
    return structuredClone(row);
  }

  private pendingRow(id: number): AdcsRequestRecord {
    const row = this.store.row(id);
    if (!row) throw new Error(`no request ${id}`);
    if (row.status !== 'pending') throw new Error(`request ${id} is ${row.status}, not pending`);
    return row;
  }

  /** Parse → verify → policy (template present, known, Enroll permission) → template mode. */
  private decide(row: AdcsRequestRecord, certRequest: string): void {
    const csr = readCsr(certRequest);
    if (csr === undefined) return resolve(row, 'failed', DISPOSITION.badAsn1);
    row.subject = csr.subjectText;
    row.csrPem = toPem('CERTIFICATE REQUEST', csr.der);
    if (!csr.signatureValid) return resolve(row, 'failed', DISPOSITION.badSignature);
    if (row.template === null) return resolve(row, 'denied', DISPOSITION.noTemplate);
    const template = row.template.length <= MAX_TEMPLATE_NAME ? this.templates.find(row.template) : undefined;
    if (!template) return resolve(row, 'denied', dispositionSafe(unsupportedTemplate(row.template)));
    if (!mayEnroll(template.config, row.requester)) return resolve(row, 'denied', DISPOSITION.templateDenied);
    captureTemplate(row, template.config);
    if (template.config.mode === 'deny') return resolve(row, 'denied', DISPOSITION.deniedByPolicy);
    if (template.config.mode === 'pending') {
      row.dispositionMessage = DISPOSITION.pending;
      return;
    }
    this.issue(row);
  }

  private issue(row: AdcsRequestRecord): void {
    if (!row.csrPem || row.profile === null || row.validityDays === null) throw new Error(`request ${row.id} has no template settings`);
    const now = Date.now();
    // A CA never issues past the expiry of its (newest) certificate.
    const notAfter = new Date(Math.min(now + row.validityDays * DAY, this.caCerts.newestNotAfter().getTime()));
    row.certPem = this.ca.signCsr(row.csrPem, { profile: resolveProfile(row.profile), notBefore: new Date(now - CLOCK_SKEW_MS), notAfter });
    resolve(row, 'issued', DISPOSITION.issued);
  }
}

function newRow(id: number, who: Principal, userAgent: string, template: string | null): AdcsRequestRecord {
  return {
    id, status: 'pending', template: template === null ? null : template.slice(0, 2 * MAX_TEMPLATE_NAME), subject: null, dispositionMessage: DISPOSITION.pending,
    requester: who.name, authMethod: who.method, userAgent: userAgent.slice(0, 512),
    submittedAt: new Date().toISOString(), resolvedAt: null, polls: 0, csrPem: null, certPem: null,
    profile: null, validityDays: null, autoApproveAfterPolls: null,
  };
}

function captureTemplate(row: AdcsRequestRecord, config: TemplateConfig): void {
  row.profile = config.profile;
  row.validityDays = config.validityDays;
  row.autoApproveAfterPolls = config.mode === 'pending' ? config.autoApproveAfterPolls ?? null : null;
}

function resolve(row: AdcsRequestRecord, status: AdcsRequestRecord['status'], message: string): void {
  row.status = status;
  row.dispositionMessage = message;
  row.resolvedAt = new Date().toISOString();
}

/** `CertificateTemplate:<name>` out of CertAttrib (attributes are CRLF- or LF-separated `Name:Value`). */
export function templateAttribute(certAttrib: string): string | null {
  for (const line of certAttrib.split(/\r\n|\r|\n/)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    if (line.slice(0, colon).trim().toLowerCase() !== 'certificatetemplate') continue;
    const value = line.slice(colon + 1).trim();
    return value === '' ? null : value;
  }
  return null;
}

/** A CSR as pasted into certsrv: PEM (any line endings) or bare base64 without BEGIN/END lines. */
function readCsr(text: string): ParsedCsr | undefined {
  try {
    let der: Buffer | undefined;
    if (text.includes('-----BEGIN')) {
      der = scanPem(text).find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST')?.der;
    } else {
      const compact = text.replace(/\s+/g, '');
      if (/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) der = Buffer.from(compact, 'base64');
    }
    return der && der.length > 0 ? parseCsr(der) : undefined;
  } catch {
    return undefined;
  }
}

function certDer(pem: string): Buffer {
  const cert = readCertificates(Buffer.from(pem))[0];
  if (!cert) throw new Error('stored certificate is unreadable');
  return cert.der;
}
