#!/usr/bin/env bash
# Test peer: Debian's PostgreSQL as a throwaway, unprivileged cluster in DIR (no system service,
# no /var/run/postgresql), for the controller's PostgreSQL store tests.
#
#   start-postgres.sh DIR PORT
#
# initdb's DIR/data with superuser midcert_admin (random password in DIR/admin.password, 0600;
# DIR/pgpass holds the same for libpq), scram-sha-256 for every connection (no trust lines),
# listening on 127.0.0.1:PORT only with its unix socket in DIR/sock. TLS is on with a self-signed
# certificate made here, DIR/server.crt (CN/SAN localhost, SAN IP 127.0.0.1: use it as the CA for
# verify-full) and DIR/server.key. Durability is off (fsync, synchronous_commit, full_page_writes):
# it is a test cluster. postgres runs in the foreground of its own session (no pg_ctl fork): its
# PID is in DIR/postgres.pid, its log in DIR/postgres.log. PostgreSQL refuses to run as root, so
# started as root the cluster runs as the Debian user `postgres` (DIR must be traversable by it;
# DIR/data, DIR/sock and the key are handed to it). Stop with scripts/peers/stop.sh DIR.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
dir=$(cd "$1" && pwd); port=$2
[[ $port =~ ^[0-9]+$ ]] || { echo "start-postgres.sh: PORT must be a number, not '$port'" >&2; exit 2; }
bindir=$(pg_config --bindir 2>/dev/null || true)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ] \
  || bindir=$({ ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ] \
  || { echo "PostgreSQL is not installed (Debian package postgresql; sudo make deps)" >&2; exit 1; }
[ -e "$dir/data" ] && { echo "start-postgres.sh: $dir/data already exists; use a fresh DIR" >&2; exit 1; }
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id -u postgres >/dev/null 2>&1 || { echo "start-postgres.sh: running as root but there is no 'postgres' user to run the cluster as (Debian package postgresql; sudo make deps)" >&2; exit 1; }
  # setpriv execs (runuser forks and waits), so the PID of the background job below is the postmaster's.
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
cd "$dir"   # the postgres user may not be able to read the caller's working directory
umask 077
mkdir -m 0700 "$dir/data" "$dir/sock"
openssl rand -hex 24 > "$dir/admin.password"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -keyout "$dir/server.key" -out "$dir/server.crt" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
chmod 0600 "$dir/server.key"; chmod 0644 "$dir/server.crt"
if [ ${#as_pg[@]} -gt 0 ]; then
  chown postgres: "$dir/data" "$dir/sock" "$dir/server.key" "$dir/server.crt" "$dir/admin.password"
  "${as_pg[@]}" test -w "$dir/data" \
    || { echo "start-postgres.sh: the postgres user cannot reach $dir (make it traversable: chmod o+x, or chown postgres)" >&2; exit 1; }
fi
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U midcert_admin --pwfile="$dir/admin.password" \
  --auth=scram-sha-256 -E UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1 \
  || { echo "initdb failed; see $dir/initdb.log: $(tail -1 "$dir/initdb.log" 2>/dev/null)" >&2; exit 1; }
cat > "$dir/data/pg_hba.conf" <<HBA
# midcert test peer: passwords (SCRAM) for everyone, TLS optional (tests pick it per connection).
local all all                scram-sha-256
host  all all 127.0.0.1/32   scram-sha-256
host  all all ::1/128        scram-sha-256
HBA
cat >> "$dir/data/postgresql.conf" <<CONF

# midcert test peer (scripts/peers/start-postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 100
password_encryption = scram-sha-256
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
logging_collector = off
log_destination = 'stderr'
CONF
setsid "${as_pg[@]}" "$bindir/postgres" -D "$dir/data" >"$dir/postgres.log" 2>&1 </dev/null &
echo $! > "$dir/postgres.pid"
pid=$(cat "$dir/postgres.pid")
ready=
for _ in $(seq 300); do   # 300 x 50 ms = 15 s
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 && { ready=1; break; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$ready" ]; then
  bash "$(dirname "$0")/stop.sh" "$dir"
  why=$(grep -E 'FATAL|PANIC' "$dir/postgres.log" 2>/dev/null | tail -1 || true); [ -n "$why" ] || why=$(tail -1 "$dir/postgres.log" 2>/dev/null || true)
  echo "postgres did not start; see $dir/postgres.log: $why" >&2; exit 1
fi
# The postmaster's own record wins (it is the same process unless a wrapper forked).
own=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null | tr -dc '0-9')
[ -n "$own" ] && [ "$own" != "$pid" ] && echo "$own" > "$dir/postgres.pid"
printf '127.0.0.1:%s:*:midcert_admin:%s\n' "$port" "$(cat "$dir/admin.password")" > "$dir/pgpass"
chmod 0600 "$dir/pgpass"
echo "postgres peer up: postgresql://midcert_admin@127.0.0.1:$port/postgres" >&2
