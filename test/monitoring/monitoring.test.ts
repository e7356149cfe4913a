import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { createAgentMetrics } from '../../agent/metrics.js';
import { createControllerMetrics } from '../../controller/metrics/registry.js';
import { openStore } from '../../controller/store/index.js';
import { run } from '../helpers/run.js';

/**
 * packaging/monitoring: the alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules alerts.test.yml`, one case per alert), and the Grafana dashboard and the
 * rules name only metrics that midcert serve or the agent actually exposes.
 */
const DIR = resolve(import.meta.dirname, '../../packaging/monitoring');

async function exposedNames(): Promise<Set<string>> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-monitoring-'));
  const store = await openStore(dir, { actor: 'test' });
  try {
    const controller = createControllerMetrics(store, new Map());
    const agent = createAgentMetrics({ paths: { keystore: join(dir, 'none'), configXml: join(dir, 'none.xml') }, alias: 'x', storepass: 'changeit', engine: { state: async () => ({ state: 'idle', renewalId: '', lastResult: undefined }) } });
    const names = new Set<string>();
    for (const registry of [controller.registry, agent.registry]) {
      for (const m of await registry.getMetricsAsJSON()) {
        names.add(m.name);
        if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
      }
    }
    return names;
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const METRIC = /\b(?:midcert|process|nodejs)_[a-z0-9_]+\b/g;

describe('packaging/monitoring: alert rules and dashboard', function () {
  this.timeout(60_000);

  it('promtool check rules and promtool test rules alerts.test.yml pass', async () => {
    const check = await run('promtool', ['check', 'rules', 'alerts.yml'], { cwd: DIR });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const test = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: DIR });
    assert.equal(test.code, 0, test.stdout + test.stderr);
  });

  it('has a firing test case for every alert, and the required alerts exist', async () => {
    const rules = parse(await readFile(join(DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const tests = parse(await readFile(join(DIR, 'alerts.test.yml'), 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));
    const firing = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname)));
    for (const a of alerts) assert.ok(firing.has(a), `a firing case for ${a}`);
    for (const required of ['MidcertCertificateExpiringSoon', 'MidcertCertificateExpiringCritical', 'MidcertLastRotationFailed', 'MidcertAgentUnreachable', 'MidcertCaCertificateExpiring']) {
      assert.ok(alerts.includes(required), required);
    }
  });

  it('the dashboard parses and, like the rules, references only exposed metric names', async () => {
    const names = await exposedNames();
    const dashboard = JSON.parse(await readFile(join(DIR, 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(exprs.length >= 10);
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const want of ['expiry timeline', 'rotation results', 'agents up']) assert.match(titles, new RegExp(want));
    const rules = await readFile(join(DIR, 'alerts.yml'), 'utf8');
    const used = new Set([...exprs.join('\n').matchAll(METRIC), ...rules.matchAll(METRIC)].map((m) => m[0]));
    assert.ok(used.size > 5);
    for (const name of used) assert.ok(names.has(name), `${name} is exposed`);
  });
});
