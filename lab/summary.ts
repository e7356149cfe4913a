import type { LabStatusReport } from './status.js';
import type { UpResult } from './up.js';

/** The readable (non --json) output of `up` and `status`. Never prints a password, only where it is. */

export function upSummary(r: UpResult): string {
  const bin = 'bin/midcert-lab';
  const names = r.mids.map((m) => m.name);
  const shownNames = names.length > 12 ? `${names.slice(0, 12).join(' ')} … (${names.length})` : names.join(' ') || '(none)';
  const leafExpiry = r.mids[0] ? `; client certificates expire ${r.mids[0].leafNotAfter.slice(0, 10)}` : '';
  return [
    `midcert lab is up in ${r.dir} (${r.mids.length} MID${r.mids.length === 1 ? '' : 's'} Up, ${(r.elapsedMs / 1000).toFixed(1)} s)`,
    '',
    `  instance  ${r.instance.url}`,
    `            user ${r.instance.username}, password in ${r.instance.passwordFile}`,
    `  ADCS      ${r.adcs.url}`,
    `            user ${r.adcs.username}, password in ${r.adcs.passwordFile}, template ${r.adcs.template} (${r.adcs.templateMode})`,
    `  CA        ${r.caFile} (lab root; chain ${r.chainFile})`,
    `  MIDs      ${shownNames}`,
    `            homes under ${r.dir}/mids/<name>, service users mid.<name>${leafExpiry}`,
    ...(r.controller && r.agents ? [
      `  controller ${r.controller.dataDir} (CA: the lab CA; instance: the lab instance as ${r.instance.username})`,
      `  agents    ${r.agents.length} (${r.agents.slice(0, 3).map((a) => `${a.name} ${a.address}`).join(', ')}${r.agents.length > 3 ? ', …' : ''}), configs ${r.dir}/agents/<name>/agent.yaml`,
    ] : []),
    `  logs      ${r.logsDir}`,
    '',
    ...(r.controller && r.agents ? [
      `  fleet:    bin/midcert --data-dir ${r.controller.dataDir} status`,
      `  rotate:   bin/midcert --data-dir ${r.controller.dataDir} rotate --agent ${r.agents[0]?.name ?? 'mid01'} --force`,
      `  an agent: bin/midcert-agent status --config ${r.agents[0]?.config ?? `${r.dir}/agents/mid01/agent.yaml`}`,
    ] : []),
    `  a MID:    ${bin} mid status|stop|start|restart|is-active --dir ${r.dir} <name>`,
    `  status:   ${bin} status --dir ${r.dir}`,
    `  stop:     ${bin} down --dir ${r.dir}`,
    '',
  ].join('\n');
}

export function statusSummary(s: LabStatusReport): string {
  const proc = (part: keyof LabStatusReport['processes']): string => {
    const p = s.processes[part];
    return !p || p.pid === null ? 'not started' : `pid ${p.pid} ${p.running ? 'running' : 'not running'}`;
  };
  const lines = [
    `lab in ${s.dir}: ${s.state}`,
    `  instance  ${proc('instance')}  ${s.instance.url ?? ''}${s.processes.instance?.running ? (s.instance.answers ? ' (answers)' : ' (does not answer)') : ''}`,
    `  ADCS      ${proc('adcs')}  ${s.adcs.url ?? ''}`,
    `  runner    ${proc('runner')}`,
    ...(s.agents ? [`  agents    ${proc('agents')}  ${s.agents.filter((a) => a.listening).length} of ${s.agents.length} listening; controller ${s.controller?.dataDir ?? ''}`] : []),
    `  CA        ${s.caFile}`,
  ];
  if (s.mids.length > 0) {
    lines.push('  MIDs      name       unit        ecc_agent  leaf expires');
    for (const m of s.mids) {
      lines.push(`            ${m.name.padEnd(10)} ${m.unit.padEnd(11)} ${m.ecc.padEnd(10)} ${m.leafNotAfter.slice(0, 10)}${m.lastError ? `  (${m.lastError})` : ''}`);
    }
  }
  if (s.agents && s.agents.length > 0) {
    lines.push('  agents    name       address                listening');
    for (const a of s.agents) lines.push(`            ${a.name.padEnd(10)} ${a.address.padEnd(22)} ${a.listening ? 'yes' : 'no'}`);
  }
  return `${lines.join('\n')}\n`;
}
