#!/usr/bin/env python3
"""
A FAKE midcert controller CLI for test/ansible/ansible.test.ts.

It stands in for the controller only to isolate the Ansible modules' logic (argument building,
check mode, idempotence, error mapping). It speaks the JSON shapes and exit codes of
docs/controller-cli.md but does nothing real: no MIDs, no CA, no instance. The end-to-end test
runs the same playbooks against the real controller and the simulated lab.

State lives in state.json next to this script (rewritten only when a command changes something,
so a test can prove that check mode changed nothing), and every invocation's argv is appended as
one JSON line to argv.log next to it.

state.json:
  {"instance": {"url", "caChain": {"sha256","subject","notAfter"} | null} | null,
   "agents": {NAME: {"address","serverName","midName","tags","cluster","createdAt",
                     "reachable", "cert": {"daysLeft","sha256","subject","issuer"} | null}},
   "validityDays": 90, "jobSeq": 0,
   "failRotate": {NAME: {"code","message","step"}},            # this MID fails to rotate
   "failCommand": {"status": {"rc": 5, "code", "message", "json": true}},   # whole command fails
                                                                # (also from env FAKE_MIDCERT_FAIL, same shape)
   "preflight": {"instance": [Check], "agents": {NAME: [Check]}},
   "signer": {"caCert": path, "caKey": path},                   # for agent-identity sign
   "upsert": true}                     # agents add updates in place (env FAKE_MIDCERT_NO_UPSERT=1: it refuses)
"""
import base64
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(HERE, 'state.json')
LOG = os.path.join(HERE, 'argv.log')


def load():
    with open(STATE) as handle:
        return json.load(handle)


def save(state):
    tmp = STATE + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(tmp, STATE)


def iso_in(days):
    now = datetime.datetime(2026, 11, 30, 12, 0, 0)
    return (now + datetime.timedelta(days=days)).strftime('%Y-%m-%dT%H:%M:%S.000Z')


def out(doc, rc=0):
    sys.stdout.write(json.dumps(doc) + '\n')
    sys.exit(rc)


def die(code, message, rc, as_json=True):
    sys.stderr.write('midcert: error [%s] %s\n' % (code, message))
    if as_json:
        sys.stdout.write(json.dumps({'ok': False, 'error': {'code': code, 'message': message}}) + '\n')
    sys.exit(rc)


def take(args, flag, many=False, default=None):
    """Removes `flag VALUE` occurrences from args; returns the value(s)."""
    values = []
    while flag in args:
        i = args.index(flag)
        if i + 1 >= len(args):
            die('USAGE', 'option %s needs a value' % flag, 2)
        values.append(args[i + 1])
        del args[i:i + 2]
    if many:
        return values
    return values[-1] if values else default


def has(args, flag):
    if flag in args:
        args.remove(flag)
        return True
    return False


def agent_record(name, a):
    return {'name': name, 'address': a['address'], 'serverName': a.get('serverName') or name,
            'midName': a.get('midName'), 'tags': sorted(a.get('tags') or []), 'cluster': a.get('cluster'),
            'createdAt': a.get('createdAt', '2026-11-01T00:00:00.000Z')}


def agent_status(name, a):
    cert = a.get('cert')
    return {
        'name': name, 'midName': a.get('midName') or name, 'reachable': a.get('reachable', True),
        'instanceStatus': 'Up' if a.get('reachable', True) else 'unknown',
        'certificate': None if not cert else {
            'subject': cert.get('subject', 'CN=%s' % name), 'issuer': cert.get('issuer', 'CN=Fake Issuing CA'),
            'sha256': cert['sha256'], 'notAfter': iso_in(cert['daysLeft']), 'daysLeft': cert['daysLeft']},
        'lastRotation': a.get('lastRotation'),
        'error': a.get('error'),
    }


