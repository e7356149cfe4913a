#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_preflight
short_description: Check that the instance and MID Servers are ready for certificate rotation
version_added: 0.1.0
description:
  - Runs C(midcert preflight --json) on the controller host - instance-side checks (plugin, published
    CA chain, MID user) and, on each selected agent, host-side checks (config.xml, keystore, service,
    state dir, reaching the instance, TLS interception, clock skew).
  - Read-only; always C(changed=false), in check mode too.
  - Failed checks do not fail the task unless I(fail_on_error=true); then the task fails when any
    check of severity C(error) failed, with the first such check's code as C(error_code).
author:
  - midcert contributors (!UNKNOWN)
options:
  agents:
    description:
      - Only these agents. With neither I(agents) nor I(tag), every registered agent.
    type: list
    elements: str
    aliases: [agent, name]
  tag:
    description:
      - Only agents carrying this tag.
    type: str
  fail_on_error:
    description:
      - Fail the task when any check of severity C(error) failed.
    type: bool
    default: false
extends_documentation_fragment:
  - midcert.fleet.cli
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; runs the same way in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Preflight the whole fleet and stop the play if anything is not ready
  midcert.fleet.midcert_preflight:
    fail_on_error: true
  delegate_to: midcert-controller
  run_once: true

- name: Preflight the canary MIDs and look at the findings
  midcert.fleet.midcert_preflight:
    tag: canary
  delegate_to: midcert-controller
  run_once: true
  register: preflight

- name: List failed checks
  ansible.builtin.debug:
    msg: "{{ item.scope }} {{ item.name }}: [{{ item.code }}] {{ item.message }}"
  loop: "{{ preflight.failed_checks }}"
'''

RETURN = r'''
ok:
  description: True when no check of severity C(error) failed.
  returned: success
  type: bool
instance:
  description: Instance-side checks (C(name), C(ok), C(severity), C(code), C(message)).
  returned: success
  type: list
  elements: dict
agents:
  description: Per agent, C(name), C(ok) and its C(checks).
  returned: success
  type: list
  elements: dict
failed_checks:
  description: Every check with C(ok=false), flattened, with C(scope) C(instance) or the agent name.
  returned: success
  type: list
  elements: dict
  sample:
    - {"scope": "mid02", "name": "clock", "ok": false, "severity": "error", "code": "CLOCK_SKEW", "message": "clock differs by 412 s"}
error_count:
  description: Number of failed checks of severity C(error).
  returned: success
  type: int
warning_count:
  description: Number of failed checks of severity C(warning).
  returned: success
  type: int
error_code:
  description: Code of the first failed error check (with I(fail_on_error)), or of the CLI failure.
  returned: failure
  type: str
  sample: TLS_INTERCEPTED
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
from ansible_collections.midcert.fleet.plugins.module_utils.midcert_cli import MidcertCli, midcert_argument_spec


def flatten(data):
    failed = []
    for check in data.get('instance') or []:
        if not check.get('ok'):
            failed.append(dict(check, scope='instance'))
    for agent in data.get('agents') or []:
        for check in agent.get('checks') or []:
            if not check.get('ok'):
                failed.append(dict(check, scope=agent.get('name')))
    return failed


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            agents=dict(type='list', elements='str', aliases=['agent', 'name']),
            tag=dict(type='str'),
            fail_on_error=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    cli = MidcertCli(module)
    args = ['preflight']
    for name in module.params['agents'] or []:
        args += ['--agent', name]
    if module.params['tag']:
        args += ['--tag', module.params['tag']]
    # Exit 1 = a check failed: the report is still the document we want.
    data = cli.run_or_fail(args, allow_partial=True)
    failed = flatten(data)
    errors = [c for c in failed if c.get('severity') == 'error']
    warnings = [c for c in failed if c.get('severity') == 'warning']
    ok = bool(data.get('ok')) and not errors
    result = dict(
        changed=False, ok=ok, instance=data.get('instance') or [], agents=data.get('agents') or [],
        failed_checks=failed, error_count=len(errors), warning_count=len(warnings),
    )
    if not ok and module.params['fail_on_error']:
        shown = '; '.join('%s %s: [%s] %s' % (c.get('scope'), c.get('name'), c.get('code'), c.get('message')) for c in errors[:5])
        if len(errors) > 5:
            shown += '; and %d more' % (len(errors) - 5)
        module.fail_json(msg='preflight failed: %s' % (shown or 'the controller reported ok=false'),
                         error_code=(errors[0].get('code') if errors else None) or 'PREFLIGHT_FAILED', **result)
    result['msg'] = 'preflight %s: %d error(s), %d warning(s)' % ('passed' if ok else 'FAILED', len(errors), len(warnings))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
