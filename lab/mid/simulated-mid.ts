import { Agent } from 'node:https';
import { hostname } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/fs.js';
import { setParameterValueInText } from './config-xml.js';
import { sendHeartbeat, type HeartbeatOutcome } from './heartbeat.js';
import { MidLog } from './mid-log.js';
import { loadMidSetup, StartupFailure, type MidSetup } from './mid-setup.js';

/**
 * One simulated MID Server process, hosted inside the runner: systemd-like unit states, a
 * start-up that reads config.xml and the keystore the way the MID does, a heartbeat loop over
 * mutual TLS, and log lines in the MID's style. Many of these share one Node process.
 */

/** systemd's ActiveState vocabulary, which `systemctl is-active` prints. */
export type UnitState = 'inactive' | 'activating' | 'active' | 'deactivating' | 'failed';

/** The MID build this lab reports; a real one reads like `<family>-<date>__patch<n>-...`. */
export const MID_VERSION = 'midcert-lab-12-01-2025__patch0-12-01-2025_12-01-2025_0000';

export interface MidTimings {
  /** Heartbeat period. */
  heartbeatMs: number;
  /** Give up on one heartbeat after this long. */
  requestTimeoutMs: number;
  /** Reconnect (new TLS handshake) after this long, so instance-side changes are felt. */
  connectionMaxAgeMs: number;
  /** Identical consecutive failure lines are logged at most this often. */
  repeatLogMs: number;
}

export const DEFAULT_TIMINGS: MidTimings = { heartbeatMs: 2000, requestTimeoutMs: 10_000, connectionMaxAgeMs: 30_000, repeatLogMs: 30_000 };

export interface MidStatus {
  unit: string;
  home: string;
  state: UnitState;
  /** When the unit entered its current state (ISO 8601). */
  since: string;
  midName?: string;
  instanceUrl?: string;
  auth?: 'mutual' | 'basic';
  /** Up after an accepted heartbeat, Down after a refused or failed one. */
  instanceStatus: 'Up' | 'Down' | 'unknown';
  heartbeatsOk: number;
  heartbeatsFailed: number;
  lastHeartbeatAt?: string;
  lastError?: string;
  leaf?: { subject: string; notAfter: string; sha256: string };
}

export interface SimulatedMidOptions {
  unit: string;
  home: string;
  storepass: string;
  /** PEM of the roots this MID trusts for the instance's server certificate. */
  caPem: string;
  timings: MidTimings;
}

interface Running {
  setup: MidSetup;
  agent: Agent;
  agentBornAt: number;
  timer?: NodeJS.Timeout;
  inFlight?: Promise<void>;
}

