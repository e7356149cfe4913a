#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_certificate
short_description: Keep one MID Server's client certificate valid, or force a new key
version_added: 0.1.0
description:
  - Ensures the mutual-TLS client certificate of one MID Server, through the midcert controller on
    the host the module runs on.
  - With I(state=present) the certificate must stay valid for at least I(min_days) more days. The
    module reads C(midcert status --agent NAME --json) and rotates only when the certificate has fewer
    days left (or there is none on record), with C(midcert rotate --agent NAME --force --json) - a new
    key made on the MID host, a CSR, the CA's signature, the bundle imported into the MID keystore,
    the MID restarted and verified (rolled back on failure). A second run then reports C(changed=false).
  - With I(state=rotated) the module always rotates (a new key), so it always reports C(changed=true).
  - In check mode nothing is rotated; the module reports C(changed=true) and C(msg) says it would
    rotate, from the status alone.
  - A failed rotation fails the task with the controller's C(error_code), message and the step that
    failed; the controller has rolled the MID back by then.
author:
  - midcert contributors (!UNKNOWN)
options:
  name:
    description:
      - The agent name as registered with the controller (C(midcert agents list)).
    type: str
    required: true
    aliases: [agent, mid]
  state:
    description:
      - C(present) rotates only when the certificate has fewer than I(min_days) days left.
      - C(rotated) always rotates (forces a new key).
    type: str
    choices: [present, rotated]
    default: present
  min_days:
    description:
      - With I(state=present), the least number of whole days the certificate must still be valid for.
    type: int
    default: 30
extends_documentation_fragment:
  - midcert.fleet.cli
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports C(changed=true) and "would rotate" from C(midcert status); nothing is rotated.
  diff_mode:
    support: full
    details: Shows the certificate's SHA-256, expiry and days left before and after.
  platform:
    platforms: posix
seealso:
  - module: midcert.fleet.midcert_rotation
  - module: midcert.fleet.midcert_info
'''

EXAMPLES = r'''
- name: Keep mid01's certificate valid for at least 30 more days
  midcert.fleet.midcert_certificate:
    name: mid01
  delegate_to: midcert-controller

- name: Renew each MID of the inventory group when it has fewer than 45 days left
  midcert.fleet.midcert_certificate:
    name: "{{ inventory_hostname }}"
    min_days: 45
  delegate_to: midcert-controller
  throttle: 1

- name: Force a new key for mid02 (for example after a suspected key compromise)
  midcert.fleet.midcert_certificate:
    name: mid02
    state: rotated
  delegate_to: midcert-controller
  register: rotated

- name: Show the new expiry
  ansible.builtin.debug:
    msg: "mid02 now expires {{ rotated.not_after }} ({{ rotated.days_left }} days)"
'''

RETURN = r'''
name:
  description: The agent name.
  returned: always
  type: str
  sample: mid01
rotated:
  description: Whether a rotation ran (false in check mode, where C(changed) tells whether one would run).
  returned: success
  type: bool
  sample: true
reason:
  description: Why the certificate was or would be rotated, or why not.
  returned: success
  type: str
  choices: [valid, expiring, no-certificate, forced]
  sample: expiring
days_left:
  description: Days the certificate is valid for after this task (before it, in check mode or when nothing ran).
  returned: success
  type: int
  sample: 89
days_left_before:
  description: Days the certificate had left before this task (null when none was on record).
  returned: success
  type: int
  sample: 12
not_after:
  description: Expiry (ISO-8601 UTC) of the certificate after this task.
  returned: success
  type: str
  sample: "2027-03-01T08:47:38.000Z"
previous_sha256:
  description: SHA-256 of the certificate before the rotation.
  returned: when rotated
  type: str
new_sha256:
  description: SHA-256 of the new certificate.
  returned: when rotated
  type: str
job_id:
  description: The controller's job id for the rotation (C(midcert history)).
  returned: when rotated
  type: str
  sample: j-42
certificate:
  description: The certificate as C(midcert status) reports it after this task.
  returned: success
  type: dict
  contains:
    subject:
      description: Subject DN.
      type: str
    issuer:
      description: Issuer DN.
      type: str
    sha256:
      description: SHA-256 fingerprint.
      type: str
    not_after:
      description: Expiry, ISO-8601 UTC.
      type: str
    days_left:
      description: Whole days left.
      type: int
result:
  description: The controller's Result for this MID (C(state), C(failedStep), C(error), ...).
  returned: when rotated, and on a failed rotation
  type: dict
error_code:
  description: The controller's error code when the task failed (for example C(HEALTH_CHECK_FAILED), C(AGENT_NOT_FOUND)).
  returned: failure
  type: str
  sample: HEALTH_CHECK_FAILED
failed_step:
  description: The rotation step that failed.
  returned: when a rotation failed
  type: str
  sample: verify
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
    MidcertCli, midcert_argument_spec, status_certificate_summary,
)


