#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_rotation
short_description: Rotate the client certificates of many MID Servers in waves
version_added: 0.1.0
description:
  - Runs C(midcert rotate --json) on the controller host for a set of MID Servers (I(agents), a
    I(tag) or I(all)) - a canary wave first, then waves of I(batch) MIDs, never two MIDs of one
    cluster at once, stopping when I(max_failures) MIDs have failed.
  - With I(when_expiring_within), only MIDs whose certificate expires within that window are
    rotated; the others are skipped (reason C(not-expiring)). Running the task again right after a
    rotation therefore reports C(changed=false).
  - In check mode the module runs C(midcert rotate --dry-run) and returns the plan (the waves and
    the skipped MIDs); nothing is rotated. C(changed) is true when the plan would rotate any MID.
  - C(changed) is true when any MID was rotated. The task fails when any MID failed (or the
    controller stopped early), with every result and the first failure's C(error_code).
author:
  - midcert contributors (!UNKNOWN)
options:
  agents:
    description:
      - These agents (names as registered). Exactly one of I(agents), I(tag) or I(all) is required.
    type: list
    elements: str
    aliases: [agent]
  tag:
    description:
      - The agents carrying this tag.
    type: str
  all:
    description:
      - Every registered agent.
    type: bool
    default: false
  when_expiring_within:
    description:
      - Rotate only MIDs whose certificate expires within this window, as C(30d), C(12h) or a number
        of days. Without it the controller's default window applies.
    type: str
  force:
    description:
      - Rotate every selected MID, whatever its expiry (C(--force)). Never idempotent.
    type: bool
    default: false
  canary:
    description:
      - MIDs in the first wave (C(--canary)); the next waves start only when it succeeded.
    type: int
  batch:
    description:
      - MIDs per later wave (C(--batch)).
    type: int
  max_failures:
    description:
      - Stop starting new MIDs once this many have failed (C(--max-failures)).
    type: int
  concurrency:
    description:
      - MIDs rotated at the same time within a wave (C(--concurrency)).
    type: int
extends_documentation_fragment:
  - midcert.fleet.cli
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs C(midcert rotate --dry-run) and returns the plan.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: midcert.fleet.midcert_certificate
  - module: midcert.fleet.midcert_info
'''

EXAMPLES = r'''
- name: Renew every MID that expires within 30 days, one canary then waves of 10
  midcert.fleet.midcert_rotation:
    all: true
    when_expiring_within: 30d
    canary: 1
    batch: 10
    max_failures: 1
  delegate_to: midcert-controller
  run_once: true
  register: renewal

- name: Show what was rotated
  ansible.builtin.debug:
    msg: "{{ renewal.rotated }} rotated, {{ renewal.summary.skipped }} skipped"

- name: Plan only (check mode) for the production tag
  midcert.fleet.midcert_rotation:
    tag: prod
    when_expiring_within: 45d
  check_mode: true
  delegate_to: midcert-controller
  run_once: true
  register: plan

- name: Force new keys on two MIDs, one at a time
  midcert.fleet.midcert_rotation:
    agents: [mid01, mid02]
    force: true
    concurrency: 1
  delegate_to: midcert-controller
  run_once: true
'''

RETURN = r'''
job_id:
  description: The controller's job id (C(midcert history)); null for a dry run that records none.
  returned: success
  type: str
  sample: j-42
dry_run:
  description: Whether this was a dry run (check mode).
  returned: success
  type: bool
plan:
  description: The waves (lists of agent names, in order) and the skipped agents with a reason.
  returned: success
  type: dict
  sample: {"waves": [["mid01"], ["mid02", "mid03"]], "skipped": [{"name": "mid04", "reason": "not-expiring"}]}
planned:
  description: Names of the MIDs the plan rotates, in wave order.
  returned: success
  type: list
  elements: str
  sample: [mid01, mid02, mid03]
results:
  description: One Result per MID (C(name), C(state) succeeded/failed/skipped/planned, C(previousSha256), C(newSha256), C(notAfter), C(failedStep), C(error)).
  returned: success and failure
  type: list
  elements: dict
rotated:
  description: Names of the MIDs that were rotated.
  returned: success and failure
  type: list
  elements: str
  sample: [mid01, mid02]
failed_agents:
  description: Names of the MIDs whose rotation failed.
  returned: success and failure
  type: list
  elements: str
  sample: []
summary:
  description: Counts from the controller.
  returned: success and failure
  type: dict
  sample: {"succeeded": 2, "failed": 0, "skipped": 1}
stopped_early:
  description: Whether the controller stopped before the last wave (failure budget spent).
  returned: success and failure
  type: bool
reason:
  description: Why the controller stopped early, when it did.
  returned: success and failure
  type: str
error_code:
  description: Error code of the first failed MID (or of the CLI failure).
  returned: failure
  type: str
  sample: HEALTH_CHECK_FAILED
rc:
  description: Exit code of the controller CLI when it failed (1 partly failed, 2 usage, 3 bad input, 4 I/O, 5 a peer unreachable, 70 internal).
  returned: when the controller CLI failed
  type: int
  sample: 5
