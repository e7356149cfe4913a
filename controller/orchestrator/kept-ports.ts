import type { AgentPort } from './ports.js';

export interface KeptPortsOptions {
  /** Connections held at most; beyond that a port is closed at once (file descriptors on both ends). */
  max: number;
  /** A kept connection older than this is closed, not reused: a long idle connection may have been dropped by a firewall on the way. */
  maxAgeMs: number;
  now?: () => number;
}

/** Kept connections per fleet: the selection's connection to a MID, handed on to the MID's rotation. */
export const KEPT_PORTS: KeptPortsOptions = { max: 1024, maxAgeMs: 20_000 };

/**
 * Connections that one step of a rotation opened and the next may reuse, so a MID costs one TLS
 * handshake instead of two. Bounded in number and age; a stale one is closed on the next call
 * (no timer: the holder calls closeAll when it is done).
 */
export class KeptPorts {
  private readonly ports = new Map<string, { port: AgentPort; at: number }>();
  private readonly now: () => number;

  constructor(private readonly options: KeptPortsOptions = KEPT_PORTS) {
    this.now = options.now ?? Date.now;
  }

  /** Keeps `port` for `name`, or closes it when full (the first kept are the first rotated). */
  keep(name: string, port: AgentPort): void {
    this.closeStale();
    if (this.ports.has(name) || this.ports.size >= this.options.max) {
      port.close();
      return;
    }
    this.ports.set(name, { port, at: this.now() });
  }

  /** The kept port for `name` (now the caller's to close), or undefined. */
  take(name: string): AgentPort | undefined {
    this.closeStale();
    const kept = this.ports.get(name);
    this.ports.delete(name);
    return kept?.port;
  }

  get size(): number {
    return this.ports.size;
  }

  closeAll(): void {
    for (const { port } of this.ports.values()) port.close();
    this.ports.clear();
  }

  private closeStale(): void {
    const oldest = this.now() - this.options.maxAgeMs;
    for (const [name, kept] of this.ports) {
      if (kept.at >= oldest) break; // kept in time order
      kept.port.close();
      this.ports.delete(name);
    }
  }
}
