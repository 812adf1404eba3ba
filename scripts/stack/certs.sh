#!/usr/bin/env bash
# TLS certificates for the local real stack's secure Kafka listeners (SASL_SSL and mutual TLS),
# made with openssl only: a private CA, the broker's certificate and one client certificate.
#
#   scripts/stack/certs.sh up       make what is missing, expired or about to expire (idempotent;
#                                   kafka.sh up runs it); prints one line
#   scripts/stack/certs.sh status   subject, validity and file of each certificate; exit 1 if one
#                                   is missing, invalid or expires within the renewal margin
#   scripts/stack/certs.sh dir      print the directory
#
# Files in $FW_STACK_DIR/certs (PEM; private keys unencrypted PKCS#8, mode 0600):
#   ca.crt, ca.key             the CA ("Framewire local stack CA"): every client's ssl.ca.location,
#                              the broker's PEM truststore
#   broker.crt, broker.key     CN=localhost, SAN IP:127.0.0.1 and DNS:localhost (hostname
#                              verification on) for the broker
#   broker.pem                 broker.key + broker.crt + ca.crt: the broker's PEM keystore
#                              (ssl.keystore.type=PEM, ssl.keystore.location)
#   client.crt, client.key     CN=framewire-mtls: the mTLS client (the broker maps it to the
#                              principal User:framewire-mtls), for ssl.certificate.location /
#                              ssl.key.location
#   client.pem                 client.key + client.crt (Java clients' PEM keystore)
# A certificate is made again when its file or key is missing, it does not verify against the CA,
# or it expires within FW_CERT_RENEW_DAYS days; a new CA makes both leaf certificates again.
#
# Env: FW_STACK_DIR, FW_CERT_DAYS (validity of the leaf certificates, 365),
#      FW_CERT_CA_DAYS (validity of the CA, 3650), FW_CERT_RENEW_DAYS (30),
#      FW_MTLS_CN (framewire-mtls: the client certificate's CN, hence its Kafka principal).
set -euo pipefail
FW_COMPONENT=certs
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$FW_STACK_DIR/certs"
DAYS="${FW_CERT_DAYS:-365}"
CA_DAYS="${FW_CERT_CA_DAYS:-3650}"
RENEW_DAYS="${FW_CERT_RENEW_DAYS:-30}"
MTLS_CN="${FW_MTLS_CN:-framewire-mtls}"
for v in DAYS CA_DAYS RENEW_DAYS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fw_die "bad $v '${!v}': want a positive number of days"
done
(( RENEW_DAYS < DAYS && RENEW_DAYS < CA_DAYS )) \
  || fw_die "FW_CERT_RENEW_DAYS ($RENEW_DAYS) must be shorter than FW_CERT_DAYS ($DAYS) and FW_CERT_CA_DAYS ($CA_DAYS)"
