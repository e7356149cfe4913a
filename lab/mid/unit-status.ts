/**
 * What the runner reports about one hosted MID (systemd-like unit state plus what the MID saw of
 * the instance). Types only, in a module of its own so the control channel does not import the
 * simulated MID (lab/mid has no import circle: control-protocol → unit-status only).
 */

/** systemd's ActiveState vocabulary, which `systemctl is-active` prints. */
export type UnitState = 'inactive' | 'activating' | 'active' | 'deactivating' | 'failed';

export interface MidStatus {
  unit: string;
  home: string;
  state: UnitState;
  /** When the unit entered its current state (ISO 8601). */
  since: string;
  midName?: string;
  instanceUrl?: string;
  auth?: 'mutual' | 'basic';
  /** Up after an accepted poll, Down after a refused or failed one. */
  instanceStatus: 'Up' | 'Down' | 'unknown';
  /** Accepted and failed polls of the ECC queue (the lab's POST /api/mid/heartbeat). */
  heartbeatsOk: number;
  heartbeatsFailed: number;
  lastHeartbeatAt?: string;
  lastError?: string;
  /** The certificate under defaultsecuritykeypairhandle (self-signed on a basic-auth MID). */
  leaf?: { subject: string; notAfter: string; sha256: string; selfSigned?: boolean };
  /** ecc_agent.validated as the instance last answered it. */
  validated?: string;
  /** Commands executed from the ECC queue since the unit was registered. */
  commandsExecuted?: number;
  /** Last credential probe: decrypted with the current key (true) or not (false). */
  credentialOk?: boolean;
}
