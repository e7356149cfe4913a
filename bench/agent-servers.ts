/**
 * Child process for the controller benchmark: N agent gRPC servers (real mTLS), so the
 * controller's CPU is measured apart from the agents' (which run on other hosts in life).
 * GetStatus answers a canned status; PrepareRenewal hands out one of a few pre-made RSA-2048
 * CSRs; InstallCertificate stands in for the host effects (keytool, MID restart) with a fixed
 * sleep of INSTALL_MS and reports success.
 *
 * argv: dataDir N [INSTALL_MS=400]; prints one JSON line {"ports":[…]} when serving.
 *
 * Each server holds one listening socket, plus one per open controller connection; the parent
 * (bench/controller.bench.ts) splits the fleet over as many of these processes as `ulimit -n`
 * requires.
 */
import { readFileSync } from 'node:fs';
import { startAgentRpcServer, type AgentHandlers } from '../agent/rpc/server.js';
import { fleetPaths, makeAgentKeyAndCsr, signAgentIdentity } from '../controller/fleet-ca.js';
import { buildCsr } from '../pki/csr.js';
import { generateKey } from '../pki/keys.js';

const [dir, count, installMs] = [process.argv[2] as string, Number(process.argv[3]), Number(process.argv[4] ?? 400)];
const { keyPem, csrPem } = await makeAgentKeyAndCsr('bench-agent', { sans: ['IP:127.0.0.1'] });
const certPem = await signAgentIdentity(dir, csrPem, { name: 'bench-agent', sans: ['IP:127.0.0.1'] });
const csrs = await Promise.all(Array.from({ length: 4 }, async () => buildCsr(await generateKey(), { subject: 'CN=bench' })));
const notAfter = new Date(Date.now() + 20 * 86_400_000).toISOString();
const unused = async (): Promise<never> => { throw new Error('unused'); };
let prepared = 0;
const handlers: AgentHandlers = {
  getStatus: async () => ({ midName: 'bench', certificate: { present: true, leaf: { subject: 'CN=bench', issuer: 'CN=CA', sha256: 'ab'.repeat(32), notAfter }, daysLeft: 20 }, service: { active: true } }),
  watchEvents: async function* () { /* none */ },
  runPreflight: async () => ({ ok: true, checks: [] }),
  getRenewal: unused,
  prepareRenewal: async (req) => ({ renewalId: req.renewalId, csrPem: csrs[prepared++ % csrs.length] as string }),
  rollback: unused, revertToBasicAuth: unused, restartService: unused,
  installCertificate: async function* (req) {
    await new Promise((r) => setTimeout(r, installMs));
    yield { renewalId: req.renewalId, step: 'done', state: 'done', result: { ok: true, currentSha256: 'cd'.repeat(32) } };
  },
  enableMutualAuth: async function* () { /* unused */ },
};
const servers = await Promise.all(Array.from({ length: count }, () => startAgentRpcServer({
  handlers, access: { operators: ['midcert-controller'], readers: [] }, logger: () => undefined,
  listen: '127.0.0.1:0', tls: { certChainPem: certPem, keyPem, clientCaPem: readFileSync(fleetPaths(dir).caCert, 'utf8') },
})));
process.stdout.write(`${JSON.stringify({ ports: servers.map((s) => s.port) })}\n`);
process.on('SIGTERM', () => { void Promise.all(servers.map((s) => s.close())).then(() => process.exit(0)); });
