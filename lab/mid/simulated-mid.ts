import { constants, privateDecrypt, randomBytes } from 'node:crypto';
import { Agent } from 'node:https';
import { hostname } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/fs.js';
import { readKeystore } from '../../pki/keystore.js';
import { liveBackup } from './backups.js';
import { setOrAddParameterInText } from './config-xml.js';
import { DEFAULT_ALIAS } from './constants.js';
import { sendHeartbeat, type EccCommand, type EccResponse, type HeartbeatOutcome } from './heartbeat.js';
import { regenerateSelfSignedPair } from './keytool.js';
import { MidLog, type LogFormat, type MidThread } from './mid-log.js';
import { loadMidSetup, StartupFailure, type AliasConflictPolicy, type MidSetup } from './mid-setup.js';
import type { MidStatus, UnitState } from './unit-status.js';

export type { MidStatus, UnitState } from './unit-status.js';

/**
 * One simulated MID Server process, hosted inside the runner: systemd-like unit states, a
 * start-up that reads config.xml and the keystore the way the MID does (making its own
 * self-signed pair on a first start), a poll of the ECC queue over mutual TLS or basic auth that
 * carries the MID side of docs/lab/mid-instance-protocol.md (commands, answers, the credential
 * probe), and log lines in the MID's style in agent0.log.0 and wrapper.log. Many of these share
 * one Node process.
 */

/** The MID build this lab reports; a real one reads like `<family>-<date>__patch<n>-...`. */
export const MID_VERSION = 'midcert-lab-12-01-2025__patch0-12-01-2025_12-01-2025_0000';

export interface MidTimings {
  /** mid.poll.time: the ECC queue poll period (vendor default 40 s). */
  pollMs: number;
  /** From the JVM start to the first poll (not documented; "tens of seconds", lab default 30 s). */
  startDelayMs: number;
  /** Give up on one poll after this long. */
  requestTimeoutMs: number;
  /** Reconnect (new TLS handshake) after this long, so instance-side changes are felt. */
  connectionMaxAgeMs: number;
  /** Identical consecutive failure lines are logged at most this often. */
  repeatLogMs: number;
}

/**
 * Vendor timings, times one factor (docs/lab/mid-instance-protocol.md "Time scale"):
 * "The MID Server polls the ECC queue at the maximum regular interval defined in the mid.poll.time
 * configuration parameter (40 seconds by default)" — SND:servicenow-platform/mid-server/ecc-queue-mid-server.md.
 * Start-up time is not documented (the vendor container waits up to 300 s for the agent log); 30 s.
 */
export function midTimings(timeScale = 1): MidTimings {
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new Error('timeScale must be a positive number');
  return {
    pollMs: Math.max(20, Math.round(40_000 * timeScale)),
    startDelayMs: Math.round(30_000 * timeScale),
    requestTimeoutMs: 10_000,
    connectionMaxAgeMs: Math.round(30_000 * timeScale),
    repeatLogMs: Math.round(30_000 * timeScale),
  };
}

export const DEFAULT_TIMINGS: MidTimings = midTimings(1);

export interface SimulatedMidOptions {
  unit: string;
  home: string;
  storepass: string;
  /** PEM of the roots this MID trusts for the instance's server certificate. */
  caPem: string;
  timings: MidTimings;
  logFormat?: LogFormat;
  aliasConflict?: AliasConflictPolicy;
}