[[ "$MTLS_CN" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || fw_die "bad FW_MTLS_CN '$MTLS_CN'"

ensure_openssl() { command -v openssl >/dev/null 2>&1 || fw_ensure_pkgs openssl; }

# A new private key (EC P-256, PKCS#8, unencrypted), mode 0600 from the start.
new_key() { (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null); }

# fresh CERT: the file exists, is a certificate, and is valid for more than RENEW_DAYS days.
fresh() { [[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend $(( RENEW_DAYS * 86400 )) >/dev/null 2>&1; }

# key_matches CERT KEY: the key is the certificate's.
key_matches() {
  [[ -s "$2" ]] || return 1
  [[ "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" == "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ]]
}

# leaf_ok NAME: NAME.crt is fresh, signed by the current CA, and NAME.key is its key.
leaf_ok() {
  fresh "$DIR/$1.crt" && key_matches "$DIR/$1.crt" "$DIR/$1.key" \
    && openssl verify -CAfile "$DIR/ca.crt" "$DIR/$1.crt" >/dev/null 2>&1
}

make_ca() {
  new_key "$WORK/ca.key"
  openssl req -x509 -new -key "$WORK/ca.key" -sha256 -days "$CA_DAYS" -subj "/O=Framewire/CN=Framewire local stack CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$WORK/ca.crt" 2>/dev/null
  mv "$WORK/ca.key" "$DIR/ca.key"
  mv "$WORK/ca.crt" "$DIR/ca.crt"
}

# make_leaf NAME SUBJECT EXTENSIONS: NAME.key, NAME.crt signed by the CA, NAME.pem (key + chain).
make_leaf() {
  local name="$1" subj="$2" ext="$3"
  new_key "$WORK/$name.key"
  openssl req -new -key "$WORK/$name.key" -subj "$subj" -out "$WORK/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$WORK/$name.ext"
  openssl x509 -req -in "$WORK/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -CAserial "$WORK/ca.srl" -days "$DAYS" -sha256 -extfile "$WORK/$name.ext" -out "$WORK/$name.crt" 2>/dev/null
  (umask 077; cat "$WORK/$name.key" "$WORK/$name.crt" >"$WORK/$name.pem")
  [[ "$name" != broker ]] || cat "$DIR/ca.crt" >>"$WORK/$name.pem"
  mv "$WORK/$name.key" "$DIR/$name.key"
  mv "$WORK/$name.crt" "$DIR/$name.crt"
  mv "$WORK/$name.pem" "$DIR/$name.pem"
}

until_date() { openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//'; }

cmd_up() {
  ensure_openssl
  mkdir -p "$DIR"
  local lock made=()
  exec {lock}>"$DIR/.lock"
  flock -w 60 "$lock" || fw_die "another certs.sh holds $DIR/.lock"
  WORK="$(mktemp -d "$DIR/.work.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  if ! fresh "$DIR/ca.crt" || ! key_matches "$DIR/ca.crt" "$DIR/ca.key"; then
    make_ca
    made+=(CA)
  fi
  if ! leaf_ok broker || [[ ! -s "$DIR/broker.pem" ]]; then
    make_leaf broker "/O=Framewire/CN=localhost" \
      "$(printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost")"
    made+=(broker)
  fi
  local cn
  cn="$(openssl x509 -in "$DIR/client.crt" -noout -subject -nameopt multiline 2>/dev/null \
    | sed -n 's/^ *commonName *= *//p')" || true
  if ! leaf_ok client || [[ "$cn" != "$MTLS_CN" || ! -s "$DIR/client.pem" ]]; then
    make_leaf client "/O=Framewire/CN=$MTLS_CN" \
      "$(printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth")"
    made+=(client)
  fi
  chmod 0600 "$DIR"/*.key "$DIR"/*.pem
  if (( ${#made[@]} )); then
    fw_log "made ${made[*]} in $DIR (broker valid until $(until_date "$DIR/broker.crt"))"
  else
    fw_log "certificates in $DIR valid until $(until_date "$DIR/broker.crt") (broker), $(until_date "$DIR/client.crt") (client)"
  fi
}

cmd_status() {
  ensure_openssl
  local n rc=0 f state
  for n in ca broker client; do
    f="$DIR/$n.crt"
    if [[ ! -s "$f" ]]; then state="missing"
    elif [[ "$n" == ca ]] && fresh "$f" && key_matches "$f" "$DIR/ca.key"; then state="ok"
    elif [[ "$n" != ca ]] && leaf_ok "$n"; then state="ok"
    else state="renew"; fi
    [[ "$state" == ok ]] || rc=1
    if [[ -s "$f" ]]; then
      printf '%-7s %-7s %s, until %s  (%s)\n' "$n" "$state" \
        "$(openssl x509 -in "$f" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')" "$(until_date "$f")" "$f"
    else
      printf '%-7s %-7s (%s)\n' "$n" "$state" "$f"
    fi
  done
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  dir) echo "$DIR" ;;
  *) echo "usage: $0 {up|status|dir}" >&2; exit 2 ;;
esac
