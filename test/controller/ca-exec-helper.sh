#!/usr/bin/env bash
# A scripted certmonger CA helper for test/controller/ca-exec.test.ts. It speaks the protocol of
# certmonger's doc/submit.txt: CERTMONGER_OPERATION=SUBMIT|POLL|FETCH-ROOTS, CERTMONGER_CSR,
# CERTMONGER_CA_COOKIE; exit 0 issued (PEM on stdout), 1 wait (cookie), 2 rejected, 3 unreachable,
# 4 under-configured, 5 wait with delay ("seconds\ncookie"), 6 unsupported, 16 SCEP, 17 rekey.
#
# Usage: ca-exec-helper.sh MODE DIR   (DIR holds intermediate.pem/.key and chain.pem of a lab CA)
set -u
mode="$1"
dir="$2"
op="${CERTMONGER_OPERATION:-}"

sign() { # signs $CERTMONGER_CSR with the lab intermediate; prints the leaf (PEM)
  local work
  work="$(mktemp -d "$dir/sign.XXXXXX")"
  printf '%s\n' "$CERTMONGER_CSR" > "$work/req.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "${1:-clientAuth}" > "$work/ext.cnf"
  openssl x509 -req -in "$work/req.csr" -CA "$dir/intermediate.pem" -CAkey "$dir/intermediate.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 30 -extfile "$work/ext.cnf" 2>"$work/err" || { cat "$work/err" >&2; exit 3; }
  rm -rf "$work"
}

if [ "$op" = "FETCH-ROOTS" ]; then
  [ "$mode" = "issue-leaf" ] && exit 6 # this helper cannot hand out its CA certificates
  printf 'Lab Root\n'; cat "$dir/chain.pem"; exit 0
fi
[ "$op" = "SUBMIT" ] || [ "$op" = "POLL" ] || exit 6

case "$mode" in
  issue-chain) sign; cat "$dir/chain.pem"; exit 0 ;;
  issue-leaf) sign; exit 0 ;;
  issue-server) sign serverAuth; exit 0 ;;
  wrong-key) cat "$dir/other-leaf.pem"; exit 0 ;;
  wait)
    if [ "$op" = "SUBMIT" ]; then echo "req-1"; exit 1; fi
    [ -n "${CERTMONGER_CSR:-}" ] || { echo "POLL without CERTMONGER_CSR"; exit 4; }
    printf '%s|' "$CERTMONGER_CA_COOKIE" >> "$dir/polls.log"
    case "$CERTMONGER_CA_COOKIE" in
      req-1*) printf '7\nreq-2\n'; exit 5 ;;
      req-2*) sign; exit 0 ;;
      *) echo "unknown cookie"; exit 2 ;;
    esac ;;
  reject) echo "Request denied: subject not allowed by policy"; exit 2 ;;
  unreachable) echo "Server at https://ca.example.com: connection refused"; exit 3 ;;
  unconfigured) echo "no CA URL configured"; exit 4 ;;
  unsupported) exit 6 ;;
  scep) exit 16 ;;
  rekey) exit 17 ;;
  odd) echo "what is this"; exit 9 ;;
  garbage) echo "hello"; exit 0 ;;
  no-cookie) exit 1 ;;
  bad-delay) printf 'soon\nreq-1\n'; exit 5 ;;
  slow) exec sleep 10 ;;
  flood) head -c 2000000 /dev/zero | tr '\0' 'a'; exit 0 ;;
  env)
    mkdir -p "$dir/env"
    for name in OPERATION CSR REQ_SUBJECT SPKI KEY_TYPE CA_PROFILE CA_COOKIE; do
      var="CERTMONGER_$name"
      if [ -n "${!var+set}" ]; then printf '%s' "${!var}" > "$dir/env/$name"; else rm -f "$dir/env/$name"; fi
    done
    echo "recorded"; exit 2 ;;
  *) echo "unknown mode $mode"; exit 4 ;;
esac
