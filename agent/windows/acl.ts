import { rm } from 'node:fs/promises';
import { win32 } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { execProgram } from '../../common/exec.js';

/**
 * Windows file protection for keys and the agent's state dir. chmod is a no-op on Windows (Node
 * maps modes to the read-only flag only), so a private key "written with mode 0600" is readable
 * by every user the folder's inherited ACL admits. Instead, on Windows:
 *
 *   icacls <path> /inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F <owner>:F   (files)
 *   icacls <path> /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F …                    (directories)
 *
 * i.e. inheritance removed (inherited ACEs dropped, not copied), and full control for exactly
 * SYSTEM (S-1-5-18), the Administrators group (S-1-5-32-544) and the account the agent runs as.
 * Well-known SIDs are given as `*S-…`, so the command works on any Windows display language.
 * A check reads the DACL as SDDL (language-neutral) with PowerShell's Get-Acl and accepts it only
 * when it is protected (`D:P…`) and every allow ACE is for SY, BA or the owner.
 *
 * Under wine icacls is a stub (exit 0, nothing changes) and there is no PowerShell: the argument
 * building and the SDDL verdicts are unit-tested (test/windows/acl.test.ts); only real Windows can
 * prove the ACLs themselves (docs/windows.md).
 */

export const SID_SYSTEM = 'S-1-5-18';
export const SID_ADMINISTRATORS = 'S-1-5-32-544';

/** The account the agent runs as, as icacls takes it: DOMAIN\user (or *S-1-5-18 for LocalSystem). */
export function currentAccount(env: NodeJS.ProcessEnv = process.env): string {
  const user = env.USERNAME ?? '';
  const domain = env.USERDOMAIN ?? '';
  // LocalSystem services see USERNAME=<COMPUTERNAME>$ ; SYSTEM is granted anyway.
  if (!user || user.endsWith('$')) return `*${SID_SYSTEM}`;
  return domain ? `${domain}\\${user}` : user;
}

/** icacls arguments that leave exactly owner + SYSTEM + Administrators on `path` (no inheritance). */
export function icaclsProtectArgs(path: string, options: { directory: boolean; account?: string }): string[] {
  if (!win32.isAbsolute(path)) throw new Error(`icacls needs an absolute path, not ${path}`);
  const inherit = options.directory ? '(OI)(CI)' : '';
  const account = options.account ?? currentAccount();
  const grants = [...new Set([`*${SID_SYSTEM}`, `*${SID_ADMINISTRATORS}`, account])].map((who) => `${who}:${inherit}F`);
  // /grant:r replaces any explicit ACE of those accounts; /inheritance:r drops inherited ones.
  // Explicit ACEs of other accounts on a pre-existing path are removed by /remove:g first.
  return [path, '/inheritance:r', '/grant:r', ...grants, '/q'];
}

/** icacls arguments that remove the usual over-broad explicit grants (Everyone, Users, Authenticated Users, CREATOR OWNER). */
export function icaclsRemoveBroadArgs(path: string): string[] {
  return [path, '/remove:g', '*S-1-1-0', '*S-1-5-32-545', '*S-1-5-11', '*S-1-3-0', '/q'];
}

export function icaclsExe(env: NodeJS.ProcessEnv = process.env): string {
  return win32.join(env.SystemRoot ?? env.windir ?? 'C:\\Windows', 'System32', 'icacls.exe');
}

/** Protects `path` (a key file or the state dir) on Windows; a no-op elsewhere. Throws when icacls fails. */
export async function protectPath(path: string, options: { directory: boolean; platform?: NodeJS.Platform } = { directory: false }): Promise<void> {
  if ((options.platform ?? process.platform) !== 'win32') return;
  const icacls = icaclsExe();
  // Exit 0 also when none of those accounts had an ACE; a failure here is reported by the grant below.
  await execProgram(icacls, icaclsRemoveBroadArgs(path), { timeoutMs: 30_000 });
  const r = await execProgram(icacls, icaclsProtectArgs(path, { directory: options.directory }), { timeoutMs: 30_000 });
  if (r.code !== 0) throw new MidcertError('OUTPUT_FAILED', `cannot restrict the ACL of ${path} (icacls exited ${r.code}): ${`${r.stdout}${r.stderr}`.trim().slice(0, 300)}`);
}

