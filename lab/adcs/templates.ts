import { OID } from '../../pki/certificate.js';
import { PROFILES, type CertificateProfile } from '../../pki/issue.js';
import type { TemplateConfig, TemplateProfileName } from './types.js';

const EFS = '1.3.6.1.4.1.311.10.3.4';
const EMAIL_PROTECTION = '1.3.6.1.5.5.7.3.4';

/**
 * KU/EKU of the stock ADCS templates the lab imitates: a client-auth template (what a MID needs),
 * "Web Server" (serverAuth only — the classic wrong pick), and "User" (EFS, secure e-mail and
 * client authentication).
 */
const NAMED_PROFILES: Record<TemplateProfileName, CertificateProfile> = {
  client: PROFILES.client,
  server: PROFILES.server,
  user: { ca: false, keyUsage: ['digitalSignature', 'keyEncipherment'], extKeyUsage: [EFS, EMAIL_PROTECTION, OID.clientAuth] },
};

export const TEMPLATE_PROFILE_NAMES = Object.keys(NAMED_PROFILES) as TemplateProfileName[];

/** The lab's default template set; the stock WebServer and User templates keep their stock validity. */
export const DEFAULT_TEMPLATES: Record<string, TemplateConfig> = {
  MIDServerClient: { profile: 'client', validityDays: 365, mode: 'issue' },
  WebServer: { profile: 'server', validityDays: 730, mode: 'issue' },
  User: { profile: 'user', validityDays: 365, mode: 'issue' },
};

export function resolveProfile(profile: TemplateProfileName | CertificateProfile): CertificateProfile {
  if (typeof profile !== 'string') return profile;
  const named = NAMED_PROFILES[profile];
  if (!named) throw new Error(`unknown template profile "${profile}" (use ${TEMPLATE_PROFILE_NAMES.join(', ')})`);
  return named;
}

/** Template names compare case-insensitively on ADCS (they are AD object names). */
export class TemplateSet {
  private readonly byKey = new Map<string, { name: string; config: TemplateConfig }>();

  constructor(templates: Record<string, TemplateConfig>) {
    for (const [name, config] of Object.entries(templates)) {
      resolveProfile(config.profile); // fail at start-up, not at the first request
      this.byKey.set(name.toLowerCase(), { name, config: { ...config } });
    }
  }

  find(name: string): { name: string; config: TemplateConfig } | undefined {
    return this.byKey.get(name.toLowerCase());
  }

  setMode(name: string, mode: TemplateConfig['mode']): void {
    const entry = this.find(name);
    if (!entry) throw new Error(`no template named "${name}"`);
    entry.config.mode = mode;
  }

  modes(): Record<string, TemplateConfig['mode']> {
    return Object.fromEntries([...this.byKey.values()].map((e) => [e.name, e.config.mode]));
  }
}

/** True when the template grants Enroll to this principal. */
export function mayEnroll(config: TemplateConfig, principal: string): boolean {
  if (!config.enrollees) return true;
  const who = principal.toLowerCase();
  return config.enrollees.some((e) => e.toLowerCase() === who);
}
