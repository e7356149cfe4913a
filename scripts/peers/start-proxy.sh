#!/usr/bin/env bash
# Test peer: Debian's tinyproxy, a forwarding HTTP proxy with CONNECT and proxy Basic auth, on
# 127.0.0.1:PORT with its own config in DIR (no daemon fork: -d, the PID recorded by us).
#
#   start-proxy.sh DIR PORT USER PASSWORD_FILE
#
# Writes DIR/tinyproxy.conf (0600: it holds the BasicAuth line), DIR/tinyproxy.pid and
# DIR/tinyproxy.log. Started as root it drops to nobody:nogroup after reading its config.
# Stop with scripts/peers/stop.sh DIR.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 DIR PORT USER PASSWORD_FILE" >&2; exit 2; }
dir=$(cd "$1" && pwd); port=$2; user=$3; password=$(tr -d '\r\n' < "$4")
command -v tinyproxy >/dev/null 2>&1 || { echo "tinyproxy is not installed (Debian package tinyproxy; sudo make deps)" >&2; exit 1; }
umask 077
{
  echo "Port $port"
  echo "Listen 127.0.0.1"
  echo "Timeout 30"
  echo "MaxClients 64"
  echo "LogLevel Info"
  echo "BasicAuth $user $password"
  if [ "$(id -u)" -eq 0 ]; then echo "User nobody"; echo "Group nogroup"; fi
} > "$dir/tinyproxy.conf"
setsid tinyproxy -d -c "$dir/tinyproxy.conf" >"$dir/tinyproxy.log" 2>&1 </dev/null &
echo $! > "$dir/tinyproxy.pid"
for _ in $(seq 50); do
  grep -q 'Accepting connections' "$dir/tinyproxy.log" 2>/dev/null && break
  kill -0 "$(cat "$dir/tinyproxy.pid")" 2>/dev/null || break
  sleep 0.1
done
grep -q 'Accepting connections' "$dir/tinyproxy.log" 2>/dev/null \
  || { bash "$(dirname "$0")/stop.sh" "$dir"; echo "tinyproxy did not start; see $dir/tinyproxy.log: $(tail -1 "$dir/tinyproxy.log" 2>/dev/null)" >&2; exit 1; }
echo "proxy peer up: http://127.0.0.1:$port (tinyproxy, Basic auth user $user)" >&2
