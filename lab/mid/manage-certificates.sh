#!/bin/bash
# manage-certificates.sh — midcert lab stand-in for the ServiceNow MID Server script of the same
# name (agent/bin/scripts/manage-certificates.sh). The vendor script runs a Java class from a
# relative classpath; this one does the same work with the real `keytool` and `openssl`, and fails
# the ways the vendor documents (docs/lab/mid.md lists every behaviour and where it comes from).
#
# Run it from the MID's agent/ directory:
#   bin/scripts/manage-certificates.sh -a ALIAS FILE   import a PEM bundle (certs + one PKCS#8 key)
#   bin/scripts/manage-certificates.sh -g ALIAS        show the entry under ALIAS
#   bin/scripts/manage-certificates.sh -l              list aliases
#   bin/scripts/manage-certificates.sh -d ALIAS        delete ALIAS
#   bin/scripts/manage-certificates.sh -r              delete every entry but defaultsecuritykeypairhandle
#   bin/scripts/manage-certificates.sh -m              mutual auth: drop the credentials from config.xml
#   bin/scripts/manage-certificates.sh -b USER PASS    basic auth: put the credentials back
#
# Store password: the vendor's Java reads it from the MID's own configuration; this stand-in reads
# MIDCERT_LAB_STOREPASS and falls back to the JKS default "changeit". It never prints a password or
# a key, and hands passwords to keytool/openssl through the environment, not the command line.

# Debian's sh is dash; people run this script as `sh bin/scripts/...` as they do the vendor's.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi

set -u
set -o pipefail
umask 077

readonly MAIN_CLASS='com.service_now.mid.security.ManageCertificates'
readonly DEFAULT_ALIAS='defaultsecuritykeypairhandle'
readonly MAX_BUNDLE_BYTES=1048576
export MIDCERT_LAB_STOREPASS="${MIDCERT_LAB_STOREPASS:-changeit}"

usage() {
  cat >&2 <<'EOF'
Usage: manage-certificates.sh [option]
  -a <alias> <file>     Add the certificate chain and private key in <file> (PEM bundle:
                        leaf, intermediates, root, then one PKCS#8 private key) under <alias>
  -g <alias>            Display the certificate details for <alias>
  -l                    List all aliases in the key store
  -d <alias>            Delete the entry for <alias>
  -r                    Remove all entries except DefaultSecurityKeyPairHandle
  -m                    Enable mutual authentication (removes the instance user name and password
                        from config.xml)
  -b <user> <password>  Restore basic authentication with the given instance credentials
Run from the agent directory; restart the MID Server after -a, -m or -b.
EOF
  exit 1
}

severe() { printf '%s\n' "SEVERE *** ERROR *** $*" >&2; }
die() { severe "$@"; exit 1; }

# The vendor script runs `java -classpath "lib/*" ...` relative to the current directory, so from
# anywhere but agent/ the JVM cannot find the class. Reproduce that failure exactly.
require_agent_dir() {
  local script_dir agent_dir
  script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P) || exit 1
  agent_dir=$(cd -- "$script_dir/../.." && pwd -P) || exit 1
  if [ "$(pwd -P)" != "$agent_dir" ]; then
    printf '%s\n' "Error: Could not find or load main class $MAIN_CLASS" \
      "Caused by: java.lang.ClassNotFoundException: $MAIN_CLASS" >&2
    exit 1
  fi
}

