# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)
"""Options shared by every midcert.fleet module: where the controller CLI is and which data dir."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  midcert_bin:
    description:
      - The midcert controller CLI to run, as a path or as a command name looked up on C(PATH).
      - When not set, the environment variable C(MIDCERT_BIN) of the process that runs the module
        is used, else C(midcert) on C(PATH).
      - The module runs on the host it executes on, so run it on the controller host
        (C(delegate_to) the controller, or C(connection=local)).
    type: str
  data_dir:
    description:
      - The controller data directory, passed as C(--data-dir).
      - When not set the CLI uses C($MIDCERT_DATA_DIR), else C(~/.midcert) of the user the module
        runs as.
    type: path
notes:
  - The module runs C(midcert ... --json) with an argument list (never through a shell) and reads
    the one JSON document it prints. A failure of the CLI fails the task with the controller's
    C(error_code) (for example C(AGENT_NOT_FOUND), C(INSTANCE_UNAVAILABLE)) and its message in C(msg).
  - All modules of this collection are in the action group C(midcert.fleet.midcert), so
    C(module_defaults) with C(group/midcert.fleet.midcert) can set C(midcert_bin) and C(data_dir) once.
'''
