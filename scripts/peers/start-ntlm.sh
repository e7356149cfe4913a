#!/usr/bin/env bash
# Test peer: test/peers/ntlm-acceptor (our Go program on Debian's go-ntlm), an IIS-like NTLMv2
# front reverse-proxying /certsrv to the lab ADCS. Built offline in GOPATH mode from
# /usr/share/gocode (golang-github-thomsonreuterseikon-go-ntlm-dev) into DIR.
#
#   start-ntlm.sh DIR HTTP_PORT UPSTREAM_ORIGIN UPSTREAM_CA_PEM UPSTREAM_USER:PASSWORD
#
# The NTLM user is LAB\mid-enroll with the password written to DIR/ntlm.password. Writes
# DIR/ntlm-acceptor.pid and DIR/peers-ntlm.env. Stop with scripts/peers/stop.sh DIR.
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 DIR HTTP_PORT UPSTREAM_ORIGIN UPSTREAM_CA UPSTREAM_USER:PASSWORD" >&2; exit 2; }
dir=$(cd "$1" && pwd); http_port=$2; upstream=$3; upstream_ca=$4; upstream_basic=$5
src=$(cd "$(dirname "$0")/../../test/peers/ntlm-acceptor" && pwd)
printf 'ntlm-%s\n' "$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" > "$dir/ntlm.password"
chmod 0600 "$dir/ntlm.password"
trap 'bash "$(dirname "$0")/stop.sh" "$dir"' ERR

# The Go build cache outlives DIR so a second run builds in well under a second.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/midcert-go-build"
(cd "$src" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache" GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
  go build -o "$dir/ntlm-acceptor" .)

setsid "$dir/ntlm-acceptor" -listen "127.0.0.1:$http_port" -port-file "$dir/ntlm.port" -upstream "$upstream" \
  -upstream-ca "$upstream_ca" -upstream-basic "$upstream_basic" -user mid-enroll -domain LAB \
  -password-file "$dir/ntlm.password" >"$dir/ntlm-acceptor.log" 2>&1 </dev/null &
echo $! > "$dir/ntlm-acceptor.pid"
for _ in $(seq 50); do [ -s "$dir/ntlm.port" ] && break; sleep 0.1; done
[ -s "$dir/ntlm.port" ] || { bash "$(dirname "$0")/stop.sh" "$dir"; echo "ntlm-acceptor did not start; see $dir/ntlm-acceptor.log" >&2; exit 1; }
cat > "$dir/peers-ntlm.env" <<ENV
NTLM_URL=http://localhost:$http_port/certsrv
NTLM_USER=LAB\\mid-enroll
NTLM_PASSWORD_FILE=$dir/ntlm.password
ENV
echo "ntlm peer up: http://localhost:$http_port/certsrv" >&2
