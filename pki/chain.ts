import type { KeyObject } from 'node:crypto';
import { isIssuedBy, type Certificate } from './certificate.js';
import { publicKeysEqual } from './keys.js';

/** Why a chain stops short of a self-signed root. */
export type ChainGap =
  | { kind: 'missing-issuer'; cert: Certificate } // no candidate with the issuer's name
  | { kind: 'bad-signature'; cert: Certificate; candidate: Certificate }; // name matches, signature does not

export interface BuiltChain {
  /** Leaf first, then each issuer in turn. */
  chain: Certificate[];
  /** True when the last certificate is self-signed (a root). */
  complete: boolean;
  gap: ChainGap | undefined;
  /** Inputs that are not part of the chain (duplicates removed first). */
  unused: Certificate[];
  /** Inputs seen more than once (by SHA-256), one entry per extra copy. */
  duplicates: Certificate[];
}

/**
 * Orders certificates given in any order into leaf → intermediates → root, linking each step by
 * issuer name and a verified signature. The leaf is the one matching `key` when given; otherwise
 * the certificate that issued none of the others (preferring a non-CA).
 */
export function buildChain(certs: Certificate[], key?: KeyObject): BuiltChain {
  const { unique, duplicates } = dedupe(certs);
  const leaf = pickLeaf(unique, key);
  if (!leaf) return { chain: [], complete: false, gap: undefined, unused: unique, duplicates };
  const chain = [leaf];
  const remaining = unique.filter((c) => c !== leaf);
  let gap: ChainGap | undefined;
  for (let current = leaf; !current.selfSigned; ) {
    const step = findIssuer(current, remaining);
    if ('gap' in step) {
      gap = step.gap;
      break;
    }
    chain.push(step.issuer);
    remaining.splice(remaining.indexOf(step.issuer), 1);
    current = step.issuer;
  }
  const last = chain[chain.length - 1] as Certificate;
  return { chain, complete: last.selfSigned && chain.length > 1, gap, unused: remaining, duplicates };
}

function dedupe(certs: Certificate[]): { unique: Certificate[]; duplicates: Certificate[] } {
  const seen = new Set<string>();
  const unique: Certificate[] = [];
  const duplicates: Certificate[] = [];
  for (const cert of certs) {
    if (seen.has(cert.sha256)) duplicates.push(cert);
    else {
      seen.add(cert.sha256);
      unique.push(cert);
    }
  }
  return { unique, duplicates };
}

function pickLeaf(certs: Certificate[], key?: KeyObject): Certificate | undefined {
  if (key) {
    const matching = certs.find((c) => publicKeysEqual(c.publicKey, key));
    if (matching) return matching;
  }
  const issuesNothing = certs.filter((candidate) => !certs.some((other) => other !== candidate && isIssuedBy(other, candidate)));
  return issuesNothing.find((c) => !c.basicConstraints?.ca) ?? issuesNothing[0] ?? certs[0];
}

function findIssuer(cert: Certificate, candidates: Certificate[]): { issuer: Certificate } | { gap: ChainGap } {
  const byName = candidates.filter((c) => c.subjectText.toLowerCase() === cert.issuerText.toLowerCase());
  const verified = byName.find((c) => isIssuedBy(cert, c));
  if (verified) return { issuer: verified };
  if (byName[0]) return { gap: { kind: 'bad-signature', cert, candidate: byName[0] } };
  return { gap: { kind: 'missing-issuer', cert } };
}
