import type { PresentedCertificate } from './instance-probe.js';

/**
 * TLS-intercepting proxies ("SSL inspection") re-sign the instance's certificate with their own
 * CA, and a client certificate cannot pass through them: mutual TLS to the instance then fails.
 * They show in the names of the certificate the instance URL presents (DESIGN.md §4).
 */
export const INTERCEPTING_PROXIES: readonly { vendor: string; pattern: RegExp }[] = [
  { vendor: 'Zscaler', pattern: /zscaler/i },
  { vendor: 'Palo Alto Networks', pattern: /palo\s*alto/i },
  // Blue Coat ProxySG, later Symantec's web security products; not Symantec's old public CAs.
  { vendor: 'Blue Coat / Symantec', pattern: /blue\s*coat|proxysg|symantec\s*(web\s*(security|gateway|isolation)|ssl\s*visibility|secure\s*web|proxy|wss)/i },
  { vendor: 'Fortinet (FortiGate)', pattern: /fortinet|fortigate/i },
  { vendor: 'Netskope', pattern: /netskope/i },
  { vendor: 'Forcepoint (Websense)', pattern: /forcepoint|websense/i },
  { vendor: 'McAfee / Skyhigh Web Gateway', pattern: /mcafee|skyhigh/i },
  { vendor: 'Cisco Umbrella', pattern: /cisco\s*umbrella|umbrella\s*(secure\s*web\s*gateway|root|ca)|opendns/i },
  { vendor: 'Sophos', pattern: /sophos/i },
  { vendor: 'Check Point', pattern: /check\s*point/i },
  { vendor: 'Barracuda', pattern: /barracuda/i },
];

export interface Interception {
  vendor: string;
  /** The distinguished name that gave it away. */
  name: string;
}

/**
 * The first known intercepting proxy named by the leaf's issuer or by a CA certificate above it.
 * The leaf's own subject is not looked at: a company's instance may well carry its name.
 */
export function detectInterception(presented: readonly PresentedCertificate[]): Interception | undefined {
  const names = [presented[0]?.issuer, ...presented.slice(1).flatMap((c) => [c.subject, c.issuer])].filter((n): n is string => Boolean(n));
  for (const name of names) {
    const hit = INTERCEPTING_PROXIES.find((p) => p.pattern.test(name));
    if (hit) return { vendor: hit.vendor, name };
  }
  return undefined;
}
