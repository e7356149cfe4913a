# -*- coding: utf-8 -*-
# A stdout callback for test/ansible/ansible.test.ts: every task result and the stats as one JSON
# document on stdout. ansible-core alone has no JSON callback (ansible.posix.json is not in it).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = '''
name: midcert_test_json
type: stdout
short_description: task results as one JSON document (tests only)
description:
  - Prints {"plays":[{"play":{"name"},"tasks":[{"task":{"name"},"hosts":{HOST: RESULT}}]}],"stats":{HOST:{...}}}.
'''

import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'midcert_test_json'

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display)
        self.plays = []
        self.tasks = {}

    def v2_playbook_on_play_start(self, play):
        self.plays.append({'play': {'name': play.get_name()}, 'tasks': []})

    def _start(self, task):
        entry = {'task': {'name': task.get_name(), 'action': task.action}, 'hosts': {}}
        if not self.plays:
            self.plays.append({'play': {'name': ''}, 'tasks': []})
        self.plays[-1]['tasks'].append(entry)
        self.tasks[task._uuid] = entry

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _record(self, result, **extra):
        entry = self.tasks.get(result._task._uuid)
        if entry is None:
            self._start(result._task)
            entry = self.tasks[result._task._uuid]
        data = dict((k, v) for k, v in result._result.items() if not k.startswith('_ansible_'))
        data.update(extra)
        entry['hosts'][result._host.get_name()] = data

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True, ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        summary = dict((host, stats.summarize(host)) for host in sorted(stats.processed.keys()))
        self._display.display(json.dumps({'plays': self.plays, 'stats': summary}, cls=AnsibleJSONEncoder, indent=1, sort_keys=True))