valid_alias() { [[ "$1" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; }

require_alias() {
  valid_alias "$1" || die "Invalid alias '$1': use 1-64 characters from A-Z a-z 0-9 . _ -"
}

keystore_path() {
  if [ -f security/agent_keystore ]; then printf '%s\n' security/agent_keystore; return; fi
  if [ -f security/agent_keystore.jks ]; then printf '%s\n' security/agent_keystore.jks; return; fi
  printf '%s\n' security/agent_keystore
}

# JKS files start with FEEDFEED; anything else keytool reads is PKCS12.
keystore_type() {
  if [ -f "$1" ] && [ "$(head -c 4 -- "$1" | od -An -tx1 | tr -d ' \n')" = 'feedfeed' ]; then
    printf 'JKS\n'
  elif [ -f "$1" ]; then
    printf 'PKCS12\n'
  else
    printf 'JKS\n'
  fi
}

require_keystore() {
  [ -f "$1" ] || die "Key store $1 does not exist"
}

# keytool with the store password from the environment; output kept for errors only.
kt() {
  keytool -J-XX:TieredStopAtLevel=1 -J-Xshare:auto "$@"
}

# Value of a config.xml parameter (first line holding name="..." value="..."), '' when absent.
config_param() {
  [ -f config.xml ] || return 0
  sed -n "s/^[[:space:]]*<parameter[^>]*name=\"$1\"[^>]*value=\"\([^\"]*\)\".*/\1/p" config.xml | head -n 1
}

# The MID's own backups (SND:servicenow-platform/mid-server/mid-unified-keystore.md, r_MIDServerProperties.md):
# "Backups are stored in security_backup under the agent folder"; mid.keystore.max_backups "maximum number of
# backups from manual key store operations through the manage_certificate script. If it is 0 or negative, no
# backup will be made." (default 3); mid.keystore.backup_overwrite_timespan (default 60 s): a backup within
# that span of the most recent one replaces it; keystore_backup_audit_trail.log gets "backup file name with a
# time stamp, a matching keypairs.mid_id, and a list of aliases". File naming is not documented (lab's own).
backup_keystore() {
  local ks="$1" stamp target base max span newest age n=0 aliases mid_id old
  [ -f "$ks" ] || return 0
  max=$(config_param mid.keystore.max_backups); [[ "$max" =~ ^-?[0-9]+$ ]] || max=3
  span=$(config_param mid.keystore.backup_overwrite_timespan); [[ "$span" =~ ^[0-9]+$ ]] || span=60
  if [ "$max" -le 0 ]; then printf 'mid.keystore.max_backups is %s: no backup made\n' "$max"; return 0; fi
  mkdir -p security_backup || die "Cannot create security_backup/"
  base=$(basename -- "$ks")
  newest=$(own_backups "$base" | tail -n 1)
  if [ -n "$newest" ]; then
    age=$(( $(date +%s) - $(stat -c %Y -- "security_backup/$newest") ))
    if [ "$age" -lt "$span" ]; then
      rm -f -- "security_backup/$newest"
      printf 'Replacing backup %s (made %d s ago, within mid.keystore.backup_overwrite_timespan %d s)\n' "$newest" "$age" "$span"
    fi
  fi
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  target="security_backup/$base.$stamp"
  while [ -e "$target" ]; do n=$((n + 1)); target="security_backup/$base.$stamp.$n"; done
  cp -p -- "$ks" "$target" || die "Cannot back up $ks to $target"
  touch -- "$target"
  while IFS= read -r old; do
    rm -f -- "security_backup/$old"
  done < <(own_backups "$base" | head -n "-$max")
  aliases=$(list_aliases "$ks" | paste -sd, -)
  mid_id=$(config_param keypairs.mid_id)
  printf '%s backup %s keypairs.mid_id=%s aliases=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(basename -- "$target")" \
    "${mid_id:-(none)}" "$aliases" >>security_backup/keystore_backup_audit_trail.log
  printf 'Backed up %s to %s\n' "$ks" "$target"
}

# This script's backups of keystore file $1, oldest first (the time stamp in the name sorts).
own_backups() {
  find security_backup -maxdepth 1 -type f -printf '%f\n' 2>/dev/null \
    | grep -E "^$(printf '%s' "$1" | sed 's/[.]/\\./g')\.[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?\$" | sort -V
}

list_aliases() {
  local ks="$1"
  kt -list -v -keystore "$ks" -storepass:env MIDCERT_LAB_STOREPASS 2>/dev/null \
    | sed -n 's/^Alias name: //p'
}

# ---------------------------------------------------------------------------------------------
# -a ALIAS FILE

split_bundle() {
  # Writes each PEM block of the (CR-stripped) bundle to "$work/blk.N" and "N LABEL" lines to
  # "$work/labels"; text outside blocks (Bag Attributes, subject= lines) is ignored.
  tr -d '\r' <"$1" >"$work/bundle" || return 1
  WORK="$work" awk '
    BEGIN { dir = ENVIRON["WORK"]; n = 0; inside = 0; bad = 0 }
    {
      line = $0; sub(/^[ \t]+/, "", line); sub(/[ \t]+$/, "", line)
      if (!inside && line ~ /^-----BEGIN [A-Z0-9 ]+-----$/) {
        n++; inside = 1; label = line; sub(/^-----BEGIN /, "", label); sub(/-----$/, "", label)
        file = dir "/blk." n; print line > file; print n " " label > (dir "/labels"); next
      }
      if (inside) {
        print line > file
        if (line == "-----END " label "-----") { inside = 0; close(file) }
        else if (line ~ /^-----(BEGIN|END) /) { bad = 1 }
      }
    }
    END { if (inside || bad) exit 2; if (n == 0) { printf "" > (dir "/labels") } }
  ' "$work/bundle"
}

import_bundle() {
  local alias="$1" file="$2" ks kstype size label n certs=() keys=() badkeys=0
  require_alias "$alias"
  [ -f "$file" ] || die "File $file does not exist"
  [ -r "$file" ] || die "File $file cannot be read"
  size=$(wc -c <"$file")
  [ "$size" -le "$MAX_BUNDLE_BYTES" ] || die "File $file is $size bytes; a PEM bundle is a few KiB"

  work=$(mktemp -d "${TMPDIR:-/tmp}/manage-certificates.XXXXXXXX") || die "Cannot create a temporary directory"
  trap 'rm -rf -- "$work"' EXIT
  split_bundle "$file" || die "File $file holds a malformed PEM block"

  while read -r n label; do
    case "$label" in
      'CERTIFICATE') certs+=("$work/blk.$n") ;;
      'PRIVATE KEY') keys+=("$work/blk.$n") ;;
      'RSA PRIVATE KEY' | 'EC PRIVATE KEY' | 'DSA PRIVATE KEY' | 'ENCRYPTED PRIVATE KEY') badkeys=$((badkeys + 1)) ;;
      *) ;;
    esac
  done <"$work/labels"

  # The vendor's reader only understands unencrypted PKCS#8 ("BEGIN PRIVATE KEY").
  if [ "$badkeys" -gt 0 ] || [ "${#keys[@]}" -eq 0 ]; then die 'Could not find valid private key'; fi
  [ "${#keys[@]}" -eq 1 ] || die "File $file holds ${#keys[@]} private keys; a bundle holds exactly one"
  openssl pkey -in "${keys[0]}" -passin pass: -noout </dev/null >/dev/null 2>&1 || die 'Could not find valid private key'
  [ "${#certs[@]}" -ge 1 ] || die "File $file holds no certificate"

  verify_chain "${certs[@]}"
  verify_key_matches "${certs[0]}" "${keys[0]}"

  ks=$(keystore_path)
  kstype=$(keystore_type "$ks")
  : >"$work/chain"
  if [ "${#certs[@]}" -gt 1 ]; then cat -- "${certs[@]:1}" >"$work/chain"; fi
  openssl pkcs12 -export -in "${certs[0]}" -inkey "${keys[0]}" -certfile "$work/chain" -name "$alias" \
    -out "$work/bundle.p12" -passout env:MIDCERT_LAB_STOREPASS </dev/null >"$work/openssl.log" 2>&1 \
    || die "Could not build the key entry: $(head -n 1 "$work/openssl.log")"

  mkdir -p security || die 'Cannot create security/'
  backup_keystore "$ks"
  # Import into a copy, then rename: a failed import leaves the keystore as it was.
  local staged
  staged="security/.$(basename -- "$ks").$$.tmp"
  if [ -f "$ks" ]; then cp -p -- "$ks" "$staged" || die "Cannot stage $ks"; fi
  if ! kt -importkeystore -noprompt \
      -srckeystore "$work/bundle.p12" -srcstoretype PKCS12 -srcstorepass:env MIDCERT_LAB_STOREPASS -srcalias "$alias" \
      -destkeystore "$staged" -deststoretype "$kstype" -deststorepass:env MIDCERT_LAB_STOREPASS -destalias "$alias" \
      >"$work/keytool.log" 2>&1; then
    rm -f -- "$staged"
    die "Import into $ks failed: $(grep -m 1 -i 'error' "$work/keytool.log" || head -n 1 "$work/keytool.log")"
  fi
  chmod 600 -- "$staged" || die "Cannot set the mode of $staged"
  mv -f -- "$staged" "$ks" || die "Cannot replace $ks"
  # The documented success line (SND:platform-security/client-access-example-5.md): "If successful, you can
  # see the following message: Installed certificate with alias: <your_identity_key_alias> into the MID keystore."
  printf 'Installed certificate with alias: %s into the MID keystore.\n' "$alias"
}

