#!/usr/bin/env bash
# Stops the test peers started by start-kerberos.sh / start-ntlm.sh / start-proxy.sh /
# start-intercepting-proxy.sh / start-postgres.sh in DIR, by the PIDs they
# recorded there (DIR/*.pid) and nothing else: TERM (INT for postgres: its fast shutdown), then
# KILL after 3 s. A process that has exited but is not yet reaped (a zombie: the peers are
# reparented to init, which may reap late) counts as stopped.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
pids=()
running() { kill -0 "$1" 2>/dev/null && [ "$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for f in "$dir"/krb5kdc.pid "$dir"/httpd.pid "$dir"/ntlm-acceptor.pid "$dir"/tinyproxy.pid "$dir"/squid.pid "$dir"/postgres.pid; do
  [ -s "$f" ] || continue
  pid=$(tr -dc '0-9' < "$f")
  sig=TERM; [ "${f##*/}" = postgres.pid ] && sig=INT
  [ -n "$pid" ] && running "$pid" && { kill -"$sig" "$pid" 2>/dev/null; pids+=("$pid"); }
done
for _ in $(seq 30); do
  alive=()
  for pid in "${pids[@]}"; do running "$pid" && alive+=("$pid"); done
  [ ${#alive[@]} -eq 0 ] && exit 0
  sleep 0.1
done
for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null; done
exit 0
