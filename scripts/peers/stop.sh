#!/usr/bin/env bash
# Stops the test peers started by start-kerberos.sh / start-ntlm.sh / start-proxy.sh /
# start-intercepting-proxy.sh in DIR, by the PIDs they
# recorded there (DIR/*.pid) and nothing else: TERM, then KILL after 3 s.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
pids=()
for f in "$dir"/krb5kdc.pid "$dir"/httpd.pid "$dir"/ntlm-acceptor.pid "$dir"/tinyproxy.pid "$dir"/squid.pid; do
  [ -s "$f" ] || continue
  pid=$(tr -dc '0-9' < "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill -TERM "$pid" 2>/dev/null; pids+=("$pid"); }
done
for _ in $(seq 30); do
  alive=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  [ ${#alive[@]} -eq 0 ] && exit 0
  sleep 0.1
done
for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null; done
exit 0