# Leaf against the rest of the bundle: the last certificate is the trust anchor, the ones between
# are untrusted intermediates. A chain that does not reach a root in the bundle fails.
verify_chain() {
  local leaf="$1" root="${!#}" out
  local args=(-CAfile "$root")
  if [ "$#" -gt 2 ]; then
    cat -- "${@:2:$(($# - 2))}" >"$work/untrusted"
    args+=(-untrusted "$work/untrusted")
  fi
  if ! out=$(openssl verify "${args[@]}" "$leaf" 2>&1 </dev/null); then
    # "An exception is thrown if the certificate chain fails validation." (SND:…/install-mid-mutual-auth.md)
    die "java.security.cert.CertPathValidatorException: Certificate chain validation failed: $(printf '%s\n' "$out" | grep -m 1 -E 'error [0-9]+' || printf '%s' "$out" | head -n 1)"
  fi
}

verify_key_matches() {
  local cert_pub key_pub subject
  cert_pub=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || die 'Cannot read the leaf certificate'
  key_pub=$(openssl pkey -in "$2" -passin pass: -pubout 2>/dev/null </dev/null) || die 'Could not find valid private key'
  if [ "$cert_pub" != "$key_pub" ]; then
    subject=$(openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null | sed 's/^subject=//')
    die "The private key does not match the leaf certificate ($subject)"
  fi
}

