import { hostname } from 'node:os';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { InstallProgressSchema, OperationResultSchema } from '../../proto/gen/midcert/v1/agent_pb.js';
import type { AgentConfig } from '../config.js';
import { streamOf, type EventHub } from '../events.js';
import type { LastResult } from '../journal.js';
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
      (emit) => deps.engine.install(req.renewalId, { certificatePem: req.certificatePem, chainPem: req.chainPem }, (p) => emit(progressOf(req.renewalId)(p))),
      finalOf,
    ),
    enableMutualAuth: (req) => streamOf<ProgressInit, LastResult>(
      (emit) => deps.engine.install(req.renewalId, { certificatePem: req.certificatePem, chainPem: req.chainPem }, (p) => emit(progressOf(req.renewalId)(p)), 'enable-mutual'),
      finalOf,
    ),
    rollback: async () => toOperationResult(await deps.engine.rollback()),
    revertToBasicAuth: async (req) => toOperationResult(await deps.engine.revertToBasicAuth(req.username, req.password)),
    restartService: async () => toOperationResult(await deps.engine.restartService()),
  };
}

export function toOperationResult(result: LastResult): MessageInitShape<typeof OperationResultSchema> {
  return { ...result, ...(result.error ? { error: { ...result.error } } : {}) };
}

/** The subject policy: `subject.template` with {midName} (from config.xml) and {hostname}. */
export async function policySubject(deps: Pick<HandlerDeps, 'cfg' | 'effects'>): Promise<string> {
  const midName = await readConfigXml(deps.effects.paths.configXml).then((p) => summarizeMidConfig(p).midName, () => '');
  return deps.cfg.subject.template.replace(/\{midName\}/g, escapeRdn(midName || hostname())).replace(/\{hostname\}/g, escapeRdn(hostname()));
}

function escapeRdn(value: string): string {
  return value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
}
