#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_agent
short_description: Register or remove a midcert agent in the controller's inventory
version_added: 0.1.0
description:
  - Keeps one agent (a midcert agent on a MID Server host) registered with the midcert controller,
    or removes it, on the host the module runs on.
  - Idempotent. The module reads C(midcert agents list --json) and runs C(midcert agents add) only when
    the agent is missing or a given field differs, and C(midcert agents remove) only when it is there.
  - Only the options that are given are compared; an option left out keeps its registered value.
    I(tags) are a set (order and duplicates do not matter).
  - Removing an agent keeps its history; the controller refuses while the agent takes part in an
    unfinished job (C(error_code=JOB_CONFLICT) when another live controller process runs that job,
    naming it; C(error_code=AGENT_BUSY) when the job's owner is gone and it waits to be resumed).
author:
  - midcert contributors (!UNKNOWN)
options:
  name:
    description:
      - The agent name (letters, digits, C(.), C(_), C(-)); usually the MID host's inventory name.
    type: str
    required: true
  state:
    description:
      - C(present) registers the agent (or updates the given fields); C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  address:
    description:
      - C(host:port) the controller dials for the agent's gRPC over mutual TLS (C([IPv6]:port) for IPv6).
      - Required when the agent is not registered yet and I(state=present).
    type: str
  server_name:
    description:
      - The TLS name the agent's certificate must carry. The controller defaults it to I(name).
    type: str
  mid_name:
    description:
      - The MID Server's name on the instance (C(ecc_agent.name)), when it differs from I(name).
    type: str
  tags:
    description:
      - Tags for selecting agents (C(--tag) in rotation and status). An empty list removes all tags.
    type: list
    elements: str
  cluster:
    description:
      - The MID cluster the agent's MID belongs to; the controller never rotates two MIDs of one
        cluster at the same time.
    type: str
extends_documentation_fragment:
  - midcert.fleet.cli
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Compares with C(agents list) and reports what would change; runs no add or remove.
  diff_mode:
    support: full
    details: Shows the agent record before and after.
  platform:
    platforms: posix
seealso:
  - module: midcert.fleet.midcert_info
'''

EXAMPLES = r'''
- name: Register each MID host with the controller
  midcert.fleet.midcert_agent:
    name: "{{ inventory_hostname }}"
    address: "{{ ansible_host | default(inventory_hostname) }}:7443"
    server_name: "{{ inventory_hostname }}"
    mid_name: "{{ mid_name | default(inventory_hostname) }}"
    tags: [prod, "dc:{{ datacenter }}"]
    cluster: "{{ mid_cluster | default(omit) }}"
  delegate_to: midcert-controller

- name: Remove a decommissioned MID
  midcert.fleet.midcert_agent:
    name: mid-old-07
    state: absent
  delegate_to: midcert-controller
'''

RETURN = r'''
agent:
  description: The agent record after the task (C(name), C(address), C(serverName), C(midName), C(tags), C(cluster), C(createdAt)); null once removed.
  returned: success
  type: dict
  sample: {"name": "mid01", "address": "mid01.acme.example:7443", "serverName": "mid01", "midName": "mid01", "tags": ["prod"], "cluster": null}
before:
  description: The agent record before the task, null when it was not registered.
  returned: success
  type: dict
differences:
  description: The fields that differ (or would, in check mode) for I(state=present).
  returned: success
  type: list
  elements: str
  sample: [address, tags]
error_code:
  description: The controller's error code when the task failed (for example C(AGENT_INVALID), C(AGENT_BUSY)).
  returned: failure
  type: str
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
from ansible_collections.midcert.fleet.plugins.module_utils.midcert_cli import MidcertCli, MidcertCliError, midcert_argument_spec

FIELDS = (('address', 'address'), ('server_name', 'serverName'), ('mid_name', 'midName'), ('tags', 'tags'), ('cluster', 'cluster'))


def record_view(agent):
    """The fields this module manages, in a stable form (tags sorted, empty text as null)."""
    if not agent:
        return None
    return dict(
        name=agent.get('name'),
        address=agent.get('address'),
        serverName=agent.get('serverName'),
        midName=agent.get('midName') or None,
        tags=normalize_tags(agent.get('tags') or []),
        cluster=agent.get('cluster') or None,
    )


def normalize_tags(tags):
    return sorted(set(t.strip() for t in tags if t is not None and t.strip()))


def desired_value(option, value):
    if option == 'tags':
        return normalize_tags(value)
    if option in ('mid_name', 'cluster'):
        return value or None
    return value.strip() if isinstance(value, str) else value


def find(cli, name):
    data = cli.run_or_fail(['agents', 'list'])
    for agent in data.get('agents') or []:
        if agent.get('name') == name:
            return agent
    return None


def add_args(name, record):
    args = ['agents', 'add', name, '--address', record['address']]
    if record.get('serverName'):
        args += ['--server-name', record['serverName']]
    if record.get('midName'):
        args += ['--mid-name', record['midName']]
    for tag in record.get('tags') or []:
        args += ['--tag', tag]
    if record.get('cluster'):
        args += ['--cluster', record['cluster']]
    return args


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            address=dict(type='str'),
            server_name=dict(type='str'),
            mid_name=dict(type='str'),
            tags=dict(type='list', elements='str'),
            cluster=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    name = params['name']
    cli = MidcertCli(module)
    current = find(cli, name)
    before = record_view(current)

    if params['state'] == 'absent':
        result = dict(before=before, agent=None, differences=[])
        if current is None:
            module.exit_json(changed=False, msg='agent %s is not registered' % name, **result)
        if module._diff:
            result['diff'] = dict(before=before, after={})
        if module.check_mode:
            module.exit_json(changed=True, msg='would remove agent %s' % name, **result)
        data = cli.run_or_fail(['agents', 'remove', name], **result)
        module.exit_json(changed=bool(data.get('changed', True)), msg='removed agent %s' % name, **result)

    # state=present
    if current is None and not params['address']:
        module.fail_json(msg='address is required to register agent %s' % name, error_code='USAGE')
    wanted = dict(before or {'name': name, 'address': None, 'serverName': None, 'midName': None, 'tags': [], 'cluster': None})
    differences = []
    for option, key in FIELDS:
        if params[option] is None:
            continue
        value = desired_value(option, params[option])
        if current is None or value != wanted.get(key):
            if current is not None:
                differences.append(option)
            wanted[key] = value
    if current is None:
        differences = [option for option, _key in FIELDS if params[option] is not None]
        if not wanted.get('serverName'):
            wanted['serverName'] = name  # what the controller defaults it to

    result = dict(before=before, differences=differences)
    if current is not None and not differences:
        module.exit_json(changed=False, agent=current, msg='agent %s is registered as wanted' % name, **result)

    if module._diff:
        result['diff'] = dict(before=before or {}, after=wanted)
    if module.check_mode:
        verb = 'register' if current is None else 'update (%s)' % ', '.join(differences)
        module.exit_json(changed=True, agent=wanted, msg='would %s agent %s' % (verb, name), **result)

    try:
        data = cli.run(add_args(name, wanted))
    except MidcertCliError as exc:
        kwargs = exc.fail_kwargs()
        if exc.code == 'AGENT_EXISTS' and current is not None:
            kwargs['msg'] = ('%s; this controller cannot update a registered agent in place: remove it (state: absent) '
                             'and register it again to change %s' % (exc.message, ', '.join(differences)))
        kwargs.update(result)
        module.fail_json(**kwargs)
    agent = data.get('agent') or wanted
    if module._diff:
        result['diff'] = dict(before=before or {}, after=record_view(agent))
    verb = 'registered' if current is None else 'updated (%s)' % ', '.join(differences)
    module.exit_json(changed=bool(data.get('changed', True)), agent=agent, msg='%s agent %s' % (verb, name), **result)


if __name__ == '__main__':
    main()