export class SimulatedMid {
  readonly unit: string;
  readonly home: string;
  private readonly agentDir: string;
  private readonly log: MidLog;
  private state: UnitState = 'inactive';
  private since = new Date();
  private running: Running | undefined;
  /** Bumped on every start/stop so late results of an old run are ignored. */
  private generation = 0;
  private counters = { ok: 0, failed: 0 };
  private instanceStatus: MidStatus['instanceStatus'] = 'unknown';
  private lastHeartbeatAt: Date | undefined;
  private lastError: string | undefined;
  private lastLogged = { text: '', at: 0 };
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly options: SimulatedMidOptions) {
    this.unit = options.unit;
    this.home = options.home;
    this.agentDir = join(options.home, 'agent');
    this.log = new MidLog(join(this.agentDir, 'logs', 'agent0.log.0'));
  }

  /** Like `systemctl start`: a no-op on a running unit; resolves once start-up has finished. */
  start(): Promise<void> {
    return this.serialize(() => this.doStart());
  }

  stop(): Promise<void> {
    return this.serialize(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.serialize(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  /** Start/stop/restart run one at a time per unit, in call order. */
  private serialize(step: () => Promise<void>): Promise<void> {
    const next = this.transition.then(step);
    this.transition = next.catch(() => undefined);
    return next;
  }

  status(): MidStatus {
    const setup = this.running?.setup;
    const auth = setup?.auth;
    return {
      unit: this.unit, home: this.home, state: this.state, since: this.since.toISOString(),
      ...(setup ? { midName: setup.midName, instanceUrl: setup.url.href, auth: setup.auth.mode } : {}),
      instanceStatus: this.instanceStatus, heartbeatsOk: this.counters.ok, heartbeatsFailed: this.counters.failed,
      ...(this.lastHeartbeatAt ? { lastHeartbeatAt: this.lastHeartbeatAt.toISOString() } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(auth?.mode === 'mutual' ? { leaf: { subject: auth.leafSubject, notAfter: auth.leafNotAfter.toISOString(), sha256: auth.leafSha256 } } : {}),
    };
  }

  /** Resolves when every log line written so far is on disk (tests read the log after this). */
  flushLog(): Promise<void> {
    return this.log.flush();
  }

  private setState(state: UnitState): void {
    this.state = state;
    this.since = new Date();
  }

  private async doStart(): Promise<void> {
    if (this.state === 'active') return;
    const generation = ++this.generation;
    this.setState('activating');
    this.instanceStatus = 'unknown';
    this.lastError = undefined;
    await this.log.info('StartupSequencer', `Starting MID server: unit ${this.unit}, MID Server version ${MID_VERSION}`);
    let setup: MidSetup;
    try {
      setup = await loadMidSetup(this.agentDir, this.options.storepass);
    } catch (err) {
      await this.failStartup(err);
      return;
    }
    if (generation !== this.generation) return;
    await this.logStartup(setup);
    this.running = { setup, agent: this.newAgent(setup), agentBornAt: Date.now() };
    this.setState('active');
    this.scheduleHeartbeat(generation, 0);
  }

  private async failStartup(err: unknown): Promise<void> {
    const lines = err instanceof StartupFailure ? err.logLines : [`Unexpected start-up error: ${(err as Error).message?.split('\n')[0] ?? String(err)}`];
    for (const line of lines) await this.log.severe('MIDServer', line);
    this.lastError = lines[lines.length - 1];
    await this.log.info('MIDServer', 'MID Server did not start');
    this.setState('failed');
  }

  private async logStartup(setup: MidSetup): Promise<void> {
    await this.log.info('MIDServer', `Starting MID server: ${setup.midName}`);
    await this.log.info('MIDServer', `Instance URL: ${setup.url.href}`);
    if (setup.auth.mode === 'mutual') {
      await this.log.info('MIDServer', `Mutual authentication: client certificate "${setup.auth.leafSubject}" (alias defaultsecuritykeypairhandle, expires ${setup.auth.leafNotAfter.toISOString()})`);
    } else {
      await this.log.info('MIDServer', `Basic authentication as instance user ${setup.auth.username}`);
    }
    if (setup.useProxy) await this.log.info('MIDServer', 'mid.proxy.use_proxy is true; the lab MID does not simulate proxies and connects directly');
    await this.log.info('StartupSequencer', 'MID Server started');
  }

  private newAgent(setup: MidSetup): Agent {
    const clientCert = setup.auth.mode === 'mutual' ? { cert: setup.auth.certChainPem, key: setup.auth.keyPem } : {};
    return new Agent({
      keepAlive: true, maxSockets: 1, maxFreeSockets: 1, ca: this.options.caPem, ...clientCert,
      rejectUnauthorized: setup.checkCertChain,
      ...(setup.checkCertHostname ? {} : { checkServerIdentity: () => undefined }),
    });
  }

  private scheduleHeartbeat(generation: number, delayMs: number): void {
    const running = this.running;
    if (!running || generation !== this.generation) return;
    running.timer = setTimeout(() => {
      running.inFlight = this.heartbeat(generation, running).finally(() => {
        running.inFlight = undefined;
        this.scheduleHeartbeat(generation, this.options.timings.heartbeatMs);
      });
    }, delayMs);
    running.timer.unref();
  }

  private async heartbeat(generation: number, running: Running): Promise<void> {
    const { timings } = this.options;
    if (Date.now() - running.agentBornAt > timings.connectionMaxAgeMs) {
      running.agent.destroy();
      running.agent = this.newAgent(running.setup);
      running.agentBornAt = Date.now();
    }
    const { setup } = running;
    const outcome = await sendHeartbeat({
      url: setup.url, agent: running.agent, timeoutMs: timings.requestTimeoutMs,
      body: { name: setup.midName, host_name: hostname(), version: MID_VERSION },
      presentsCertificate: setup.auth.mode === 'mutual',
      ...(setup.auth.mode === 'basic' ? { authorization: setup.auth.authorization } : {}),
    });
    if (generation !== this.generation) return;
    await this.record(outcome, running);
  }

  private async record(outcome: HeartbeatOutcome, running: Running): Promise<void> {
    this.lastHeartbeatAt = new Date();
    if (outcome.kind === 'up') {
      this.counters.ok++;
      this.lastError = undefined;
      this.lastLogged = { text: '', at: 0 };
      if (this.instanceStatus !== 'Up') await this.log.info('HeartbeatThread', `Heartbeat accepted by the instance: MID Server ${running.setup.midName} is Up (ecc_agent ${outcome.sysId})`);
      this.instanceStatus = 'Up';
      if (running.setup.needsSysId) await this.writeSysId(outcome.sysId, running.setup);
      return;
    }
    this.counters.failed++;
    this.instanceStatus = 'Down';
    this.lastError = failureText(outcome);
    await this.logFailure(this.lastError);
  }

  private async logFailure(text: string): Promise<void> {
    const now = Date.now();
    if (text === this.lastLogged.text && now - this.lastLogged.at < this.options.timings.repeatLogMs) return;
    this.lastLogged = { text, at: now };
    await this.log.severe('HeartbeatThread', text);
  }

  /** The MID records its ecc_agent sys_id in config.xml after its first connect. */
  private async writeSysId(sysId: string, setup: MidSetup): Promise<void> {
    setup.needsSysId = false;
    if (!/^[0-9a-f]{32}$/i.test(sysId)) return;
    const path = join(this.agentDir, 'config.xml');
    try {
      const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      const edited = setParameterValueInText(text, 'mid_sys_id', sysId);
      if (edited === undefined || edited === text) return;
      await writeFileAtomic(path, edited, { mode: info.mode & 0o777 });
      await this.log.info('ConfigWriter', `Saved mid_sys_id ${sysId} to config.xml`);
    } catch (err) {
      await this.log.severe('ConfigWriter', `Could not save mid_sys_id to config.xml: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  private async doStop(): Promise<void> {
    const wasRunning = this.state === 'active' || this.state === 'activating';
    this.generation++;
    const running = this.running;
    this.running = undefined;
    if (!wasRunning) {
      if (this.state === 'failed') this.setState('inactive');
      return;
    }
    this.setState('deactivating');
    await this.log.info('ShutdownSequencer', `Stopping MID server: ${running?.setup.midName ?? this.unit}`);
    if (running) {
      clearTimeout(running.timer);
      running.agent.destroy();
      await running.inFlight?.catch(() => undefined);
    }
    this.instanceStatus = 'unknown';
    await this.log.info('ShutdownSequencer', 'MID Server stopped');
    this.setState('inactive');
  }
}

function failureText(outcome: Exclude<HeartbeatOutcome, { kind: 'up' }>): string {
  switch (outcome.kind) {
    case 'unauthorized': return `Heartbeat refused by the instance: HTTP ${outcome.status} Unauthorized: ${outcome.message}`;
    case 'http-error': return `Heartbeat failed: HTTP ${outcome.status}: ${outcome.message}`;
    case 'handshake':
    case 'network': return `Unable to connect to the instance: ${outcome.message}`;
  }
}
