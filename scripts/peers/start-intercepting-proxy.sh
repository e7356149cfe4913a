#!/usr/bin/env bash
# Test peer: Debian's squid-openssl as a TLS-intercepting ("SSL inspection") proxy on
# 127.0.0.1:PORT: every CONNECT is bumped and the client sees a certificate for the target host
# minted on the fly (security_file_certgen) by the proxy's own CA, DIR/squid/intercept-ca.pem
# (CN "midcert test intercepting proxy CA" — deliberately not a known vendor name).
#
#   start-intercepting-proxy.sh DIR PORT
#
# Upstream certificates are not verified (the lab instance has a private CA). Writes DIR/squid.pid;
# started as root, squid runs as its own user `proxy` (DIR/squid/ is handed to it). Stop with
# scripts/peers/stop.sh DIR.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
dir=$(cd "$1" && pwd); port=$2
command -v squid >/dev/null 2>&1 && [ -x /usr/lib/squid/security_file_certgen ] \
  || { echo "squid with ssl-bump is not installed (Debian package squid-openssl; sudo make deps)" >&2; exit 1; }
sq="$dir/squid"
mkdir -p "$sq"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$sq/intercept-ca.key" -out "$sq/intercept-ca.pem" -days 2 \
  -subj "/O=Intercept Lab/CN=midcert test intercepting proxy CA" \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
/usr/lib/squid/security_file_certgen -c -s "$sq/ssl_db" -M 4MB >/dev/null
cat > "$sq/squid.conf" <<CONF
http_port 127.0.0.1:$port ssl-bump tls-cert=$sq/intercept-ca.pem tls-key=$sq/intercept-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=4MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $sq/ssl_db -M 4MB
sslcrtd_children 2 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
http_access allow all
tls_outgoing_options flags=DONT_VERIFY_PEER
sslproxy_cert_error allow all
pid_filename $sq/squid.pid.own
cache_log $sq/cache.log
access_log stdio:$sq/access.log
cache deny all
coredump_dir $sq
netdb_filename none
pinger_enable off
shutdown_lifetime 1 seconds
CONF
if [ "$(id -u)" -eq 0 ]; then chmod 0711 "$dir"; chown -R proxy "$sq"; fi
setsid squid -N -f "$sq/squid.conf" >"$sq/squid.out" 2>&1 </dev/null &
echo $! > "$dir/squid.pid"
for _ in $(seq 100); do
  grep -q 'Accepting SSL bumped' "$sq/cache.log" 2>/dev/null && break
  kill -0 "$(cat "$dir/squid.pid")" 2>/dev/null || break
  sleep 0.1
done
grep -q 'Accepting SSL bumped' "$sq/cache.log" 2>/dev/null \
  || { bash "$(dirname "$0")/stop.sh" "$dir"; echo "squid did not start; see $sq/cache.log and $sq/squid.out" >&2; exit 1; }
echo "intercepting proxy peer up: http://127.0.0.1:$port (squid ssl-bump, CA $sq/intercept-ca.pem)" >&2
