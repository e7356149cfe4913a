# -*- coding: utf-8 -*-
# Copyright: midcert contributors
# Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0)
"""
Fingerprints of PEM certificates for the midcert.fleet modules.

The SHA-256 is taken over the DER of the first certificate in a file, the same value the
controller reports as ``instance.caChain.sha256``. It is computed with the ``cryptography``
package when it can be imported, else with ``openssl x509 -noout -fingerprint -sha256`` run with
an argument list.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    HAS_CRYPTOGRAPHY = True
except Exception:  # ImportError, or a broken install: fall back to openssl
    HAS_CRYPTOGRAPHY = False

PEM_CERT = re.compile(r'-----BEGIN CERTIFICATE-----\s*[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----')


class PemError(Exception):
    def __init__(self, code, message):
        super(PemError, self).__init__(message)
        self.code = code
        self.message = message


def read_pem_certificates(path, max_bytes=4 * 1024 * 1024):
    """The PEM certificate blocks of a file, in order."""
    try:
        with open(path, 'rb') as handle:
            raw = handle.read(max_bytes + 1)
    except (IOError, OSError) as exc:
        raise PemError('INPUT_UNREADABLE', 'cannot read %s: %s' % (path, exc))
    if len(raw) > max_bytes:
        raise PemError('INPUT_TOO_LARGE', '%s is larger than %d bytes' % (path, max_bytes))
    text = raw.decode('latin-1')
    blocks = PEM_CERT.findall(text)
    if not blocks:
        raise PemError('PEM_MALFORMED', '%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)' % path)
    return blocks


def first_certificate_sha256(module, path):
    """
    (sha256, subject, method) of the first certificate in the PEM file ``path``.

    ``method`` is ``cryptography`` or ``openssl``; ``subject`` may be None with openssl.
    """
    blocks = read_pem_certificates(path)
    if HAS_CRYPTOGRAPHY:
        try:
            cert = x509.load_pem_x509_certificate(blocks[0].encode('ascii'))
        except Exception as exc:
            raise PemError('CERT_MALFORMED', 'the first certificate in %s cannot be parsed: %s' % (path, exc))
        return cert.fingerprint(hashes.SHA256()).hex(), cert.subject.rfc4514_string(), 'cryptography'
    return _openssl_sha256(module, path)


def _openssl_sha256(module, path):
    openssl = module.get_bin_path('openssl', required=False)
    if not openssl:
        raise PemError('OPENSSL_NOT_FOUND', 'neither the Python cryptography package nor openssl is available on this host '
                                            'to fingerprint %s' % path)
    # openssl x509 reads the first certificate of the file only, which is what we want.
    rc, out, err = module.run_command([openssl, 'x509', '-noout', '-fingerprint', '-sha256', '-in', path], check_rc=False)
    match = re.search(r'Fingerprint\s*=\s*([0-9A-Fa-f:]+)', out or '')
    if rc != 0 or not match:
        raise PemError('CERT_MALFORMED', 'openssl cannot read the first certificate in %s: %s' % (path, (err or out or '').strip()))
    sha = match.group(1).replace(':', '').lower()
    subject = None
    rc, out, err = module.run_command([openssl, 'x509', '-noout', '-subject', '-nameopt', 'RFC2253', '-in', path], check_rc=False)
    if rc == 0 and out.strip().startswith('subject='):
        subject = out.strip()[len('subject='):].strip()
    return sha, subject, 'openssl'
