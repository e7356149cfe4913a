import { MidcertError } from '../../common/errors.js';
import { readCertificates } from '../../pki/certificate.js';
import { toPem } from '../../pki/pem.js';
import { AUDIT_COLUMNS, type AuditRepo } from './audit.js';
import type { StoreContext } from './db.js';
import { CERTIFICATE_TRANSITIONS, assertTransition, type CertificateStatus } from './states.js';
import { checkAgentName } from './validate.js';

/**
 * Leaf certificates issued for MIDs, newest last. The descriptive columns are read from the PEM
 * itself on the way in, so they can never disagree with the certificate.
 */
export interface CertificateRecord {
  id: number;
  agentName: string;
  /** SHA-256 of the DER, lower-case hex. */
  sha256: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  pem: string;
  status: CertificateStatus;
  issuedAt: string;
  installedAt: string | null;
  retiredAt: string | null;
  jobId: number | null;
}

export interface CertificateRepo {
  /**
   * Records a newly issued leaf (the first certificate of `pem`). Recording the same certificate
   * for the same agent again returns the existing record (a resumed job may repeat the call);
   * for another agent it is RECORD_CONFLICT.
   */
  recordIssued(input: { agentName: string; pem: string; jobId?: number | null }): Promise<CertificateRecord>;
  /**
   * recordIssued, then setStatus(installed), as one row-locked write (the certificate's own row:
   * no store-wide lock) with the same two audit rows: what a rotation records once its MID runs
   * the new leaf. A certificate already recorded takes the two-step path, with its checks.
   */
  recordInstalled(input: { agentName: string; pem: string; jobId?: number | null }): Promise<CertificateRecord>;
  /**
   * issued → installed → retired (or issued → retired); see CERTIFICATE_TRANSITIONS. `from`: the
   * status the caller just read, so the record is not read again (still compare-and-set).
   */
  setStatus(sha256: string, to: CertificateStatus, from?: CertificateStatus): Promise<CertificateRecord>;
  get(sha256: string): Promise<CertificateRecord | undefined>;
  /** The agent's newest certificate in any status (by issue time), or the newest with `status`. */
  latest(agentName: string, status?: CertificateStatus): Promise<CertificateRecord | undefined>;
  /** Newest certificate of every agent that has one (one query, for fleet tables), by agent name. */
  latestPerAgent(status?: CertificateStatus): Promise<CertificateRecord[]>;
  /** The agent's certificates, newest first (default 50). */
  history(agentName: string, options?: { limit?: number }): Promise<CertificateRecord[]>;
}

interface CertificateRow {
  id: number; agent_name: string; sha256: string; subject: string; issuer: string; serial: string; not_before: string;
  not_after: string; pem: string; status: CertificateStatus; issued_at: string; installed_at: string | null;
  retired_at: string | null; job_id: number | null;
}

