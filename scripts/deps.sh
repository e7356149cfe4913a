#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers (openssl, keytool, cfssl, certmonger's
# local-submit, ansible-playbook, Kerberos + Apache + go-ntlm for ca.auth, PostgreSQL). As root it runs
# apt-get; otherwise it names what is missing and the one command that installs it, and fails. `make test` and `make demo` call it first.
set -euo pipefail

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v keytool >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v cfssl >/dev/null 2>&1 || missing+=(golang-cfssl)
[ -x /usr/lib/certmonger/local-submit ] || missing+=(certmonger)
command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible-core)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v ansible-lint >/dev/null 2>&1 || missing+=(ansible-lint)
/usr/bin/python3 -c 'import voluptuous' >/dev/null 2>&1 || missing+=(python3-voluptuous)  # ansible-test validate-modules
# ca.auth negotiate / ntlm peers (test/peers/, scripts/peers/): MIT KDC, Apache + mod_auth_gssapi,
# the go-ntlm acceptor's toolchain and library, and libkrb5-dev for npm kerberos (built by npm ci,
# which is why `make test` runs this script first).
[ -x /usr/sbin/krb5kdc ] || missing+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || missing+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || missing+=(krb5-user)
[ -x /usr/sbin/apache2 ] || missing+=(apache2-bin)
[ -f /usr/lib/apache2/modules/mod_auth_gssapi.so ] || missing+=(libapache2-mod-auth-gssapi)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/ThomsonReutersEikon/go-ntlm/ntlm ] || missing+=(golang-github-thomsonreuterseikon-go-ntlm-dev)
command -v krb5-config >/dev/null 2>&1 && [ -f /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
command -v make >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || missing+=(make g++)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Proxy peers (scripts/peers/start-proxy.sh, start-intercepting-proxy.sh): tinyproxy, squid with ssl-bump.
command -v tinyproxy >/dev/null 2>&1 || missing+=(tinyproxy)
[ -x /usr/lib/squid/security_file_certgen ] || missing+=(squid-openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)  # PostgreSQL peer (scripts/peers/start-postgres.sh): initdb + postgres for the controller store tests
command -v wine >/dev/null 2>&1 && [ -x /usr/lib/wine/wine64 ] || missing+=(wine wine64)  # test/windows/: the Windows exe under wine 8
[ -d /usr/lib/python3/dist-packages/ansible_collections/ansible/windows ] || missing+=(ansible)  # ansible.windows for the role's Windows tasks (lint, syntax-check)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "midcert: missing test peers (Debian packages: ${missing[*]}); install them with: sudo make deps" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "midcert: missing test peers (Debian packages: ${missing[*]}) and no apt-get here; install them with your package manager" >&2
  exit 1
fi
echo "midcert: installing test peers: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