interface Running {
  setup: MidSetup;
  agent: Agent;
  agentBornAt: number;
  timer?: NodeJS.Timeout;
  inFlight?: Promise<void>;
  /** Until the first accepted poll, polls say starting:true (protocol §1). */
  starting: boolean;
  /** Answers to commands, sent on the next poll (at once after executing). */
  responses: EccResponse[];
  /** A command asked for a restart once its answer is sent. */
  restartPending: boolean;
  /** "MID Server started" logged (once the start-up delay is over). */
  announced: boolean;
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
  private counters = { ok: 0, failed: 0, commands: 0 };
  private instanceStatus: MidStatus['instanceStatus'] = 'unknown';
  private validated: string | undefined;
  private credentialOk: boolean | undefined;
  private lastHeartbeatAt: Date | undefined;
  private lastError: string | undefined;
  private lastLogged = new Map<string, number>();
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly options: SimulatedMidOptions) {
    this.unit = options.unit;
    this.home = options.home;
    this.agentDir = join(options.home, 'agent');
    this.log = new MidLog(join(this.agentDir, 'logs', 'agent0.log.0'), join(this.agentDir, 'logs', 'wrapper.log'), options.logFormat ?? 'old');
  }

  /** Like `systemctl start`: a no-op on a running unit; resolves once the process runs (config and keystore read). */
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
    const pair = setup?.keyPair;
    return {
      unit: this.unit, home: this.home, state: this.state, since: this.since.toISOString(),
      ...(setup ? { midName: setup.midName, instanceUrl: setup.url.href, auth: setup.auth.mode } : {}),
      instanceStatus: this.instanceStatus, heartbeatsOk: this.counters.ok, heartbeatsFailed: this.counters.failed,
      ...(this.lastHeartbeatAt ? { lastHeartbeatAt: this.lastHeartbeatAt.toISOString() } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(pair ? { leaf: { subject: pair.leafSubject, notAfter: pair.leafNotAfter.toISOString(), sha256: pair.leafSha256, selfSigned: pair.selfSigned } } : {}),
      ...(this.validated !== undefined ? { validated: this.validated } : {}),
      commandsExecuted: this.counters.commands,
      ...(this.credentialOk !== undefined ? { credentialOk: this.credentialOk } : {}),
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
    this.lastLogged.clear();
    await this.log.info('StartupSequencer', `Starting MID server: unit ${this.unit}, MID Server version ${MID_VERSION}`);
    let setup: MidSetup;
    try {
      setup = await this.loadSetup();
    } catch (err) {
      await this.failStartup(err);
      return;
    }
    if (generation !== this.generation) return;
    await this.logStartup(setup);
    this.running = { setup, agent: this.newAgent(setup), agentBornAt: Date.now(), starting: true, responses: [], restartPending: false, announced: false };
    this.setState('active');
    // The JVM is up; the MID's start-up sequence takes a while before its first poll.
    this.schedulePoll(generation, this.options.timings.startDelayMs);
  }

  /**
   * Reads config.xml and the keystore; on a first start (basic auth, no pair yet) makes the
   * self-signed pair with keytool, and adds keypairs.mid_id to config.xml when absent
   * (vendor-facts §6: "When the MID Server is created, it generates a keypair"; keypairs.mid_id
   * "matches the one in the audit log file").
   */
  private async loadSetup(): Promise<MidSetup> {
    const { storepass, aliasConflict } = this.options;
    let setup = await loadMidSetup(this.agentDir, storepass, { aliasConflict: aliasConflict ?? 'warn' });
    for (const warning of setup.warnings) await this.log.warning('MIDServer', warning);
    if (setup.midId === '') {
      const midId = randomBytes(16).toString('hex');
      await this.editConfig('keypairs.mid_id', midId);
      setup.midId = midId;
    }
    if (!setup.keyPair) {
      await this.replaceKeyPair(setup, 'first start: no key pair found for DefaultSecurityKeyPairHandle');
      const midId = setup.midId;
      setup = await loadMidSetup(this.agentDir, storepass, { aliasConflict: aliasConflict ?? 'warn' });
      setup.midId = midId;
    }
    return setup;
  }

  /** Backs the keystore up (live backup) and makes a new self-signed pair under the default alias. */
  private async replaceKeyPair(setup: MidSetup, why: string): Promise<void> {
    const file = setup.keystoreFile ?? join(this.agentDir, 'security', 'agent_keystore');
    const aliases = await this.aliasesOf(file);
    const backup = await liveBackup(this.agentDir, file, { midId: setup.midId, aliases }, setup.liveBackups);
    if (backup) await this.log.info('KeyPairManager', `Backed up the keystore to ${BACKUP_NAME(backup)} before changing it`);
    await regenerateSelfSignedPair(file, this.options.storepass, DEFAULT_ALIAS, setup.midName);
    await this.log.info('KeyPairManager', `Generated a new self-signed key pair for alias ${DEFAULT_ALIAS} (${why})`);
  }

  private async aliasesOf(file: string): Promise<string[]> {
    try {
      return readKeystore(await readFile(file), this.options.storepass).entries.map((e) => e.alias);
    } catch {
      return [];
    }
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
    const pair = setup.keyPair;
    if (setup.auth.mode === 'mutual' && pair) {
      await this.log.info('MIDServer', `Mutual authentication: client certificate "${pair.leafSubject}" (alias defaultsecuritykeypairhandle, expires ${pair.leafNotAfter.toISOString()})`);
    } else if (setup.auth.mode === 'basic') {
      await this.log.info('MIDServer', `Basic authentication as instance user ${setup.auth.username}`);
    }
    if (setup.useProxy) await this.log.info('MIDServer', 'mid.instance.use_proxy is true; the lab MID does not simulate proxies and connects directly');
  }

  private newAgent(setup: MidSetup): Agent {
    const pair = setup.keyPair;
    const clientCert = setup.auth.mode === 'mutual' && pair ? { cert: pair.certChainPem, key: pair.keyPem } : {};
    return new Agent({
      keepAlive: true, maxSockets: 1, maxFreeSockets: 1, ca: this.options.caPem, ...clientCert,
      rejectUnauthorized: setup.checkCertChain,
      ...(setup.checkCertHostname ? {} : { checkServerIdentity: () => undefined }),
    });
  }

  private schedulePoll(generation: number, delayMs: number): void {
    const running = this.running;
    if (!running || generation !== this.generation) return;
    running.timer = setTimeout(() => {
      running.inFlight = this.poll(generation, running).finally(() => {
        running.inFlight = undefined;
        if (generation !== this.generation) return;
        if (running.restartPending && running.responses.length === 0) {
          // "Invalidating a MID Server forces it to clear its memory and restart." (SND:…/t_ValidateAMIDServer.md)
          void this.restart().catch(() => undefined);
          return;
        }
        this.schedulePoll(generation, running.responses.length > 0 ? 0 : this.options.timings.pollMs);
      });
    }, delayMs);
    running.timer.unref();
  }

  private async poll(generation: number, running: Running): Promise<void> {
    const { timings } = this.options;
    if (!running.announced) {
      running.announced = true;
      await this.log.info('StartupSequencer', 'MID Server started');
    }
    if (Date.now() - running.agentBornAt > timings.connectionMaxAgeMs) {
      running.agent.destroy();
      running.agent = this.newAgent(running.setup);
      running.agentBornAt = Date.now();
    }
    const { setup } = running;
    const responses = running.responses.splice(0);
    const outcome = await sendHeartbeat({
      url: setup.url, agent: running.agent, timeoutMs: timings.requestTimeoutMs,
      body: {
        name: setup.midName, host_name: hostname(), version: MID_VERSION, starting: running.starting,
        ...(setup.keyPair ? { public_key: setup.keyPair.publicKeyPem } : {}), responses,
        ...(this.credentialOk !== undefined ? { credential_ok: this.credentialOk } : {}),
      },
      presentsCertificate: setup.auth.mode === 'mutual',
      ...(setup.auth.mode === 'basic' ? { authorization: setup.auth.authorization } : {}),
    });
    if (generation !== this.generation) return;
    if (outcome.kind !== 'up' && !running.restartPending) running.responses.unshift(...responses);
    await this.record(outcome, running);
  }

  private async record(outcome: HeartbeatOutcome, running: Running): Promise<void> {
    this.lastHeartbeatAt = new Date();
    if (outcome.kind === 'up') {
      this.counters.ok++;
      this.lastError = undefined;
      this.lastLogged.clear();
      if (this.instanceStatus !== 'Up') await this.log.info('HeartbeatThread', `Heartbeat accepted by the instance: MID Server ${running.setup.midName} is Up (ecc_agent ${outcome.sysId})`);
      this.instanceStatus = 'Up';
      running.starting = false;
      if (outcome.validated !== undefined) this.validated = outcome.validated;
      if (running.setup.needsSysId) await this.writeSysId(outcome.sysId, running.setup);
      if (outcome.credential !== undefined) await this.probeCredential(outcome.credential, running);
      for (const command of outcome.commands) await this.execute(command, running);
      return;
    }
    this.instanceStatus = 'Down';
    this.lastError = failureText(outcome);
    if (outcome.kind === 'unauthorized') {
      // KB1048088: "SOAP Response: Status code=401", "WARNING *** WARNING *** Could not authenticate user
      // 'null' on the ServiceNow instance", "StartupSequencer SEVERE *** ERROR *** test failurejava.lang.
      // IllegalStateException: User cannot be authenticated or is missing the proper roles."
      // (SND:…/mid-server-connectivity-issues.md: "The message for both is the same").
      const thread: MidThread = running.starting ? 'StartupSequencer' : 'HeartbeatThread';
      const user = running.setup.auth.mode === 'basic' ? running.setup.auth.username : 'null';
      await this.logOnce(this.lastError, async () => {
        await this.log.info(thread, `SOAP Response: Status code=${outcome.status}`);
        await this.log.warning(thread, `Could not authenticate user '${user}' on the ServiceNow instance`);
        await this.log.severe(thread, 'test failurejava.lang.IllegalStateException: User cannot be authenticated or is missing the proper roles.');
        await this.log.severe('HeartbeatThread', this.lastError as string);
      });
    } else {
      await this.logOnce(this.lastError, () => this.log.severe('HeartbeatThread', this.lastError as string));
    }
    // Counted once its lines are logged: whoever sees the count can read why.
    this.counters.failed++;
  }

  /** Identical failures are logged at most once per repeatLogMs. */
  private async logOnce(key: string, write: () => Promise<void>): Promise<void> {
    const now = Date.now();
    const at = this.lastLogged.get(key);
    if (at !== undefined && now - at < this.options.timings.repeatLogMs) return;
    this.lastLogged.set(key, now);
    await write();
  }

  /**
   * Protocol §5: decrypt the instance's probe (RSA-OAEP, SHA-256) with the current private key.
   * KB0535234: "SEVERE *** ERROR *** MID Server encryption keys do not match and are no longer valid.
   * To restore proper functionality, invalidate and re-validate the MID Server." and "SEVERE *** ERROR ***
   * An error occurred while decrypting credentials from instance".
   */
  private async probeCredential(credential: string, running: Running): Promise<void> {
    const pair = running.setup.keyPair;
    let ok = false;
    try {
      if (pair) {
        const plain = privateDecrypt({ key: pair.keyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(credential, 'base64'));
        ok = plain.length > 0;
      }
    } catch {
      ok = false;
    }
    this.credentialOk = ok;
    if (ok) return;
    await this.logOnce('credential probe', async () => {
      await this.log.severe('CredentialsProvider', 'MID Server encryption keys do not match and are no longer valid. To restore proper functionality, invalidate and re-validate the MID Server.');
      await this.log.severe('CredentialsProvider', `An error occurred while decrypting credentials from instance${pair ? '' : ': No key pair found for DefaultSecurityKeyPairHandle'}`);
    });
  }

  /**
   * Protocol §6–7. `delete_mid_keypair` (vendor-facts §5: "MID Server deletes the
   * defaultsecuritykeypairhandle key-pair regardless of whether it is custom or auto-generated";
   * "Invalidating a MID Server removes any custom certificates that are installed and creates a new
   * self-signed certificate"): live backup, delete the entry, new self-signed pair, answer, restart.
   * `restartService` (the validate action's command): answer, restart. HeartbeatProbe (SND:…/r_MIDServerHeartbeat.md:
   * the instance's probe every 5 minutes through the ECC queue): answer. Anything else: `<result/>`.
   */
  private async execute(command: EccCommand, running: Running): Promise<void> {
    this.counters.commands++;
    const kind = [command.source, command.name].find((s) => s === 'delete_mid_keypair' || s === 'restartService') ?? command.topic;
    let payload = '<result/>';
    if (kind === 'delete_mid_keypair') {
      await this.log.info('SystemCommand', `Received SystemCommand delete_mid_keypair (${command.name || 'Invalidate'}): deleting the key pair under ${DEFAULT_ALIAS}`);
      try {
        await this.replaceKeyPair(running.setup, 'delete_mid_keypair');
        payload = `<result command="delete_mid_keypair" alias="${DEFAULT_ALIAS}">deleted; new self-signed key pair generated</result>`;
      } catch (err) {
        await this.log.severe('SystemCommand', `delete_mid_keypair failed: ${(err as Error).message.split('\n')[0]}`);
        payload = '<result error="delete_mid_keypair failed"/>';
      }
      running.restartPending = true;
    } else if (kind === 'restartService') {
      await this.log.info('SystemCommand', 'Received SystemCommand restartService: restarting the MID Server');
      payload = '<result command="restartService"/>';
      running.restartPending = true;
    } else if (command.topic === 'HeartbeatProbe') {
      payload = `<result><heartbeat name="${xmlText(running.setup.midName)}" status="Up"/></result>`;
    } else {
      await this.log.info('ECCQueueMonitor', `Unknown command topic=${command.topic} name=${command.name} source=${command.source}; answering <result/>`);
    }
    running.responses.push({ response_to: command.sys_id, topic: command.topic, name: command.name, payload });
  }

  /** The MID records its ecc_agent sys_id in config.xml after its first connect. */
  private async writeSysId(sysId: string, setup: MidSetup): Promise<void> {
    setup.needsSysId = false;
    if (!/^[0-9a-f]{32}$/i.test(sysId)) return;
    if (await this.editConfig('mid_sys_id', sysId)) await this.log.info('ConfigWriter', `Saved mid_sys_id ${sysId} to config.xml`);
  }

  /** Sets (or adds) one config.xml parameter, keeping the file's mode; logs and returns false on failure. */
  private async editConfig(name: string, value: string): Promise<boolean> {
    const path = join(this.agentDir, 'config.xml');
    try {
      const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      const edited = setOrAddParameterInText(text, name, value);
      if (edited === text) return false;
      await writeFileAtomic(path, edited, { mode: info.mode & 0o777 });
      return true;
    } catch (err) {
      await this.log.severe('ConfigWriter', `Could not save ${name} to config.xml: ${(err as Error).message.split('\n')[0]}`);
      return false;
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

function BACKUP_NAME(path: string): string {
  return path.slice(path.lastIndexOf('security_backup'));
}

function xmlText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function failureText(outcome: Exclude<HeartbeatOutcome, { kind: 'up' }>): string {
  switch (outcome.kind) {
    case 'unauthorized': return `Heartbeat refused by the instance: HTTP ${outcome.status} Unauthorized: ${outcome.message}`;
    case 'http-error': return `Heartbeat failed: HTTP ${outcome.status}: ${outcome.message}`;
    case 'handshake':
    case 'network': return `Unable to connect to the instance: ${outcome.message}`;
  }
}