# ---------------------------------------------------------------------------------------------
# -g / -l / -d / -r

show_alias() {
  local ks out
  require_alias "$1"
  ks=$(keystore_path); require_keystore "$ks"
  out=$(kt -list -v -alias "$1" -keystore "$ks" -storepass:env MIDCERT_LAB_STOREPASS 2>&1) \
    || die "Alias $1 does not exist in $ks"
  printf '%s\n' "$out" | grep -v -e 'proprietary format' -e '^Warning:$' -e '^$'
}

list_all() {
  local ks aliases
  ks=$(keystore_path); require_keystore "$ks"
  kt -list -keystore "$ks" -storepass:env MIDCERT_LAB_STOREPASS >/dev/null 2>&1 || die "Cannot open key store $ks (wrong store password?)"
  aliases=$(list_aliases "$ks" | paste -sd, -)
  printf '%s\n' "$aliases"
}

delete_alias() {
  local ks="$1" alias="$2"
  kt -delete -alias "$alias" -keystore "$ks" -storepass:env MIDCERT_LAB_STOREPASS >/dev/null 2>&1
}

delete_one() {
  local ks
  require_alias "$1"
  ks=$(keystore_path); require_keystore "$ks"
  list_aliases "$ks" | grep -qixF -- "$1" || die "Alias $1 does not exist in $ks"
  backup_keystore "$ks"
  delete_alias "$ks" "$1" || die "Could not delete alias $1"
  printf 'Deleted alias %s from %s\n' "$1" "$ks"
}

remove_all_but_default() {
  local ks alias removed=0
  ks=$(keystore_path); require_keystore "$ks"
  backup_keystore "$ks"
  while IFS= read -r alias; do
    [ -n "$alias" ] || continue
    if [ "${alias,,}" = "$DEFAULT_ALIAS" ]; then continue; fi
    delete_alias "$ks" "$alias" || die "Could not delete alias $alias"
    printf 'Deleted alias %s\n' "$alias"
    removed=$((removed + 1))
  done < <(list_aliases "$ks")
  printf 'Removed %d entries from %s; kept %s\n' "$removed" "$ks" "$DEFAULT_ALIAS"
}