export function createCertificateRepo(ctx: StoreContext, audit: AuditRepo): CertificateRepo {
  const { sql } = ctx;
  const get = async (sha256: string): Promise<CertificateRecord | undefined> => {
    const row = await sql.get<CertificateRow>('SELECT * FROM certificates WHERE sha256 = ?', [sha256.toLowerCase()]);
    return row && toRecord(row);
  };
  const statusFilter = (status: CertificateStatus | undefined): { where: string; params: string[] } =>
    status === undefined ? { where: '', params: [] } : { where: ' AND status = ?', params: [status] };

  const repo: CertificateRepo = {
    async recordIssued(input) {
      const cert = readCertificates(Buffer.from(input.pem))[0];
      if (!cert) throw new MidcertError('CERT_MALFORMED', 'no certificate in the PEM to record');
      const target = `agent:${input.agentName.slice(0, 80)}`;
      return audit.audited({ action: 'certificate.issue', target, params: { sha256: cert.sha256, serial: cert.serial, notAfter: cert.notAfter.toISOString(), jobId: input.jobId ?? null } }, async () => {
        checkAgentName(input.agentName);
        const existing = await get(cert.sha256);
        if (existing) {
          if (existing.agentName === input.agentName) return existing;
          throw new MidcertError('RECORD_CONFLICT', `certificate ${cert.sha256.slice(0, 16)}… is already recorded for agent "${existing.agentName}"`);
        }
        return toRecord(await sql.get<CertificateRow>(`INSERT INTO certificates (agent_name, sha256, subject, issuer, serial, not_before, not_after, pem, status, issued_at, job_id)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'issued', ?, ?) RETURNING *`, [
          input.agentName, cert.sha256, cert.subjectText, cert.issuerText, cert.serial,
          cert.notBefore.toISOString(), cert.notAfter.toISOString(), toPem('CERTIFICATE', cert.der), ctx.now(), input.jobId ?? null,
        ]) as CertificateRow);
      });
    },
    async recordInstalled(input) {
      const cert = readCertificates(Buffer.from(input.pem))[0];
      if (!cert) throw new MidcertError('CERT_MALFORMED', 'no certificate in the PEM to record');
      checkAgentName(input.agentName);
      const now = ctx.now();
      const insert = `INSERT INTO certificates (agent_name, sha256, subject, issuer, serial, not_before, not_after, pem, status, issued_at, installed_at, job_id)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'installed', ?, ?, ?) ON CONFLICT (sha256) DO NOTHING RETURNING *`;
      const values = [
        input.agentName, cert.sha256, cert.subjectText, cert.issuerText, cert.serial,
        cert.notBefore.toISOString(), cert.notAfter.toISOString(), toPem('CERTIFICATE', cert.der), now, now, input.jobId ?? null,
      ];
      const audited = [
        { action: 'certificate.issue', target: `agent:${input.agentName.slice(0, 80)}`, params: { sha256: cert.sha256, serial: cert.serial, notAfter: cert.notAfter.toISOString(), jobId: input.jobId ?? null } },
        { action: 'certificate.status', target: `certificate:${cert.sha256}`, params: { to: 'installed' } },
      ];
      // PostgreSQL: the record and its audit rows in one statement (one round trip); SQLite has
      // no INSERT inside WITH, so there it is a transaction of two.
      const rows = audit.valuesOf(audited);
      const inserted = sql.dialect === 'postgresql'
        ? await sql.writeOne<CertificateRow>(`WITH c AS (${insert}),
            a AS (INSERT INTO audit (${AUDIT_COLUMNS}) SELECT v.* FROM (${rows.sql}) AS v(${AUDIT_COLUMNS}) WHERE EXISTS (SELECT 1 FROM c))
            SELECT * FROM c`, [...values, ...rows.params])
        : await sql.writeRows(async () => {
          const row = await sql.get<CertificateRow>(insert, values);
          if (row) await audit.append(audited);
          return row;
        });
      if (inserted) return toRecord(inserted);
      return sql.writeRows(async () => {
        const existing = await get(cert.sha256);
        // Another agent's: recordIssued refuses it (RECORD_CONFLICT), audited.
        const known = existing?.agentName === input.agentName ? existing : await repo.recordIssued(input);
        return known.status === 'installed' ? known : repo.setStatus(known.sha256, 'installed', known.status);
      });
    },
    async setStatus(sha256, to, from) {
      return audit.audited({ action: 'certificate.status', target: `certificate:${sha256.slice(0, 64)}`, params: { to } }, async () => {
        const status = from ?? (await get(sha256))?.status;
        if (!status) throw new MidcertError('CERTIFICATE_NOT_FOUND', `no certificate ${sha256.slice(0, 16)}… is recorded`);
        assertTransition(CERTIFICATE_TRANSITIONS, `certificate ${sha256.slice(0, 16)}…`, status, to);
        const now = ctx.now();
        const row = await sql.get<CertificateRow>(`UPDATE certificates SET status = ?,
            installed_at = CASE WHEN ? = 'installed' THEN ? ELSE installed_at END,
            retired_at = CASE WHEN ? = 'retired' THEN ? ELSE retired_at END
          WHERE sha256 = ? AND status = ? RETURNING *`, [to, to, now, to, now, sha256, status]);
        if (!row) {
          if (from !== undefined && !(await get(sha256))) throw new MidcertError('CERTIFICATE_NOT_FOUND', `no certificate ${sha256.slice(0, 16)}… is recorded`);
          throw new MidcertError('STATE_TRANSITION_INVALID', `certificate ${sha256.slice(0, 16)}… changed status while being updated`);
        }
        return toRecord(row);
      });
    },
    get,
    async latest(agentName, status) {
      const f = statusFilter(status);
      const row = await sql.get<CertificateRow>(`SELECT * FROM certificates WHERE agent_name = ?${f.where} ORDER BY issued_at DESC, id DESC LIMIT 1`, [agentName, ...f.params]);
      return row && toRecord(row);
    },
    async latestPerAgent(status) {
      const f = statusFilter(status);
      const rows = await sql.all<CertificateRow>(`SELECT * FROM (
          SELECT *, row_number() OVER (PARTITION BY agent_name ORDER BY issued_at DESC, id DESC) AS rn
          FROM certificates WHERE 1 = 1${f.where}) ranked WHERE rn = 1 ORDER BY agent_name`, f.params);
      return rows.map(toRecord);
    },
    history: async (agentName, options = {}) => (await sql.all<CertificateRow>('SELECT * FROM certificates WHERE agent_name = ? ORDER BY issued_at DESC, id DESC LIMIT ?',
      [agentName, Math.min(Math.max(1, options.limit ?? 50), 10_000)])).map(toRecord),
  };
  return repo;
}

function toRecord(r: CertificateRow): CertificateRecord {
  return {
    id: r.id, agentName: r.agent_name, sha256: r.sha256, subject: r.subject, issuer: r.issuer, serial: r.serial,
    notBefore: r.not_before, notAfter: r.not_after, pem: r.pem, status: r.status, issuedAt: r.issued_at,
    installedAt: r.installed_at, retiredAt: r.retired_at, jobId: r.job_id,
  };
}
