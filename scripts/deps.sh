#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers (openssl, keytool, cfssl, certmonger's
# local-submit, ansible-playbook). As root it runs apt-get; otherwise it names what is missing and
# the one command that installs it, and fails. `make test` and `make demo` call it first.
set -euo pipefail

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v keytool >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v cfssl >/dev/null 2>&1 || missing+=(golang-cfssl)
[ -x /usr/lib/certmonger/local-submit ] || missing+=(certmonger)
command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible-core)

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