# ---------------------------------------------------------------------------------------------
# -m / -b: line edits of config.xml. Only lines that hold exactly one credential <parameter .../>
# element (outside comments) change or move; every other byte of the file stays as it was.
# MODE=count prints "<username lines> <password lines>"; MODE=mutual drops those lines;
# MODE=basic rewrites them with CRED_USER/CRED_PASS, inserting missing ones after the url line.
# Values arrive through ENVIRON (awk -v would interpret backslashes) and are already XML-escaped.

# shellcheck disable=SC2016 # an awk program: its $0 and $1 are awk's, not the shell's
readonly CRED_AWK='
function comment_state(line,   rest, a, b, touched) {
  touched = incomment || index(line, "<!--") > 0 || index(line, "-->") > 0
  rest = line
  while (1) {
    if (incomment) { b = index(rest, "-->"); if (!b) break; incomment = 0; rest = substr(rest, b + 3) }
    else { a = index(rest, "<!--"); if (!a) break; incomment = 1; rest = substr(rest, a + 4) }
  }
  return touched
}
function cred_name(line) {
  if (line ~ /name="mid\.instance\.username"/) return "mid.instance.username"
  if (line ~ /name="mid\.instance\.password"/) return "mid.instance.password"
  if (line ~ /name="glide\.glidesoap\.username"/) return "glide.glidesoap.username"
  if (line ~ /name="glide\.glidesoap\.password"/) return "glide.glidesoap.password"
  return ""
}
function is_user(name) { return name ~ /username$/ }
function alone(line,   tmp) {
  tmp = line
  return gsub(/<parameter[ \t]/, "", tmp) == 1 && line ~ /^[ \t]*<parameter[ \t][^<]*\/>[ \t]*\r?$/
}
function indent_of(line) { match(line, /^[ \t]*/); return substr(line, 1, RLENGTH) }
function cr_of(line) { return (line ~ /\r$/) ? "\r" : "" }
function cred_line(like, name,   value, secure) {
  value = is_user(name) ? ENVIRON["CRED_USER"] : ENVIRON["CRED_PASS"]
  secure = !is_user(name) ? " secure=\"true\"" : ""
  return indent_of(like) "<parameter name=\"" name "\"" secure " value=\"" value "\"/>" cr_of(like)
}
function emit(line) { if (mode == "count") return; if (have_prev) printf "%s\n", prev; prev = line; have_prev = 1 }
function insert_both(like) { emit(cred_line(like, "mid.instance.username")); emit(cred_line(like, "mid.instance.password")); inserted = 1 }
BEGIN { mode = ENVIRON["MODE"]; have_user = ENVIRON["HAVE_USER"] + 0; have_pass = ENVIRON["HAVE_PASS"] + 0; need_both = !have_user && !have_pass }
{
  line = $0
  if (comment_state(line)) { emit(line); next }
  name = cred_name(line)
  if (name != "") {
    if (!alone(line)) { failed = 3; exit 3 }
    if (is_user(name)) users++; else passes++
    if (mode != "basic") next
    if (!is_user(name) && !have_user && !inserted) { emit(cred_line(line, "mid.instance.username")); inserted = 1 }
    emit(cred_line(line, name))
    if (is_user(name) && !have_pass && !inserted) { emit(cred_line(line, "mid.instance.password")); inserted = 1 }
    next
  }
  if (mode == "basic" && need_both && !inserted && line ~ /^[ \t]*<\/parameters>/) insert_both("    " cr_of(line))
  emit(line)
  if (mode == "basic" && need_both && !inserted && line ~ /name="url"/ && alone(line)) insert_both(line)
}
END {
  if (failed) exit failed
  if (mode == "count") { print users + 0, passes + 0; exit 0 }
  if (have_prev) { if (ENVIRON["FINAL_NL"] == "1") printf "%s\n", prev; else printf "%s", prev }
  if (mode == "basic" && !have_user && !have_pass && !inserted) exit 5
}
'

