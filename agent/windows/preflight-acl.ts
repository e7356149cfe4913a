import { checkAcl, icaclsProtectArgs } from './acl.js';

/** The preflight `state-dir` finding on Windows: the ACL, not the (meaningless) mode bits. */
export interface StateDirAclFinding {
  name: 'state-dir';
  ok: boolean;
  severity: 'error' | 'warning' | 'info';
  code: string;
  message: string;
}

export async function stateDirAclCheck(dir: string, read: typeof checkAcl = checkAcl): Promise<StateDirAclFinding> {
  const verdict = await read(dir);
  const fix = `icacls "${dir}" ${icaclsProtectArgs(dir, { directory: true }).slice(1).join(' ')}`;
  if (verdict.ok) return { name: 'state-dir', ok: true, severity: 'info', code: 'OK', message: `${dir} is writable; ACL owner + SYSTEM + Administrators only, inheritance removed` };
  if (verdict.unverified) {
    return { name: 'state-dir', ok: false, severity: 'warning', code: 'STATE_DIR_ACL_UNVERIFIED', message: `${dir} is writable, but its ACL was not verified: ${verdict.why}; it should allow only the agent's account, SYSTEM and Administrators: ${fix}` };
  }
  return { name: 'state-dir', ok: false, severity: 'error', code: 'STATE_DIR_UNUSABLE', message: `${dir} is writable but its ACL lets others in (it holds private keys until they are installed): ${verdict.why}; fix: ${fix}` };
}
