import { execFile } from 'node:child_process';
import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { CaConfig } from '../config.js';
import { excerpt, rejected, settle, unreachable, type CaAdapter, type CaOutcome } from './adapter.js';
import { execCookie, readExecCookie } from './cookie.js';
import { readCertificateFile, requireKey } from './files.js';
import { readSubmittedCsr, verifyIssued, type IssuerSource, type SubmittedCsr } from './verify.js';

/**
 * `exec`: certmonger's CA-helper protocol (certmonger doc/submit.txt), so certmonger's own
 * helpers (local-submit…) and third-party ones (cepces for ADCS CEP/CES…) work unchanged.
 * ca.command is the helper's argument array; it runs without a shell.
 */
const STATUS = { ISSUED: 0, WAIT: 1, REJECTED: 2, UNREACHABLE: 3, UNCONFIGURED: 4, WAIT_WITH_DELAY: 5, UNSUPPORTED: 6, NEED_SCEP: 16, NEED_REKEY: 17 } as const;
const MAX_OUTPUT = LIMITS.pemBytes;
/** CERTMONGER_KEY_TYPE values certmonger sets. */
const KEY_TYPES: Record<string, string> = { rsa: 'RSA', ec: 'EC', dsa: 'DSA' };

interface HelperRun {
  /** Exit status, or null when the helper was killed (signal, timeout, output bound). */
  code: number | null;
  stdout: Buffer;
  stderr: string;
  failure?: 'timeout' | 'output' | 'signal' | 'spawn';
  detail?: string;
}

export async function createExecAdapter(cfg: CaConfig): Promise<CaAdapter> {
  const command = requireKey(cfg, 'command');
  if (cfg.chainFile) await readCertificateFile(cfg.chainFile, 'chainFile');
  const timeoutMs = cfg.timeoutSeconds * 1000;
  const program = command[0] as string;

  const run = (operation: string, csr?: SubmittedCsr, cookie?: string): Promise<HelperRun> =>
    runHelper(command, helperEnv(operation, cfg, csr, cookie), timeoutMs);

  const answer = async (result: HelperRun, csr: SubmittedCsr): Promise<CaOutcome> => {
    if (result.failure) return whenKilled(result, program, timeoutMs);
    const message = firstLine(result.stdout.toString('utf8')) || firstLine(result.stderr);
    switch (result.code) {
      case STATUS.ISSUED:
        return verifyIssued(certificatesIn(result.stdout), { key: { publicKey: csr.publicKey }, issuedUnder: issuedUnder(cfg), moreIssuers: issuers(cfg, run) });
      case STATUS.WAIT:
      case STATUS.WAIT_WITH_DELAY:
        return waiting(result.code, result.stdout.toString('utf8'), csr);
      case STATUS.REJECTED:
        return rejected(`the CA rejected the request${message ? `: ${excerpt(message)}` : ''}`).outcome;
      case STATUS.UNREACHABLE:
        return unreachable(`the helper could not reach the CA${message ? `: ${excerpt(message)}` : ''}`).outcome;
      case STATUS.UNCONFIGURED:
        throw new MidcertError('CONFIG_INVALID', `the CA helper ${program} is under-configured (exit 4)${message ? `: ${excerpt(message)}` : ''}`);
      case STATUS.UNSUPPORTED:
        throw new MidcertError('CONFIG_INVALID', `${program} does not support SUBMIT/POLL (exit 6): is ca.command a certmonger submit helper?`);
      case STATUS.NEED_SCEP:
        // SCEP messages are signed with the requester's key, which never leaves the MID host.
        throw new MidcertError('CONFIG_INVALID', `${program} asks for SCEP data (exit 16); midcert cannot build SCEP messages because it never holds the MID's private key`);
      case STATUS.NEED_REKEY:
        return rejected('the CA requires a new key for this request (helper exit 17)').outcome;
      case 126:
      case 127:
        throw new MidcertError('CONFIG_INVALID', `ca.command ${program} cannot be run (exit ${result.code})${message ? `: ${excerpt(message)}` : ''}`);
      default:
        return rejected(`the CA helper exited with unexpected status ${String(result.code)}${message ? `: ${excerpt(message)}` : ''}`).outcome;
    }
  };

  return {
    type: 'exec',
    submit: (csrPem) => settle(async () => {
      const csr = readSubmittedCsr(csrPem);
      return answer(await run('SUBMIT', csr), csr);
    }),
    poll: (cookie) => settle(async () => {
      const { helperCookie, csrDer } = readExecCookie(cookie);
      const csr = readSubmittedCsr(csrDer);
      return answer(await run('POLL', csr, helperCookie), csr);
    }),
  };
}

/**
 * The environment certmonger gives a helper (src/submit-e.c): our own CERTMONGER_* values
 * replace any inherited ones; the rest of the controller's environment passes through so helpers
 * find their own configuration (PATH, Kerberos caches…).
 */
