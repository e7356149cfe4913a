import { hostname } from 'node:os';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { RenewalPhase, type InstallProgressSchema, type OperationResultSchema, type RenewalStateSchema } from '../../proto/gen/midcert/v1/agent_pb.js';
import type { AgentConfig } from '../config.js';
import { streamOf, type EventHub } from '../events.js';
import type { LastResult, RenewalStatus } from '../journal.js';
import { readConfigXml, summarizeMidConfig } from '../mid-config.js';
import { runPreflight } from '../preflight.js';
import type { HostEffects, Progress } from '../renewal/effects.js';
import type { RenewalEngine } from '../renewal/engine.js';
import { cachedStatusView } from '../service-manager.js';
import { collectStatus } from '../status.js';
import type { AgentHandlers } from './server.js';

export interface HandlerDeps {
  cfg: AgentConfig;
  effects: HostEffects;
  engine: RenewalEngine;
  events: EventHub;
  startedAt: Date;
  /** The agent log (pino); operator warnings such as the basic-auth revert's go here. */
  log?: { warn(fields: Record<string, unknown>, message: string): void };
}

type ProgressInit = MessageInitShape<typeof InstallProgressSchema>;

/** The AgentService methods, in terms of the renewal engine, status and preflight. */
export function agentHandlers(deps: HandlerDeps): AgentHandlers {
  // Status may be polled often (a controller over a large fleet): read the service state from a
  // short cache there. Installs and health checks use deps.effects.service directly.
  const sources = { cfg: deps.cfg, paths: deps.effects.paths, storepass: deps.effects.storepass, service: cachedStatusView(deps.effects.service), engine: deps.engine, startedAt: deps.startedAt };
  const progressOf = (renewalId: string) => (p: Progress): ProgressInit => {
    deps.events.publish('renewal', `${renewalId}: ${p.step} ${p.state}${p.message ? `: ${p.message}` : ''}`);
    return { renewalId, step: p.step, state: p.state, message: p.message };
  };
  const finalOf = (result: LastResult): ProgressInit => ({
    renewalId: result.renewalId, step: result.ok ? 'done' : result.failedStep, state: result.ok ? 'done' : 'failed',
    message: result.ok ? 'installed and verified' : result.error?.message ?? 'failed', result: toOperationResult(result),
  });
  return {
    getStatus: async () => collectStatus(sources),
    runPreflight: async () => runPreflight(sources),
    getRenewal: async (req) => toRenewalState(await deps.engine.renewalStatus(req.renewalId)),
    watchEvents: async function* (req, ctx) {
      for await (const event of deps.events.subscribe(ctx.signal)) {
        yield { ...event, ...(req.includeStatus ? { status: await collectStatus(sources) } : {}) };
      }
    },
    prepareRenewal: async (req) => {
      const prepared = await deps.engine.prepare({
        renewalId: req.renewalId,
        subject: req.subject || (await policySubject(deps)),
        sans: req.sans.length > 0 ? req.sans : deps.cfg.subject.sans,
        keyType: req.keyType || deps.cfg.subject.keyType,
        keyBits: req.keyBits || deps.cfg.subject.keyBits,
      });
      deps.events.publish('renewal', `${req.renewalId}: prepared`);
      return prepared;
    },
    installCertificate: (req) => streamOf<ProgressInit, LastResult>(
      (emit) => deps.engine.install(req.renewalId, { certificatePem: req.certificatePem, chainPem: req.chainPem, allowKeyTypes: req.allowKeyTypes }, (p) => emit(progressOf(req.renewalId)(p))),
      finalOf,
    ),
    enableMutualAuth: (req) => streamOf<ProgressInit, LastResult>(
      (emit) => deps.engine.install(req.renewalId, { certificatePem: req.certificatePem, chainPem: req.chainPem, allowKeyTypes: req.allowKeyTypes }, (p) => emit(progressOf(req.renewalId)(p)), 'enable-mutual'),
      finalOf,
    ),
    rollback: async () => toOperationResult(await deps.engine.rollback()),
    revertToBasicAuth: async (req, ctx) => {
      // Said as soon as the script has run, success or not: the password was on its command line.
      const onWarning = (warning: string): void => {
        deps.log?.warn({ rpc: 'RevertToBasicAuth', username: req.username, caller: ctx.identity?.subject ?? ctx.role }, `break-glass revert to basic auth: ${warning}`);
        deps.events.publish('service', `break-glass revert to basic auth: ${warning}`);
      };
      return toOperationResult(await deps.engine.revertToBasicAuth(req.username, req.password, { onWarning }));
    },
    restartService: async () => toOperationResult(await deps.engine.restartService()),
  };
}

export function toOperationResult(result: LastResult): MessageInitShape<typeof OperationResultSchema> {
  return { ...result, ...(result.error ? { error: { ...result.error } } : {}) };
}

const PHASES: Record<RenewalStatus['state'], RenewalPhase> = {
  unknown: RenewalPhase.UNKNOWN, prepared: RenewalPhase.PREPARED, installing: RenewalPhase.INSTALLING,
  installed: RenewalPhase.INSTALLED, 'rolled-back': RenewalPhase.ROLLED_BACK, failed: RenewalPhase.FAILED,
};

export function toRenewalState(status: RenewalStatus): MessageInitShape<typeof RenewalStateSchema> {
  return { ...status, state: PHASES[status.state] };
}

/** The subject policy: `subject.template` with {midName} (from config.xml) and {hostname}. */
export async function policySubject(deps: Pick<HandlerDeps, 'cfg' | 'effects'>): Promise<string> {
  const midName = await readConfigXml(deps.effects.paths.configXml).then((p) => summarizeMidConfig(p).midName, () => '');
  return deps.cfg.subject.template.replace(/\{midName\}/g, escapeRdn(midName || hostname())).replace(/\{hostname\}/g, escapeRdn(hostname()));
}

function escapeRdn(value: string): string {
  return value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
}
