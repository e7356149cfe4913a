import { Command } from 'commander';
import { printJson, readInput, usageError } from '../../common/cli.js';
import { writeFileAtomic } from '../../common/fs.js';
import { LIMITS } from '../../common/limits.js';
import type { Agent, Store } from '../store/index.js';
import { openContext, type GlobalOptions } from './context.js';
import { renderTable } from './output.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/**
 * The inventory store the data dir's controller.yaml names (`store:`; PostgreSQL when store.url is
 * set), else its SQLite file — a data dir without controller.yaml still has an inventory. The
 * store and config modules load only when a command runs.
 */
async function inventory(globals: GlobalOptions): Promise<Store> {
  const [{ existsSync }, { join }, { loadControllerConfig, resolveDataDir }, { openStore }] = await Promise.all([
    import('node:fs'), import('node:path'), import('../config.js'), import('../store/index.js'),
  ]);
  const dataDir = resolveDataDir(globals.dataDir);
  const cfg = existsSync(join(dataDir, 'controller.yaml')) ? await loadControllerConfig(dataDir) : undefined;
  return openStore(dataDir, { config: cfg?.store, leaseSeconds: cfg?.serve.leaseSeconds });
}

export function agentJson(a: Agent): Record<string, unknown> {
  return { name: a.name, address: a.address, serverName: a.serverName, midName: a.midName, tags: a.tags, cluster: a.cluster, createdAt: a.createdAt };
}

export function agentsCommand(globals: () => GlobalOptions): Command {
  const agents = new Command('agents').description('the controller\'s inventory of agents (one per MID host)');
  agents.command('add')
    .description('register an agent (idempotent: the same values again change nothing)')
    .argument('<name>', 'agent name; its TLS certificate must carry it (CN and DNS SAN)')
    .requiredOption('--address <host:port>', 'where the agent listens (listen.address in its config)')
    .option('--server-name <name>', 'TLS name to expect (default: the agent name)')
    .option('--mid-name <name>', 'the MID Server name on the instance (ecc_agent.name; default: the agent name)')
    .option('--tag <tag>', 'repeatable', collect, [])
    .option('--cluster <name>', 'MIDs of one cluster never restart all at once')
    .option('--json', 'print {"ok","changed","agent"}')
    .action(async (name: string, o: { address: string; serverName?: string; midName?: string; tag: string[]; cluster?: string; json?: boolean }) => {
      if (!/^[^\s]+:\d{1,5}$/.test(o.address)) throw usageError(`--address must be host:port, not "${o.address}"`);
      const store = await inventory(globals());
      try {
        const existing = await store.agents.get(name);
        const wanted = { address: o.address, serverName: o.serverName ?? name, midName: o.midName ?? null, tags: o.tag, cluster: o.cluster ?? null };
        let agent: Agent;
        let changed = true;
        if (!existing) agent = await store.agents.add({ name, ...wanted });
        else if (same(existing, wanted)) { agent = existing; changed = false; } else agent = await store.agents.update(name, wanted);
        if (o.json) printJson({ ok: true, changed, agent: agentJson(agent) });
        else process.stdout.write(`${changed ? (existing ? 'updated' : 'added') : 'unchanged'}: ${name} at ${agent.address}\n`);
      } finally {
        await store.close();
      }
    });
  agents.command('remove')
    .description('remove an agent from the inventory (its history stays)')
    .argument('<name>')
    .option('--json', 'print {"ok","changed"}')
    .action(async (name: string, o: { json?: boolean }) => {
      const store = await inventory(globals());
      try {
        const changed = (await store.agents.get(name)) !== undefined;
        if (changed) await store.agents.remove(name);
        if (o.json) printJson({ ok: true, changed });
        else process.stdout.write(changed ? `removed: ${name}\n` : `not registered: ${name}\n`);
      } finally {
        await store.close();
      }
    });
  agents.command('list')
    .description('list registered agents')
    .option('--tag <tag>', 'only agents with this tag (repeatable: all must match)', collect, [])
    .option('--json', 'print {"ok","agents":[…]}')
    .action(async (o: { tag: string[]; json?: boolean }) => {
      const store = await inventory(globals());
      try {
        const list = await store.agents.list(o.tag.length ? { tags: o.tag } : {});
        if (o.json) printJson({ ok: true, agents: list.map(agentJson) });
        else process.stdout.write(renderTable(['agent', 'address', 'MID', 'tags', 'cluster'], list.map((a) => [a.name, a.address, a.midName ?? a.name, a.tags.join(','), a.cluster ?? ''])));
      } finally {
        await store.close();
      }
    });
  return agents;
}

function same(a: Agent, b: { address: string; serverName: string; midName: string | null; tags: string[]; cluster: string | null }): boolean {
  return a.address === b.address && a.serverName === b.serverName && a.midName === b.midName && a.cluster === b.cluster && [...a.tags].sort().join() === [...b.tags].sort().join();
}

export function identityCommand(globals: () => GlobalOptions): Command {
  const identity = new Command('agent-identity').description('TLS identities for agents, signed by the fleet CA (agent keys stay on their hosts)');
  identity.command('sign')
    .description('sign an agent\'s CSR (made on the agent host with: midcert-agent csr …) as its server+client certificate')
    .requiredOption('--csr <file>', 'the agent\'s CSR')
    .requiredOption('--name <name>', 'the agent name (CN and DNS SAN)')
    .option('--san <san>', 'extra SAN: DNS:host or IP:addr (repeatable)', collect, [])
    .option('--days <n>', 'validity in days', '365')
    .option('-o, --output <file>', 'write the certificate here (else only printed)')
    .option('--json', 'print {"ok","name","certificatePem","fleetCaPem","notAfter"}')
    .action(async (o: { csr: string; name: string; san: string[]; days: string; output?: string; json?: boolean }) => {
      const [{ fleetCaPem, signAgentIdentity }, { readCertificates }] = await Promise.all([import('../fleet-ca.js'), import('../../pki/certificate.js')]);
      const ctx = await openContext(globals(), { instance: false });
      try {
        const csrPem = (await readInput(o.csr, LIMITS.pemBytes, 'CSR')).toString('latin1');
        const certificatePem = await signAgentIdentity(ctx.dataDir, csrPem, { name: o.name, sans: o.san, days: Number(o.days) });
        const fleet = await fleetCaPem(ctx.dataDir);
        if (o.output) await writeFileAtomic(o.output, certificatePem);
        const cert = readCertificates(Buffer.from(certificatePem))[0];
        await ctx.store.audit.record({ action: 'agent-identity.sign', target: `agent:${o.name}`, params: { sans: o.san, days: o.days }, result: 'ok' });
        if (o.json) printJson({ ok: true, name: o.name, certificatePem, fleetCaPem: fleet, notAfter: cert?.notAfter.toISOString() ?? '' });
        else process.stdout.write(o.output ? `wrote ${o.output} (expires ${cert?.notAfter.toISOString()})\n` : certificatePem);
      } finally {
        await ctx.close();
      }
    });
  return identity;
}
