#!/usr/bin/env bash
# Test peer: a throwaway MIT Kerberos realm (krb5kdc on a high port, no kadmind, no root
# service) and Apache httpd with mod_auth_gssapi requiring Negotiate, reverse-proxying /certsrv
# to the lab ADCS with the lab's Basic credentials added upstream.
#
#   start-kerberos.sh DIR KDC_PORT HTTP_PORT UPSTREAM_ORIGIN UPSTREAM_CA_PEM UPSTREAM_USER:PASSWORD
#
# Everything lives in DIR (made traversable: Apache's workers run as www-data when started as
# root). Writes DIR/krb5.conf, DIR/http.keytab (HTTP/localhost), DIR/client.keytab and
# DIR/client.ccache (user mid-enroll), DIR/user.password, DIR/peers-kerberos.env, and the PIDs in
# DIR/krb5kdc.pid and DIR/httpd.pid. Stop with scripts/peers/stop.sh DIR.
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: $0 DIR KDC_PORT HTTP_PORT UPSTREAM_ORIGIN UPSTREAM_CA UPSTREAM_USER:PASSWORD" >&2; exit 2; }
dir=$(cd "$1" && pwd); kdc_port=$2; http_port=$3; upstream=$4; upstream_ca=$5; upstream_basic=$6
realm=MIDCERT.TEST
user=mid-enroll
password="kerberos-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
chmod 0755 "$dir"
# A failed start leaves nothing running.
trap 'bash "$(dirname "$0")/stop.sh" "$dir"' ERR

cat > "$dir/krb5.conf" <<CONF
[libdefaults]
  default_realm = $realm
  dns_canonicalize_hostname = false
  rdns = false
  dns_lookup_kdc = false
  dns_lookup_realm = false
  udp_preference_limit = 1
  ignore_acceptor_hostname = false
[realms]
  $realm = {
    kdc = 127.0.0.1:$kdc_port
  }
[domain_realm]
  localhost = $realm
CONF
cat > "$dir/kdc.conf" <<CONF
[kdcdefaults]
  kdc_ports = $kdc_port
  kdc_tcp_ports = $kdc_port
[realms]
  $realm = {
    database_name = $dir/kdb/principal
    key_stash_file = $dir/kdb/stash
    acl_file = $dir/kdb/kadm5.acl
    max_life = 1h
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }
[logging]
  kdc = FILE:$dir/krb5kdc.log
CONF
export KRB5_CONFIG="$dir/krb5.conf" KRB5_KDC_PROFILE="$dir/kdc.conf"
mkdir -p "$dir/kdb" && : > "$dir/kdb/kadm5.acl"
kdb5_util create -s -r "$realm" -P "master-$password" >/dev/null 2>&1
kadmin.local -q "addprinc -pw $password $user" >/dev/null 2>&1
kadmin.local -q "addprinc -randkey HTTP/localhost" >/dev/null 2>&1
kadmin.local -q "ktadd -k $dir/http.keytab HTTP/localhost" >/dev/null 2>&1
kadmin.local -q "ktadd -k $dir/client.keytab -norandkey $user" >/dev/null 2>&1
printf '%s\n' "$password" > "$dir/user.password"; chmod 0600 "$dir/user.password" "$dir/client.keytab"

krb5kdc -P "$dir/krb5kdc.pid"
for _ in $(seq 50); do [ -s "$dir/krb5kdc.pid" ] && break; sleep 0.1; done
KRB5CCNAME="FILE:$dir/client.ccache" kinit -k -t "$dir/client.keytab" "$user@$realm"

mkdir -p "$dir/httpd"
user_lines=""
if [ "$(id -u)" -eq 0 ]; then
  user_lines=$'User www-data\nGroup www-data'
  chown www-data "$dir/http.keytab" "$dir/httpd"
fi
basic=$(printf '%s' "$upstream_basic" | base64 -w0)
m=/usr/lib/apache2/modules
cat > "$dir/httpd.conf" <<CONF
ServerRoot "$dir/httpd"
ServerName localhost
Listen 127.0.0.1:$http_port
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir/httpd"
ErrorLog "$dir/httpd-error.log"
LogLevel warn auth_gssapi:debug ssl:info
$user_lines
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule auth_gssapi_module $m/mod_auth_gssapi.so
LoadModule headers_module $m/mod_headers.so
LoadModule proxy_module $m/mod_proxy.so
LoadModule proxy_http_module $m/mod_proxy_http.so
LoadModule ssl_module $m/mod_ssl.so
LogFormat "%h %u \"%r\" %>s" midcert
CustomLog "$dir/httpd-access.log" midcert
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
KeepAlive On
SSLProxyEngine on
SSLProxyCACertificateFile "$upstream_ca"
<Location "/certsrv">
  AuthType GSSAPI
  AuthName "certsrv"
  GssapiCredStore keytab:$dir/http.keytab
  GssapiAllowedMech krb5
  GssapiBasicAuth Off
  Require valid-user
  RequestHeader set Authorization "Basic $basic"
  ProxyPass "$upstream/certsrv"
  ProxyPassReverse "$upstream/certsrv"
</Location>
CONF
# The acceptor needs only the keytab; no replay cache file outside DIR.
KRB5RCACHETYPE=none apache2 -f "$dir/httpd.conf" -k start
for _ in $(seq 50); do [ -s "$dir/httpd.pid" ] && break; sleep 0.1; done
[ -s "$dir/httpd.pid" ] || { bash "$(dirname "$0")/stop.sh" "$dir"; echo "httpd did not start; see $dir/httpd-error.log" >&2; exit 1; }

cat > "$dir/peers-kerberos.env" <<ENV
KRB5_CONFIG=$dir/krb5.conf
REALM=$realm
PRINCIPAL=$user@$realm
CLIENT_KEYTAB=$dir/client.keytab
CLIENT_CCACHE=FILE:$dir/client.ccache
USER_PASSWORD_FILE=$dir/user.password
NEGOTIATE_URL=http://localhost:$http_port/certsrv
ENV
echo "kerberos peers up: KDC 127.0.0.1:$kdc_port, httpd (Negotiate) http://localhost:$http_port/certsrv" >&2