def agent_status(cli, name):
    data = cli.run_or_fail(['status', '--agent', name])
    for agent in data.get('agents') or []:
        if agent.get('name') == name:
            return agent
    cli.fail('AGENT_NOT_FOUND', 'the controller reports no status for agent "%s"' % name, name=name)


def diff_view(cert):
    if not cert:
        return {'certificate': None}
    return {'sha256': cert.get('sha256'), 'not_after': cert.get('not_after'), 'days_left': cert.get('days_left')}


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            name=dict(type='str', required=True, aliases=['agent', 'mid']),
            state=dict(type='str', choices=['present', 'rotated'], default='present'),
            min_days=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    name = module.params['name']
    state = module.params['state']
    min_days = module.params['min_days']
    cli = MidcertCli(module)

    before_status = agent_status(cli, name)
    before = status_certificate_summary(before_status)
    if before is None and before_status.get('error'):
        err = before_status['error'] or {}
        cli.fail(err.get('code') or 'STATUS_UNKNOWN',
                 'cannot tell how long the certificate of %s is valid: %s' % (name, err.get('message') or 'no certificate on record'),
                 name=name, status=before_status)
    days_before = before.get('days_left') if before else None

    if state == 'rotated':
        reason = 'forced'
    elif before is None or days_before is None:
        reason = 'no-certificate'
    elif days_before < min_days:
        reason = 'expiring'
    else:
        reason = 'valid'

    result = dict(name=name, reason=reason, rotated=False, days_left_before=days_before,
                  days_left=days_before, not_after=before.get('not_after') if before else None, certificate=before)

    if reason == 'valid':
        result['msg'] = '%s is valid for %s more days (at least %d wanted)' % (name, days_before, min_days)
        module.exit_json(changed=False, **result)

    why = {
        'forced': 'a new key was requested (state=rotated)',
        'no-certificate': 'no certificate is on record',
        'expiring': '%s days left, fewer than %d' % (days_before, min_days),
    }[reason]

    if module.check_mode:
        result['msg'] = 'would rotate %s: %s' % (name, why)
        if module._diff:
            result['diff'] = dict(before=diff_view(before), after={'sha256': '(new certificate)', 'not_after': '(new expiry)'})
        module.exit_json(changed=True, **result)

    data = cli.run_or_fail(['rotate', '--agent', name, '--force'], allow_partial=True, name=name)
    mine = [r for r in data.get('results') or [] if r.get('name') == name]
    outcome = mine[0] if mine else None
    result['job_id'] = data.get('jobId')
    result['result'] = outcome
    if outcome is not None and outcome.get('state') == 'skipped' and str(outcome.get('reason') or '').startswith('already-renewed'):
        # A resumed job (after a controller kill) has just renewed this MID: that was our rotation.
        after = status_certificate_summary(agent_status(cli, name))
        result.update(rotated=True, certificate=after, not_after=(after or {}).get('not_after'), days_left=(after or {}).get('days_left'),
                      new_sha256=(after or {}).get('sha256'))
        result['msg'] = 'rotated %s by the resumed job (%s); valid until %s' % (name, outcome.get('reason'), result['not_after'])
        module.exit_json(changed=True, **result)
    if outcome is None or outcome.get('state') != 'succeeded':
        err = (outcome or {}).get('error') or {}
        code = err.get('code') or ('ROTATION_FAILED' if outcome else 'ROTATION_NOT_RUN')
        message = err.get('message') or (
            'the rotation of %s ended in state %s' % (name, outcome.get('state')) if outcome
            else 'the controller did not rotate %s%s' % (name, (': ' + str(data.get('reason'))) if data.get('reason') else ''))
        module.fail_json(msg='rotating %s failed: %s' % (name, message), error_code=code,
                         failed_step=(outcome or {}).get('failedStep'), output=data, **result)

    result['rotated'] = True
    result['previous_sha256'] = outcome.get('previousSha256')
    result['new_sha256'] = outcome.get('newSha256')
    after = status_certificate_summary(agent_status(cli, name))
    if after is None or (outcome.get('newSha256') and after.get('sha256') != outcome.get('newSha256')):
        # Status not caught up yet: report what the rotation itself returned.
        after = dict(subject=(after or before or {}).get('subject'), issuer=(after or before or {}).get('issuer'),
                     sha256=outcome.get('newSha256'), not_after=outcome.get('notAfter'),
                     days_left=(after or {}).get('days_left'))
    result['certificate'] = after
    result['not_after'] = after.get('not_after') or outcome.get('notAfter')
    result['days_left'] = after.get('days_left')
    result['msg'] = 'rotated %s (%s); valid until %s' % (name, why, result['not_after'])
    if module._diff:
        result['diff'] = dict(before=diff_view(before), after=diff_view(after))
    module.exit_json(changed=True, **result)


if __name__ == '__main__':
    main()