function helperEnv(operation: string, cfg: CaConfig, csr?: SubmittedCsr, cookie?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('CERTMONGER_')) env[name] = value;
  env.CERTMONGER_OPERATION = operation;
  if (csr) {
    env.CERTMONGER_CSR = csr.pem;
    env.CERTMONGER_REQ_SUBJECT = csr.subjectText;
    env.CERTMONGER_SPKI = csr.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const keyType = KEY_TYPES[csr.publicKey.asymmetricKeyType ?? ''];
    if (keyType) env.CERTMONGER_KEY_TYPE = keyType;
  }
  const profile = cfg.profile ?? cfg.template;
  if (profile) env.CERTMONGER_CA_PROFILE = profile;
  if (cookie !== undefined && cookie !== '') env.CERTMONGER_CA_COOKIE = cookie;
  return env;
}

/** Exit 1: stdout is the cookie. Exit 5: a delay in seconds, line break(s), then the cookie. */
function waiting(code: number, stdout: string, csr: SubmittedCsr): CaOutcome {
  let cookie = stdout;
  let delay: number | undefined;
  if (code === STATUS.WAIT_WITH_DELAY) {
    const match = /^\s*(-?\d+)[\r\n]+/.exec(stdout);
    if (!match) throw rejected(`the CA helper asked to wait (exit 5) but did not print "<seconds>\\n<cookie>"`);
    delay = Math.max(0, Math.min(Number(match[1]), 86_400));
    cookie = stdout.slice(match[0].length);
  }
  // certmonger keeps the cookie byte for byte, and so do we; an empty one is a broken helper.
  if (cookie.trim() === '') throw rejected(`the CA helper asked to wait (exit ${code}) but printed no cookie`);
  const pending: CaOutcome = { kind: 'pending', cookie: execCookie(cookie, csr.der) };
  return delay === undefined ? pending : { ...pending, retryAfterSeconds: delay };
}

/** The chain: ca.chainFile if set, else the helper's FETCH-ROOTS answer. */
function issuers(cfg: CaConfig, run: (operation: string) => Promise<HelperRun>): IssuerSource {
  const chainFile = cfg.chainFile;
  if (chainFile) return async () => ({ certs: await readCertificateFile(chainFile, 'chainFile'), source: `ca.chainFile ${chainFile}` });
  return async () => {
    const result = await run('FETCH-ROOTS');
    if (result.failure === 'timeout' || result.code === STATUS.UNREACHABLE) throw unreachable('the CA helper could not fetch the CA certificates (FETCH-ROOTS)');
    if (result.failure || result.code !== STATUS.ISSUED) {
      throw new MidcertError('CONFIG_INVALID', `the CA helper returned the certificate without its chain and cannot FETCH-ROOTS (exit ${String(result.code)}); set ca.chainFile`);
    }
    return { certs: certificatesIn(result.stdout), source: 'the helper\'s FETCH-ROOTS answer' };
  };
}

function issuedUnder(cfg: CaConfig): string {
  const profile = cfg.profile ?? cfg.template;
  return profile ? `profile ${profile} (CERTMONGER_CA_PROFILE)` : 'the helper decides the EKU (some copy it from the CSR)';
}

/** PEM certificates or PKCS#7 (any number, as the protocol allows), or the same in DER. */
function certificatesIn(stdout: Buffer): Certificate[] {
  try {
    return readCertificates(stdout);
  } catch {
    throw rejected('the CA helper exited 0 but its output is not a certificate');
  }
}

function whenKilled(result: HelperRun, program: string, timeoutMs: number): CaOutcome {
  switch (result.failure) {
    case 'timeout':
      return unreachable(`the CA helper ${program} did not finish within ${Math.round(timeoutMs / 1000)} s`).outcome;
    case 'output':
      return rejected(`the CA helper ${program} wrote more than ${MAX_OUTPUT} bytes`).outcome;
    case 'spawn':
      throw new MidcertError('CONFIG_INVALID', `ca.command ${program} cannot be run: ${result.detail ?? 'error'}`);
    default:
      return unreachable(`the CA helper ${program} was killed (${result.detail ?? 'signal'})`).outcome;
  }
}

function firstLine(text: string): string {
  return text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? '';
}

/** Runs the helper without a shell, bounded in time and output; always resolves. */
function runHelper(command: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<HelperRun> {
  return new Promise((resolve) => {
    const child = execFile(command[0] as string, command.slice(1), {
      env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT, encoding: 'buffer', windowsHide: true,
    }, (err, stdout, stderr) => {
      const out = { stdout: Buffer.from(stdout ?? []), stderr: Buffer.from(stderr ?? []).toString('utf8', 0, 64 * 1024) };
      if (!err) return resolve({ code: 0, ...out });
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: NodeJS.Signals | null };
      if (typeof e.code === 'number') return resolve({ code: e.code, ...out });
      if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return resolve({ code: null, ...out, failure: 'output' });
      if (e.code === 'ENOENT' || e.code === 'EACCES') return resolve({ code: null, ...out, failure: 'spawn', detail: e.code });
      if (e.killed && e.signal === 'SIGKILL') return resolve({ code: null, ...out, failure: 'timeout' });
      return resolve({ code: null, ...out, failure: 'signal', detail: e.signal ?? String(e.code ?? 'error') });
    });
    // The helper reads nothing from stdin; closing it keeps one that tries from hanging.
    child.stdin?.end();
  });
}
