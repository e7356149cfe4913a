#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: midcert_ca_chain
short_description: Make a CA chain the instance's active chain for MID client certificates
version_added: 0.1.0
description:
  - Ensures that the CA chain in I(chain) is the chain the ServiceNow instance trusts for MID
    Server client certificates, through the midcert controller on the host the module runs on.
  - The module compares the SHA-256 of the first certificate in I(chain) with
    C(instance.caChain.sha256) from C(midcert status --json). When they match, nothing is done
    (C(changed=false)). Otherwise it runs C(midcert rotate-ca --chain PATH --json) - the new chain is
    published next to the old one, every MID is moved to a certificate from the new CA, and the
    old chain is retired.
  - The fingerprint is computed with the Python C(cryptography) package when it is importable on
    the host, else with C(openssl x509 -noout -fingerprint -sha256).
  - In check mode nothing is published; the module reports C(changed=true) and "would rotate" when
    the chains differ.
author:
  - midcert contributors (!UNKNOWN)
options:
  chain:
    description:
      - PEM file on the host the module runs on (the controller host) with the new CA chain, the
        certificate that signs MID certificates first, then its issuers.
    type: path
    required: true
  state:
    description:
      - C(present) makes I(chain) the active chain.
    type: str
    choices: [present]
    default: present
extends_documentation_fragment:
  - midcert.fleet.cli
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Compares fingerprints and reports "would rotate"; runs nothing that changes state.
  diff_mode:
    support: full
    details: Shows the active chain's SHA-256 and subject before and after.
  platform:
    platforms: posix
requirements:
  - the Python C(cryptography) package, or the C(openssl) command, on the host the module runs on
seealso:
  - module: midcert.fleet.midcert_info
'''

EXAMPLES = r'''
- name: Copy the new chain to the controller
  ansible.builtin.copy:
    src: files/acme-issuing-2027.pem
    dest: /var/lib/midcert/chains/acme-issuing-2027.pem
    mode: "0644"
  delegate_to: midcert-controller
  run_once: true

- name: Rotate the instance and every MID to the new CA
  midcert.fleet.midcert_ca_chain:
    chain: /var/lib/midcert/chains/acme-issuing-2027.pem
  delegate_to: midcert-controller
  run_once: true
  register: ca

- name: Show the outage per MID
  ansible.builtin.debug:
    var: ca.outage_seconds
'''

RETURN = r'''
sha256:
  description: SHA-256 of the first certificate of I(chain) (64 lower-case hex digits).
  returned: success
  type: str
  sample: 5f1c0c1a...
subject:
  description: Subject of the first certificate of I(chain), when it could be read.
  returned: success
  type: str
  sample: CN=Acme Issuing CA 2027,O=Acme
previous_sha256:
  description: SHA-256 of the chain the instance had before (null when none).
  returned: success
  type: str
fingerprint_method:
  description: How the fingerprint was computed.
  returned: success
  type: str
  choices: [cryptography, openssl]
job_id:
  description: The controller's job id for the CA rotation.
  returned: when rotated
  type: str
swapped_at:
  description: When the instance switched to the new chain (ISO-8601 UTC).
  returned: when rotated
  type: str
results:
  description: One Result per MID moved to the new CA.
  returned: when rotated, and on failure
  type: list
  elements: dict
outage_seconds:
  description: Seconds each MID was not Up during the rotation, by agent name.
  returned: when rotated
  type: dict
  sample: {"mid01": 3.2}
error_code:
  description: The controller's error code when the task failed.
  returned: failure
  type: str
  sample: CHAIN_INVALID
chain:
  description: The I(chain) path, when it could not be read as a PEM certificate chain.
  returned: when I(chain) is not a readable PEM chain
  type: str
  sample: files/acme-issuing-2027.pem
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
    MidcertCli, midcert_argument_spec, normalize_sha256, failed_results, describe_failures,
)
from ansible_collections.midcert.fleet.plugins.module_utils.midcert_pem import PemError, first_certificate_sha256


def main():
    module = AnsibleModule(
        argument_spec=midcert_argument_spec(
            chain=dict(type='path', required=True),
            state=dict(type='str', choices=['present'], default='present'),
        ),
        supports_check_mode=True,
    )
    chain = module.params['chain']
    try:
        sha, subject, method = first_certificate_sha256(module, chain)
    except PemError as exc:
        module.fail_json(msg=exc.message, error_code=exc.code, chain=chain)
    sha = normalize_sha256(sha)

    cli = MidcertCli(module)
    status = cli.run_or_fail(['status'])
    instance = status.get('instance')
    if not instance:
        cli.fail('INSTANCE_NOT_CONFIGURED', 'the controller has no instance configured (midcert init --instance-url ...)')
    active = instance.get('caChain') or {}
    previous = normalize_sha256(active.get('sha256'))
    result = dict(chain=chain, sha256=sha, subject=subject, previous_sha256=previous, fingerprint_method=method)
    before = {'sha256': previous, 'subject': active.get('subject'), 'not_after': active.get('notAfter')}
    after = {'sha256': sha, 'subject': subject}

    if previous == sha:
        result['msg'] = 'the instance already uses this chain (%s)' % (subject or sha)
        module.exit_json(changed=False, **result)

    if module._diff:
        result['diff'] = dict(before=before, after=after)
    if module.check_mode:
        result['msg'] = 'would rotate the instance CA chain from %s to %s' % (active.get('subject') or previous or 'none', subject or sha)
        module.exit_json(changed=True, **result)

    data = cli.run_or_fail(['rotate-ca', '--chain', chain], allow_partial=True, **result)
    results = data.get('results') or []
    failed = failed_results(results)
    result.update(job_id=data.get('jobId'), swapped_at=data.get('swappedAt'), results=results,
                  outage_seconds=data.get('outageSeconds') or {})
    if failed or data.get('ok') is False:
        first = (failed[0].get('error') or {}) if failed else {}
        module.fail_json(
            msg='the CA rotation did not complete: %s' % (describe_failures(failed) if failed else 'the controller reported ok=false'),
            error_code=first.get('code') or 'CA_ROTATION_FAILED', changed=bool(data.get('swappedAt')), output=data, **result)
    result['msg'] = 'rotated the instance CA chain to %s; %d MID(s) moved' % (subject or sha, len(results))
    module.exit_json(changed=True, **result)


if __name__ == '__main__':
    main()
