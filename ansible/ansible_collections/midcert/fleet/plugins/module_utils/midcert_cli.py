# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)
"""
Runs the midcert controller CLI for the midcert.fleet modules.

The contract is docs/controller-cli.md: ``midcert [--data-dir D] <command> ... --json`` prints
exactly one JSON document on stdout; an error prints ``midcert: error [CODE] message`` on stderr
and, with ``--json``, ``{"ok":false,"error":{"code","message"}}`` on stdout. Exit codes: 0 success,
1 the operation ran and some part failed, 2 usage, 3 bad input/config, 4 I/O, 5 a peer is
unreachable, 70 internal.

Every command is run with an argument list (``module.run_command([...])``), never a shell string.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

ERROR_LINE = re.compile(r'^[A-Za-z0-9_.-]+: error \[([A-Za-z0-9_]+)\] (.*)$')

EXIT_MEANING = {
    1: 'the operation ran and some part failed',
    2: 'bad command-line usage',
    3: 'bad input or configuration',
    4: 'a file cannot be read or written',
    5: 'a peer (instance, CA or agent) is unreachable',
    70: 'internal error in midcert',
}

# Used only when the CLI printed neither a JSON error nor an error line (a crash, a wrong binary).
EXIT_FALLBACK_CODE = {
    1: 'OPERATION_FAILED',
    2: 'USAGE',
    3: 'INPUT_INVALID',
    4: 'IO_FAILED',
    5: 'PEER_UNREACHABLE',
    70: 'INTERNAL',
}

# Codes the modules themselves raise (they never reach the controller).
MIDCERT_NOT_FOUND = 'MIDCERT_NOT_FOUND'
CLI_OUTPUT_INVALID = 'CLI_OUTPUT_INVALID'
CLI_NOT_RUNNABLE = 'CLI_NOT_RUNNABLE'


def midcert_argument_spec(**extra):
    """The options every module takes (see the midcert.fleet.cli doc fragment), plus ``extra``."""
    spec = dict(
        midcert_bin=dict(type='str'),
        data_dir=dict(type='path'),
    )
    spec.update(extra)
    return spec


def normalize_sha256(value):
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons, spaces and case ignored)."""
    if value is None:
        return None
    text = re.sub(r'[^0-9A-Fa-f]', '', str(value)).lower()
    return text or None


def parse_error_line(stderr):
    """The last ``prog: error [CODE] message`` line of stderr as (code, message), else (None, None)."""
    code, message = None, None
    for line in (stderr or '').splitlines():
        match = ERROR_LINE.match(line.strip())
        if match:
            code, message = match.group(1), match.group(2)
    return code, message


def parse_json_document(stdout):
    """The JSON document on stdout, or None. Tolerates stray lines before a final JSON line."""
    text = (stdout or '').strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith('{'):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def is_error_document(data):
    """True for the CLI's ``{"ok":false,"error":{"code","message"}}`` error document."""
    return isinstance(data, dict) and data.get('ok') is False and isinstance(data.get('error'), dict) \
        and 'results' not in data and 'agents' not in data and 'checks' not in data


class MidcertCliError(Exception):
    """A failed CLI run, carrying what fail_json needs."""

    def __init__(self, code, message, rc=None, argv=None, stdout=None, stderr=None, data=None):
        super(MidcertCliError, self).__init__(message)
        self.code = code
        self.message = message
        self.rc = rc
        self.argv = argv
        self.stdout = stdout
        self.stderr = stderr
        self.data = data

    def fail_kwargs(self):
        kwargs = dict(msg=self.message, error_code=self.code)
        if self.rc is not None:
            kwargs['rc'] = self.rc
            if self.rc in EXIT_MEANING:
                kwargs['exit_meaning'] = EXIT_MEANING[self.rc]
        if self.argv is not None:
            kwargs['cmd'] = self.argv
        if self.stderr:
            kwargs['stderr'] = self.stderr
        if self.data is not None:
            kwargs['output'] = self.data
        elif self.stdout:
            kwargs['stdout'] = self.stdout
        return kwargs