xml_escape() {
  local v="$1"
  # Quoted replacements: bash 5.2 would otherwise read "&" as "the matched text".
  v=${v//'&'/'&amp;'}; v=${v//'<'/'&lt;'}; v=${v//'>'/'&gt;'}; v=${v//'"'/'&quot;'}
  printf '%s' "$v"
}

count_credentials() {
  MODE=count awk "$CRED_AWK" config.xml
}

rewrite_config() {
  # $1 = MODE; HAVE_USER/HAVE_PASS/CRED_USER/CRED_PASS come from the caller's environment.
  local tmp final_newline=1 rc
  if [ -s config.xml ] && [ "$(tail -c 1 config.xml | od -An -tx1 | tr -d ' \n')" != '0a' ]; then final_newline=0; fi
  tmp=$(mktemp config.xml.XXXXXXXX) || die 'Cannot write next to config.xml'
  chmod --reference=config.xml -- "$tmp" 2>/dev/null || chmod 600 -- "$tmp"
  MODE="$1" FINAL_NL="$final_newline" awk "$CRED_AWK" config.xml >"$tmp"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    rm -f -- "$tmp"
    case "$rc" in
      3) die 'config.xml holds an instance credential parameter that is not alone on its line; edit it by hand' ;;
      5) die 'config.xml has no url parameter or </parameters> line to add the credentials to' ;;
      *) die 'Could not edit config.xml' ;;
    esac
  fi
  mv -f -- "$tmp" config.xml || { rm -f -- "$tmp"; die 'Cannot replace config.xml'; }
}

read_counts() {
  local counts
  [ -f config.xml ] || die 'config.xml not found in the agent directory'
  counts=$(count_credentials) || die 'config.xml holds an instance credential parameter that is not alone on its line; edit it by hand'
  users=${counts% *}; passes=${counts#* }
}

enable_mutual_auth() {
  local users passes
  read_counts
  if [ "$users" -eq 0 ] && [ "$passes" -eq 0 ]; then
    printf 'config.xml holds no instance credentials; mutual authentication is already enabled\n'
    return 0
  fi
  rewrite_config mutual
  printf 'Mutual authentication enabled: removed the instance credentials (mid.instance.username, mid.instance.password and their glide.glidesoap.* aliases) from config.xml. Restart the MID Server.\n'
}

enable_basic_auth() {
  local user="$1" pass="$2" users passes
  if [ -z "$user" ] || [ -z "$pass" ]; then die 'User name and password must not be empty'; fi
  if [[ "$user$pass" =~ [[:cntrl:]] ]]; then die 'User name and password must not hold control characters'; fi
  read_counts
  HAVE_USER="$users" HAVE_PASS="$passes" CRED_USER="$(xml_escape "$user")" CRED_PASS="$(xml_escape "$pass")" \
    rewrite_config basic
  printf 'Basic authentication restored: set mid.instance.username and mid.instance.password in config.xml. Restart the MID Server.\n'
}

# ---------------------------------------------------------------------------------------------

main() {
  [ "$#" -ge 1 ] || usage
  case "$1" in
    -a) [ "$#" -eq 3 ] || usage; require_agent_dir; import_bundle "$2" "$3" ;;
    -g) [ "$#" -eq 2 ] || usage; require_agent_dir; show_alias "$2" ;;
    -l) [ "$#" -eq 1 ] || usage; require_agent_dir; list_all ;;
    -d) [ "$#" -eq 2 ] || usage; require_agent_dir; delete_one "$2" ;;
    -r) [ "$#" -eq 1 ] || usage; require_agent_dir; remove_all_but_default ;;
    -m) [ "$#" -eq 1 ] || usage; require_agent_dir; enable_mutual_auth ;;
    -b) [ "$#" -eq 3 ] || usage; require_agent_dir; enable_basic_auth "$2" "$3" ;;
    *) usage ;;
  esac
}

main "$@"
