/**
 * Child process for the controller benchmark: N agent gRPC servers (real mTLS, canned status),
 * so the controller's CPU is measured apart from the agents' (which run on other hosts in life).
 * argv: dataDir N; prints one JSON line {"ports":[…]} when serving.
 */
import { readFileSync } from 'node:fs';
import { startAgentRpcServer, type AgentHandlers } from '../agent/rpc/server.js';
import { fleetPaths, makeAgentKeyAndCsr, signAgentIdentity } from '../controller/fleet-ca.js';

const [dir, count] = [process.argv[2] as string, Number(process.argv[3])];
const { keyPem, csrPem } = await makeAgentKeyAndCsr('bench-agent', { sans: ['IP:127.0.0.1'] });
const certPem = await signAgentIdentity(dir, csrPem, { name: 'bench-agent', sans: ['IP:127.0.0.1'] });
const notAfter = new Date(Date.now() + 20 * 86_400_000).toISOString();
const unused = async (): Promise<never> => { throw new Error('unused'); };
const handlers: AgentHandlers = {
  getStatus: async () => ({ midName: 'bench', certificate: { present: true, leaf: { subject: 'CN=bench', issuer: 'CN=CA', sha256: 'ab'.repeat(32), notAfter }, daysLeft: 20 } }),
  watchEvents: async function* () { /* none */ },
  runPreflight: async () => ({ ok: true, checks: [] }),
  getRenewal: unused,
  prepareRenewal: unused, rollback: unused, revertToBasicAuth: unused, restartService: unused,
  installCertificate: async function* () { /* unused */ },
  enableMutualAuth: async function* () { /* unused */ },
};
const servers = await Promise.all(Array.from({ length: count }, () => startAgentRpcServer({
  handlers, access: { operators: ['midcert-controller'], readers: [] }, logger: () => undefined,
  listen: '127.0.0.1:0', tls: { certChainPem: certPem, keyPem, clientCaPem: readFileSync(fleetPaths(dir).caCert, 'utf8') },
})));
process.stdout.write(`${JSON.stringify({ ports: servers.map((s) => s.port) })}\n`);
process.on('SIGTERM', () => { void Promise.all(servers.map((s) => s.close())).then(() => process.exit(0)); });