def select(state, args, allow_all=True):
    names = take(args, '--agent', many=True)
    tag = take(args, '--tag')
    everyone = has(args, '--all') if allow_all else False
    agents = state['agents']
    for n in names:
        if n not in agents:
            die('AGENT_NOT_FOUND', 'not registered: %s' % n, 3)
    if names:
        return sorted(names)
    if tag:
        return sorted(n for n, a in agents.items() if tag in (a.get('tags') or []))
    return sorted(agents)


def days_of(window):
    m = re.match(r'^(\d+)([dh]?)$', window)
    if not m:
        die('USAGE', '--when-expiring-within takes 30d, 12h or a number of days, not "%s"' % window, 2)
    n = int(m.group(1))
    return n / 24.0 if m.group(2) == 'h' else float(n)


def cmd_status(state, args):
    names = select(state, args, allow_all=False)
    take(args, '--sort')
    out({'ok': True, 'instance': state.get('instance'), 'agents': [agent_status(n, state['agents'][n]) for n in names]})


def cmd_rotate(state, args):
    if not ('--all' in args or '--agent' in args or '--tag' in args):
        die('USAGE', 'rotate needs --all, --agent or --tag', 2)
    names = select(state, args)
    window = days_of(take(args, '--when-expiring-within', default='30d'))
    force = has(args, '--force')
    canary = int(take(args, '--canary', default='1'))
    batch = int(take(args, '--batch', default='10'))
    max_failures = int(take(args, '--max-failures', default='1'))
    take(args, '--concurrency')
    dry = has(args, '--dry-run')
    planned, skipped = [], []
    for n in names:
        cert = state['agents'][n].get('cert')
        if force or cert is None or cert['daysLeft'] < window:
            planned.append(n)
        else:
            skipped.append({'name': n, 'reason': 'not-expiring'})
    waves = []
    rest = list(planned)
    if rest and canary > 0:
        waves.append(rest[:canary])
        rest = rest[canary:]
    while rest:
        waves.append(rest[:batch])
        rest = rest[batch:]
    state['jobSeq'] = state.get('jobSeq', 0) + 1
    job = 'j-%d' % state['jobSeq']
    results = []
    failed = 0
    stopped = False
    reason = None
    for n in planned:
        a = state['agents'][n]
        prev = (a.get('cert') or {}).get('sha256')
        if dry:
            results.append({'name': n, 'state': 'planned', 'previousSha256': prev, 'newSha256': None, 'notAfter': None,
                            'failedStep': None, 'error': None})
            continue
        if stopped:
            results.append({'name': n, 'state': 'skipped', 'previousSha256': prev, 'newSha256': None, 'notAfter': None,
                            'failedStep': None, 'error': None})
            continue
        resumed = (state.get('renewedByResumedJob') or {}).get(n)
        if resumed:
            # Like the real controller after a kill: the resumed job renewed it, the new job skips it.
            a['cert'] = dict(a.get('cert') or {}, daysLeft=state.get('validityDays', 90), sha256=resumed)
            results.append({'name': n, 'state': 'skipped', 'previousSha256': '', 'newSha256': '', 'notAfter': '',
                            'failedStep': '', 'error': None, 'reason': 'already-renewed (by resumed job 7)'})
            continue
        fail = (state.get('failRotate') or {}).get(n)
        if fail:
            failed += 1
            results.append({'name': n, 'state': 'failed', 'previousSha256': prev, 'newSha256': None, 'notAfter': None,
                            'failedStep': fail.get('step', 'verify'),
                            'error': {'code': fail['code'], 'message': fail['message']}})
            a['lastRotation'] = {'jobId': job, 'state': 'failed', 'finishedAt': iso_in(0), 'errorCode': fail['code']}
            if failed >= max_failures:
                stopped = True
                reason = 'failure budget spent (%d of %d)' % (failed, max_failures)
            continue
        days = state.get('validityDays', 90)
        new = hashlib.sha256(('%s-%s' % (n, job)).encode()).hexdigest()
        a['cert'] = dict(a.get('cert') or {}, daysLeft=days, sha256=new)
        a['lastRotation'] = {'jobId': job, 'state': 'succeeded', 'finishedAt': iso_in(0), 'errorCode': None}
        results.append({'name': n, 'state': 'succeeded', 'previousSha256': prev, 'newSha256': new, 'notAfter': iso_in(days),
                        'failedStep': None, 'error': None})
    if not dry:
        save(state)
    succeeded = len([r for r in results if r['state'] == 'succeeded'])
    skipped_count = len(skipped) + len([r for r in results if r['state'] == 'skipped'])
    out({'ok': failed == 0, 'jobId': None if dry else job, 'dryRun': dry, 'plan': {'waves': waves, 'skipped': skipped},
         'results': results, 'summary': {'succeeded': succeeded, 'failed': failed, 'skipped': skipped_count},
         'stoppedEarly': stopped, 'reason': reason}, 1 if failed else 0)


