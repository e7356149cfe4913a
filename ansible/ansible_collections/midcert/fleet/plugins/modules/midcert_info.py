#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_info
short_description: Certificate status of one MID Server, a tag or the whole midcert fleet
version_added: 0.1.0
description:
  - Runs C(midcert status --json) on the controller host and returns the instance's CA chain and,
    for each registered agent, whether it is reachable, the MID's status on the instance, its
    client certificate (subject, issuer, SHA-256, expiry, days left), the last rotation and any error.
  - Read-only. It never changes anything and always reports C(changed=false), in check mode too.
author:
  - midcert contributors (!UNKNOWN)
options:
  agents:
    description:
      - Only these agents (names as registered with the controller). A name that is not
        registered fails the task with C(error_code=AGENT_NOT_FOUND).
      - With neither I(agents) nor I(tag), the whole fleet.
    type: list
    elements: str
    aliases: [name, agent]
  tag:
    description:
      - Only agents carrying this tag.
    type: str
  sort:
    description:
      - Order of the returned agents, as C(midcert status --sort).
    type: str
    choices: [name, days, expiry, status]
  expiring_within_days:
    description:
      - Also return C(expiring), the names of agents whose certificate has fewer than this many
        days left (or that have no certificate on record).
    type: int
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
seealso:
  - module: midcert.fleet.midcert_certificate
  - module: midcert.fleet.midcert_rotation
'''

EXAMPLES = r'''
- name: Status of the whole fleet
  midcert.fleet.midcert_info:
  delegate_to: midcert-controller
  run_once: true
  register: fleet

- name: Show MIDs that expire within 30 days
  ansible.builtin.debug:
    msg: "{{ fleet.agents | selectattr('certificate') | selectattr('certificate.daysLeft', 'lt', 30) | map(attribute='name') | list }}"

- name: One MID, with an explicit CLI and data dir
  midcert.fleet.midcert_info:
    agents: [mid01]
    midcert_bin: /opt/midcert/bin/midcert
    data_dir: /var/lib/midcert
  delegate_to: midcert-controller
  register: mid01

- name: Production MIDs sorted by days left, with the expiring ones named
  midcert.fleet.midcert_info:
    tag: prod
    sort: days
    expiring_within_days: 30
  delegate_to: midcert-controller
  run_once: true
  register: prod
'''

RETURN = r'''
instance:
  description: The instance the controller manages and the CA chain it currently publishes, or null when none is configured.
  returned: success
  type: dict
  contains:
    url:
      description: Instance URL.
      type: str
      sample: https://acme.service-now.com
    caChain:
      description: The active CA chain's first certificate (null when none is published).
      type: dict
      sample: {"sha256": "5f1c...", "subject": "CN=Acme Root CA", "notAfter": "2030-01-01T00:00:00.000Z"}
agents:
  description: One AgentStatus per agent, exactly as C(midcert status --json) prints it.
  returned: success
  type: list
  elements: dict
  sample:
    - name: mid01
      midName: mid01
      reachable: true
      instanceStatus: Up
      certificate: {"subject": "CN=mid01", "issuer": "CN=Acme Issuing CA", "sha256": "9b01...",
                    "notAfter": "2026-12-20T08:47:38.000Z", "daysLeft": 19}
      lastRotation: {"jobId": "j-12", "state": "succeeded", "finishedAt": "2026-11-30T08:48:40.000Z", "errorCode": null}
      error: null
count:
  description: Number of agents returned.
  returned: success
  type: int
  sample: 3
unreachable_agents:
  description: Names of agents the controller could not reach.
  returned: success
  type: list
  elements: str
  sample: [mid03]
expiring:
  description: Names of agents with fewer than I(expiring_within_days) days left or no certificate on record.
  returned: when I(expiring_within_days) is set
  type: list
  elements: str
  sample: [mid01]
error_code:
  description: The controller's error code when the task failed (for example C(AGENT_NOT_FOUND), C(INSTANCE_UNAVAILABLE)).
  returned: failure
  type: str
  sample: AGENT_NOT_FOUND
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


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            agents=dict(type='list', elements='str', aliases=['name', 'agent']),
            tag=dict(type='str'),
            sort=dict(type='str', choices=['name', 'days', 'expiry', 'status']),
            expiring_within_days=dict(type='int'),
        ),
        supports_check_mode=True,
    )
    cli = MidcertCli(module)
    args = ['status']
    for name in module.params['agents'] or []:
        args += ['--agent', name]
    if module.params['tag']:
        args += ['--tag', module.params['tag']]
    if module.params['sort']:
        args += ['--sort', module.params['sort']]
    data = cli.run_or_fail(args)
    agents = data.get('agents') or []
    result = dict(
        changed=False,
        instance=data.get('instance'),
        agents=agents,
        count=len(agents),
        unreachable_agents=[a.get('name') for a in agents if a.get('reachable') is False],
    )
    within = module.params['expiring_within_days']
    if within is not None:
        result['expiring'] = [
            a.get('name') for a in agents
            if not a.get('certificate') or (a['certificate'].get('daysLeft') is not None and a['certificate']['daysLeft'] < within)
        ]
    module.exit_json(**result)


if __name__ == '__main__':
    main()