/**
 * A key file just written: restrict it, or remove it when that fails, so a private key is never
 * left behind with its folder's inherited (broad) ACL.
 */
export async function protectKeyFileOrRemove(path: string, platform: NodeJS.Platform = process.platform): Promise<void> {
  try {
    await protectPath(path, { directory: false, platform });
  } catch (err) {
    await rm(path, { force: true });
    throw err instanceof MidcertError ? new MidcertError(err.code, `${err.message}; ${path} was removed`) : err;
  }
}

export type AclVerdict =
  | { ok: true; sddl: string }
  | { ok: false; unverified: true; why: string }
  | { ok: false; unverified: false; why: string; sddl: string };

/** Well-known SDDL aliases we accept in an allow ACE, besides the owner's SID. */
const ALLOWED_ALIASES = new Set(['SY', 'BA', SID_SYSTEM, SID_ADMINISTRATORS, 'OW']);
const ALIAS_NAMES: Record<string, string> = { WD: 'Everyone', BU: 'BUILTIN\\Users', AU: 'Authenticated Users', CO: 'CREATOR OWNER', IU: 'Interactive', AN: 'Anonymous', BG: 'Guests', NU: 'Network', PU: 'Power Users' };

/**
 * Judges an SDDL string: protected DACL (`D:P`) whose allow ACEs grant only SYSTEM, Administrators
 * and the object's owner (`O:` in the same SDDL). Deny ACEs are fine.
 */
export function judgeSddl(sddl: string): AclVerdict {
  const text = sddl.trim();
  const owner = /^O:([A-Z]{2}|S-[0-9-]+)/.exec(text)?.[1];
  const dacl = /D:([A-Z]*)((?:\([^)]*\))*)/.exec(text);
  if (!owner || !dacl) return { ok: false, unverified: true, why: `unexpected security descriptor "${text.slice(0, 120)}"` };
  const flags = dacl[1] ?? '';
  const aces = [...(dacl[2] ?? '').matchAll(/\(([^)]*)\)/g)].map((m) => (m[1] ?? '').split(';'));
  const problems: string[] = [];
  if (!flags.includes('P')) problems.push('inheritance is not removed (the DACL is not protected)');
  for (const ace of aces) {
    const [type, , rights, , , sid] = ace;
    if (type !== 'A' || !sid) continue;
    if (ALLOWED_ALIASES.has(sid) || sid === owner) continue;
    problems.push(`${ALIAS_NAMES[sid] ?? sid} has access (${rights})`);
  }
  return problems.length === 0 ? { ok: true, sddl: text } : { ok: false, unverified: false, why: problems.join('; '), sddl: text };
}

/** Reads the DACL of `path` as SDDL (PowerShell Get-Acl; the path travels in an environment variable, not in the command). */
export async function checkAcl(path: string, env: NodeJS.ProcessEnv = process.env): Promise<AclVerdict> {
  const root = env.SystemRoot ?? env.windir ?? 'C:\\Windows';
  const ps = win32.join(root, 'System32', 'WindowsPowerShell', 'v1.0', 'powershell.exe');
  const r = await execProgram(ps, ['-NoProfile', '-NonInteractive', '-Command', '(Get-Acl -LiteralPath $env:MIDCERT_ACL_PATH).Sddl'], { env: { ...env, MIDCERT_ACL_PATH: path }, timeoutMs: 20_000 });
  const sddl = r.stdout.trim();
  if (r.code !== 0 || !sddl.startsWith('O:')) {
    return { ok: false, unverified: true, why: `the ACL of ${path} could not be read (PowerShell Get-Acl ${r.code === 0 ? 'printed no SDDL' : `exited ${r.code}`})` };
  }
  return judgeSddl(sddl);
}

/**
 * mkdir -p with mode 0700; on Windows a directory this call created also gets the protected ACL
 * (owner + SYSTEM + Administrators, no inheritance), so files made inside inherit only those.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined && process.platform === 'win32') await protectPath(dir, { directory: true });
}