exit_meaning:
  description: What I(rc) means, in words.
  returned: when the controller CLI failed with one of the documented exit codes
  type: str
  sample: a peer (instance, CA or agent) is unreachable
cmd:
  description: The controller CLI command that failed, as an argument list (never run through a shell).
  returned: when the controller CLI failed
  type: list
  elements: str
  sample: [/opt/midcert/bin/midcert, status, --json]
stderr:
  description: Standard error of the controller CLI when it failed.
  returned: when the controller CLI failed and wrote to standard error
  type: str
  sample: "midcert: error [INSTANCE_UNAVAILABLE] the instance did not answer"
stdout:
  description: Standard output of the controller CLI when it failed without printing a JSON document.
  returned: when the controller CLI failed and its output was not JSON
  type: str
  sample: ""
output:
  description: The JSON document the controller CLI printed when it failed (its C(ok) is false and its C(error) has C(code) and C(message)).
  returned: when the controller CLI failed and printed a JSON document
  type: dict
  sample: {"ok": false, "error": {"code": "AGENT_NOT_FOUND", "message": "no agent named mid09"}}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.midcert.fleet.plugins.module_utils.midcert_cli import (
    MidcertCli, midcert_argument_spec, failed_results, describe_failures,
)


def build_args(params, dry_run):
    args = ['rotate']
    if params['all']:
        args.append('--all')
    for name in params['agents'] or []:
        args += ['--agent', name]
    if params['tag']:
        args += ['--tag', params['tag']]
    if params['when_expiring_within']:
        args += ['--when-expiring-within', params['when_expiring_within']]
    if params['force']:
        args.append('--force')
    for option, flag in (('canary', '--canary'), ('batch', '--batch'), ('max_failures', '--max-failures'),
                         ('concurrency', '--concurrency')):
        if params[option] is not None:
            args += [flag, str(params[option])]
    if dry_run:
        args.append('--dry-run')
    return args


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            agents=dict(type='list', elements='str', aliases=['agent']),
            tag=dict(type='str'),
            all=dict(type='bool', default=False),
            when_expiring_within=dict(type='str'),
            force=dict(type='bool', default=False),
            canary=dict(type='int'),
            batch=dict(type='int'),
            max_failures=dict(type='int'),
            concurrency=dict(type='int'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    chosen = [k for k in ('agents', 'tag', 'all') if params[k]]
    if len(chosen) != 1:
        module.fail_json(msg='exactly one of agents, tag or all=true is required (got %s)' % (', '.join(chosen) or 'none'),
                         error_code='USAGE')
    for option in ('canary', 'batch', 'max_failures', 'concurrency'):
        if params[option] is not None and params[option] < (0 if option in ('canary', 'max_failures') else 1):
            module.fail_json(msg='%s must not be %s' % (option, params[option]), error_code='USAGE')

    cli = MidcertCli(module)
    dry_run = module.check_mode
    data = cli.run_or_fail(build_args(params, dry_run), allow_partial=True)

    plan = data.get('plan') or {'waves': [], 'skipped': []}
    planned = [name for wave in plan.get('waves') or [] for name in wave]
    results = data.get('results') or []
    rotated = [r.get('name') for r in results if r.get('state') == 'succeeded']
    failed = failed_results(results)
    summary = data.get('summary') or {}
    out = dict(
        job_id=data.get('jobId'),
        dry_run=bool(data.get('dryRun', dry_run)),
        plan=plan,
        planned=planned,
        results=results,
        rotated=rotated,
        failed_agents=[r.get('name') for r in failed],
        summary=summary,
        stopped_early=bool(data.get('stoppedEarly')),
        reason=data.get('reason'),
    )

    if dry_run:
        out['msg'] = ('would rotate %d MID(s) in %d wave(s): %s' % (len(planned), len(plan.get('waves') or []), ', '.join(planned))
                      if planned else 'nothing to rotate')
        module.exit_json(changed=bool(planned), **out)

    changed = bool(rotated)
    if failed or data.get('ok') is False:
        first = (failed[0].get('error') or {}) if failed else {}
        code = first.get('code') or ('ROTATION_STOPPED' if out['stopped_early'] else 'ROTATION_FAILED')
        msg = ('%d of %d MID(s) failed to rotate: %s' % (len(failed), len(planned) or len(results), describe_failures(failed))
               if failed else 'the rotation did not complete: %s' % (data.get('reason') or 'the controller reported ok=false'))
        if out['stopped_early'] and data.get('reason'):
            msg += ' (stopped early: %s)' % data.get('reason')
        module.fail_json(msg=msg, error_code=code, changed=changed, **out)

    skipped = (plan.get('skipped') or [])
    out['msg'] = ('rotated %d MID(s): %s' % (len(rotated), ', '.join(rotated)) if rotated
                  else 'nothing to rotate (%d MID(s) skipped)' % len(skipped))
    module.exit_json(changed=changed, **out)


if __name__ == '__main__':
    main()
