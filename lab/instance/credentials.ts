import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

/** Saved form of the credential store: hashes only, never a password or token. */
export interface CredentialSnapshot {
  passwords: Record<string, { salt: string; hash: string }>;
  tokens: Array<{ hash: string; user: string; expiresAt?: number }>;
}

// Low scrypt cost: a lab instance answers many Basic-auth calls; still no plain password at rest.
const SCRYPT = { N: 1024, r: 8, p: 1 } as const;

/** Passwords (by sys_user sys_id) and OAuth bearer tokens, kept apart from the tables. */
export class Credentials {
  private readonly passwords = new Map<string, { salt: string; hash: string }>();
  private readonly tokens = new Map<string, { user: string; expiresAt?: number }>();

  setPassword(userId: string, password: string): void {
    const salt = randomBytes(16).toString('hex');
    this.passwords.set(userId, { salt, hash: scryptHex(password, salt) });
  }

  hasPassword(userId: string): boolean {
    return this.passwords.has(userId);
  }

  checkPassword(userId: string, password: string): boolean {
    const stored = this.passwords.get(userId);
    if (!stored) return false;
    return timingSafeEqual(Buffer.from(scryptHex(password, stored.salt), 'hex'), Buffer.from(stored.hash, 'hex'));
  }

  addToken(token: string, userId: string, expiresAt?: number): void {
    this.tokens.set(tokenHash(token), expiresAt === undefined ? { user: userId } : { user: userId, expiresAt });
  }

  removeToken(token: string): void {
    this.tokens.delete(tokenHash(token));
  }

  /** The user a bearer token stands for, or a reason it does not. */
  tokenUser(token: string, now: number): { user: string } | { refused: string; expired: boolean } {
    const entry = this.tokens.get(tokenHash(token));
    if (!entry) return { refused: 'unknown bearer token', expired: false };
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) return { refused: 'expired bearer token', expired: true };
    return { user: entry.user };
  }

  forgetUser(userId: string): void {
    this.passwords.delete(userId);
    for (const [hash, entry] of this.tokens) if (entry.user === userId) this.tokens.delete(hash);
  }

  snapshot(): CredentialSnapshot {
    return {
      passwords: Object.fromEntries(this.passwords),
      tokens: [...this.tokens].map(([hash, entry]) => ({ hash, ...entry })),
    };
  }

  restore(saved: CredentialSnapshot): void {
    for (const [user, entry] of Object.entries(saved.passwords)) this.passwords.set(user, { salt: entry.salt, hash: entry.hash });
    for (const { hash, ...entry } of saved.tokens) this.tokens.set(hash, entry);
  }
}

function scryptHex(password: string, salt: string): string {
  return scryptSync(password, salt, 32, SCRYPT).toString('hex');
}

function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
