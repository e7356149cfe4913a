import { MidcertError } from '../../common/errors.js';
import type { Authorize, Peer, Role } from '../../proto/grpc-adapter.js';

/**
 * Who may call the agent. Identity rule: an entry matches a peer whose verified client
 * certificate has exactly one subject CN equal to the entry (exact, case-sensitive). The TLS
 * handshake has already proved the certificate chains to the configured client CA, so the CA
 * decides who can hold a CN and this list decides which CNs count. A certificate with no CN or
 * several CNs matches nothing. A CN in both lists is an operator.
 *
 * A CN alone is not enough: every caller's certificate must carry EKU clientAuth, and an operator's
 * must also carry midcert's operator EKU, which the fleet CA puts only in the controller identity
 * (never in agent identities, which are server-only). So a host holding an agent identity cannot
 * act as the controller even if its CN were on the list (docs/security.md).
 */
export interface AccessList {
  operators: string[];
  readers: string[];
}

/** The read-only RPCs; every other method needs the operator role. */
export const READER_METHODS: ReadonlySet<string> = new Set(['GetStatus', 'WatchEvents', 'RunPreflight', 'GetRenewal']);

export interface AccessOptions {
  /**
   * Role of callers on the host-local Unix socket. Anyone in the socket's group can connect
   * (mode 0660) and there is no certificate to tell them apart, so the default is 'reader':
   * status for local tools; changing the MID stays with the controller unless configured.
   */
  unixRole?: Role;
}

export function createAccessPolicy(list: AccessList, options: AccessOptions = {}): Authorize {
  const operators = new Set(list.operators);
  const readers = new Set(list.readers);
  const unixRole = options.unixRole ?? 'reader';
  return (peer, method) => {
    const role = roleOf(peer, operators, readers, unixRole);
    if (role === 'reader' && !READER_METHODS.has(method)) {
      throw new MidcertError('PERMISSION_DENIED', `${describe(peer)} has the reader role and may not call ${method}`);
    }
    return role;
  };
}

function roleOf(peer: Peer, operators: Set<string>, readers: Set<string>, unixRole: Role): Role {
  if (peer.transport === 'insecure-dev') return 'operator'; // startRpcServer has already warned loudly
  if (peer.transport === 'unix') return unixRole;
  // Unreachable while client certificates are required at the handshake; kept as a guard.
  if (!peer.identity) throw new MidcertError('UNAUTHENTICATED', 'no verified client certificate');
  const { commonName: cn, extKeyUsage } = peer.identity;
  if (!extKeyUsage.includes('clientAuth')) {
    throw new MidcertError('PERMISSION_DENIED', `${describe(peer)} is not a client certificate (no EKU clientAuth)`);
  }
  if (cn !== undefined && operators.has(cn)) {
    if (extKeyUsage.includes('midcertOperator')) return 'operator';
    if (!readers.has(cn)) {
      throw new MidcertError('PERMISSION_DENIED', `${describe(peer)} has an operator's name but not midcert's operator EKU (only the controller identity from midcert init carries it)`);
    }
  }
  if (cn !== undefined && readers.has(cn)) return 'reader';
  throw new MidcertError('PERMISSION_DENIED', `${describe(peer)} is not on the agent's access list`);
}

function describe(peer: Peer): string {
  if (peer.transport === 'mtls') return `client "${peer.identity?.subject ?? '?'}"`;
  return peer.transport === 'unix' ? 'the local socket caller' : 'the caller';
}