class MidcertCli(object):
    """The controller CLI as the modules use it: locate, run with --json, parse, map failures."""

    def __init__(self, module):
        self.module = module
        self.data_dir = module.params.get('data_dir')
        self.commands = []
        self.bin = self._locate(module.params.get('midcert_bin') or os.environ.get('MIDCERT_BIN') or None)

    def _locate(self, wanted):
        name = wanted or 'midcert'
        if os.sep in name or (os.altsep and os.altsep in name):
            path = os.path.abspath(os.path.expanduser(name))
            if not os.path.isfile(path):
                self.fail(MIDCERT_NOT_FOUND, 'the midcert CLI %s does not exist on this host' % path)
            if not os.access(path, os.X_OK):
                self.fail(MIDCERT_NOT_FOUND, 'the midcert CLI %s is not executable' % path)
            return path
        found = self.module.get_bin_path(name, required=False)
        if not found:
            self.fail(MIDCERT_NOT_FOUND, 'cannot find the midcert CLI "%s" on PATH on this host; set midcert_bin '
                      '(or MIDCERT_BIN), and run the task on the controller host (delegate_to)' % name)
        return found

    def argv(self, args):
        argv = [self.bin]
        if self.data_dir:
            argv += ['--data-dir', self.data_dir]
        argv += [str(a) for a in args]
        if '--json' not in argv:
            argv.append('--json')
        return argv

    def run(self, args, allow_partial=False):
        """
        Runs one command and returns its JSON document (a dict).

        ``allow_partial``: exit 1 ("the operation ran and some part failed") with a full result
        document is returned to the caller, which reports per-MID failures itself. Any other
        failure raises MidcertCliError.
        """
        argv = self.argv(args)
        self.commands.append(argv)
        try:
            rc, out, err = self.module.run_command(argv, check_rc=False, environ_update={'NO_COLOR': '1'})
        except Exception as exc:  # run_command raises only for things like a missing interpreter
            raise MidcertCliError(CLI_NOT_RUNNABLE, 'cannot run %s: %s' % (self.bin, exc), argv=argv)
        data = parse_json_document(out)
        if rc == 0 and isinstance(data, dict) and not is_error_document(data):
            return data
        if rc == 1 and allow_partial and isinstance(data, dict) and not is_error_document(data):
            return data
        raise self._error(rc, out, err, data, argv)

    def _error(self, rc, out, err, data, argv):
        code, message = None, None
        if is_error_document(data):
            code = data['error'].get('code')
            message = data['error'].get('message')
        line_code, line_message = parse_error_line(err)
        code = code or line_code
        message = message or line_message
        if rc == 0:
            # Exit 0 but no usable document: a wrong binary or a contract break.
            code = code or CLI_OUTPUT_INVALID
            message = message or '%s printed no JSON document on stdout (is this the midcert controller CLI?)' % self.bin
        else:
            code = code or EXIT_FALLBACK_CODE.get(rc, 'CLI_FAILED')
            if not message:
                tail = [line for line in (err or '').splitlines() if line.strip()][-3:]
                message = '%s exited %s (%s)%s' % (
                    os.path.basename(self.bin), rc, EXIT_MEANING.get(rc, 'unexpected exit code'),
                    (': ' + ' | '.join(tail)) if tail else '')
        return MidcertCliError(code, message, rc=rc, argv=argv, stdout=out, stderr=err,
                               data=data if isinstance(data, dict) else None)

    def run_or_fail(self, args, allow_partial=False, **extra):
        """Like run() but fails the task (error_code, msg) on a CLI failure."""
        try:
            return self.run(args, allow_partial=allow_partial)
        except MidcertCliError as exc:
            kwargs = exc.fail_kwargs()
            kwargs.update(extra)
            self.module.fail_json(**kwargs)

    def fail(self, code, msg, **kwargs):
        self.module.fail_json(msg=msg, error_code=code, **kwargs)


def status_certificate_summary(agent_status):
    """The parts of an AgentStatus certificate that tasks compare and show."""
    cert = (agent_status or {}).get('certificate') or None
    if not cert:
        return None
    return dict(
        subject=cert.get('subject'),
        issuer=cert.get('issuer'),
        sha256=cert.get('sha256'),
        not_after=cert.get('notAfter'),
        days_left=cert.get('daysLeft'),
    )


def failed_results(results):
    """Results whose state is ``failed``."""
    return [r for r in (results or []) if isinstance(r, dict) and r.get('state') == 'failed']


def describe_failures(failed, limit=5):
    """``mid02 [HEALTH_CHECK_FAILED] message (step verify); ...`` for the first ``limit`` failures."""
    parts = []
    for r in failed[:limit]:
        err = r.get('error') or {}
        step = r.get('failedStep')
        parts.append('%s [%s] %s%s' % (r.get('name'), err.get('code') or 'FAILED', err.get('message') or 'failed',
                                       (' (step %s)' % step) if step else ''))
    if len(failed) > limit:
        parts.append('and %d more' % (len(failed) - limit))
    return '; '.join(parts)