def first_cert_sha256(path):
    text = open(path).read()
    m = re.search(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', text, re.S)
    if not m:
        die('PEM_MALFORMED', '%s holds no certificate' % path, 3)
    return hashlib.sha256(base64.b64decode(''.join(m.group(1).split()))).hexdigest()


def cmd_rotate_ca(state, args):
    chain = take(args, '--chain')
    dry = has(args, '--dry-run')
    if not chain:
        die('USAGE', 'rotate-ca needs --chain', 2)
    sha = first_cert_sha256(chain)
    results = [{'name': n, 'state': 'planned' if dry else 'succeeded', 'previousSha256': None, 'newSha256': None,
                'notAfter': None, 'failedStep': None, 'error': None} for n in sorted(state['agents'])]
    state['jobSeq'] = state.get('jobSeq', 0) + 1
    if not dry:
        state['instance']['caChain'] = {'sha256': sha, 'subject': 'CN=from %s' % os.path.basename(chain), 'notAfter': iso_in(3650)}
        save(state)
    out({'ok': True, 'jobId': 'j-%d' % state['jobSeq'], 'swappedAt': None if dry else iso_in(0), 'results': results,
         'outageSeconds': {n: 0.5 for n in sorted(state['agents'])}})


def cmd_agents(state, args):
    sub = args.pop(0) if args else None
    if sub == 'list':
        tag = take(args, '--tag')
        names = sorted(n for n, a in state['agents'].items() if not tag or tag in (a.get('tags') or []))
        out({'ok': True, 'agents': [agent_record(n, state['agents'][n]) for n in names]})
    if sub == 'add':
        address = take(args, '--address')
        server = take(args, '--server-name')
        mid = take(args, '--mid-name')
        tags = take(args, '--tag', many=True)
        cluster = take(args, '--cluster')
        name = args.pop(0) if args and not args[0].startswith('-') else None
        if not name or not address:
            die('USAGE', 'agents add NAME --address HOST:PORT', 2)
        if not re.match(r'^[^\s]+:\d{1,5}$', address):
            die('USAGE', '--address must be host:port, not "%s"' % address, 2)
        record = {'address': address, 'serverName': server or name, 'midName': mid, 'tags': sorted(set(tags)), 'cluster': cluster}
        current = state['agents'].get(name)
        if current is not None and (not state.get('upsert', True) or os.environ.get('FAKE_MIDCERT_NO_UPSERT')):
            die('AGENT_EXISTS', 'an agent named "%s" is already registered' % name, 3)
        if current is not None and all(agent_record(name, current)[k] == agent_record(name, record)[k] for k in record):
            out({'ok': True, 'changed': False, 'agent': agent_record(name, current)})
        merged = dict(current or {}, **record)
        merged.setdefault('createdAt', iso_in(0))
        merged.setdefault('cert', None)
        state['agents'][name] = merged
        save(state)
        out({'ok': True, 'changed': True, 'agent': agent_record(name, merged)})
    if sub == 'remove':
        name = args.pop(0) if args and not args[0].startswith('-') else None
        if name not in state['agents']:
            die('AGENT_NOT_FOUND', 'no agent named "%s" is registered' % name, 3)
        del state['agents'][name]
        save(state)
        out({'ok': True, 'changed': True})
    die('USAGE', 'unknown agents command %s' % sub, 2)


def cmd_preflight(state, args):
    names = select(state, args, allow_all=False)
    pf = state.get('preflight') or {}
    ok_check = {'name': 'reachable', 'ok': True, 'severity': 'info', 'code': 'OK', 'message': 'ok'}
    agents = []
    for n in names:
        checks = (pf.get('agents') or {}).get(n) or [ok_check]
        agents.append({'name': n, 'ok': not any(not c['ok'] and c['severity'] == 'error' for c in checks), 'checks': checks})
    instance = pf.get('instance') or [dict(ok_check, name='plugin')]
    ok = all(a['ok'] for a in agents) and not any(not c['ok'] and c['severity'] == 'error' for c in instance)
    out({'ok': ok, 'instance': instance, 'agents': agents}, 0 if ok else 1)


def cmd_identity(state, args):
    if not args or args.pop(0) != 'sign':
        die('USAGE', 'agent-identity sign ...', 2)
    csr = take(args, '--csr')
    name = take(args, '--name')
    sans = take(args, '--san', many=True)
    out_file = take(args, '-o')
    signer = state['signer']
    ext = os.path.join(HERE, 'ext.cnf')
    with open(ext, 'w') as handle:
        handle.write('basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
        # Like the real controller: the agent name as a DNS SAN, then the extra ones.
        all_sans = ['DNS:%s' % name] + [x for x in sans if x != 'DNS:%s' % name]
        handle.write('subjectAltName=%s\n' % ','.join(all_sans))
    proc = subprocess.run(['openssl', 'x509', '-req', '-in', csr, '-CA', signer['caCert'], '-CAkey', signer['caKey'],
                           '-set_serial', str(1000 + state.get('jobSeq', 0)), '-days', '365', '-sha256', '-extfile', ext],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        die('CSR_REFUSED', 'openssl: %s' % ' '.join(proc.stderr.strip().splitlines()[-1:]), 3)
    state['jobSeq'] = state.get('jobSeq', 0) + 1
    state.setdefault('signed', []).append(name)
    save(state)
    cert = proc.stdout
    if out_file:
        with open(out_file, 'w') as handle:
            handle.write(cert)
    out({'ok': True, 'name': name, 'certificatePem': cert, 'fleetCaPem': open(signer['caCert']).read(), 'notAfter': iso_in(365)})


def main():
    args = sys.argv[1:]
    with open(LOG, 'a') as handle:
        handle.write(json.dumps(args) + '\n')
    take(args, '--data-dir')
    as_json = has(args, '--json')
    if not as_json:
        die('USAGE', 'the fake only speaks --json', 2, as_json=False)
    if not args:
        die('USAGE', 'no command', 2)
    command = args.pop(0)
    state = load()
    key = command + ((' ' + args[0]) if command in ('agents', 'agent-identity') and args else '')
    failures = dict(state.get('failCommand') or {})
    failures.update(json.loads(os.environ.get('FAKE_MIDCERT_FAIL') or '{}'))  # per task, via `environment:`
    fail = failures.get(key) or failures.get(command)
    if fail:
        die(fail['code'], fail['message'], fail.get('rc', 3), as_json=fail.get('json', True))
    handlers = {'status': cmd_status, 'rotate': cmd_rotate, 'rotate-ca': cmd_rotate_ca, 'agents': cmd_agents,
                'preflight': cmd_preflight, 'agent-identity': cmd_identity}
    if command not in handlers:
        die('USAGE', 'unknown command %s' % command, 2)
    handlers[command](state, args)


if __name__ == '__main__':
    main()
