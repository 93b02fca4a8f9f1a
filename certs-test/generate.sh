#!/usr/bin/env bash
# Regenerates the paraph TEST PKI in this directory (certs-test/).
#
# Idempotent: wipes every *.pem / *.p12 output of this directory and the scratch
# directory .work/, then rebuilds everything with the openssl CLI (OpenSSL 3.0+)
# and coreutils only, and finally runs check.sh. Works from any cwd.
# Keys are random, so every run gives new keys, serials and signatures: commit
# all the outputs together.
#
# Usage: bash certs-test/generate.sh
set -euo pipefail

OUT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
export PKI_OUT="$OUT"
export PKI_WORK="$OUT/.work"
CNF="$OUT/openssl.cnf"
PASS="paraph-test"

# Validity windows (UTCTime, all before 2050).
CA_START="190101000000Z"     # CAs: 2019-01-01 .. 2049-12-31 (cover the 2020 fixtures too)
CA_END="491231235959Z"
LEAF_START="250101000000Z"   # valid leaves: 2025-01-01 .. 2049-12-31
LEAF_END="491231235959Z"
CRL_LAST="250101000000Z"     # current CRLs: thisUpdate 2025-01-01, nextUpdate 2049-12-01
CRL_NEXT="491201000000Z"
REVOKED_AT="250101000000Z"   # revocationDate of neg-revoked (= its notBefore)

# Test policy arc (never a real provider's).
OID_L1="1.3.6.1.4.1.99999.1.1.1"   # level *
OID_L2="1.3.6.1.4.1.99999.1.1.2"   # level **
OID_L3="1.3.6.1.4.1.99999.1.1.3"   # level ***

ORG_DN="/C=FR/O=Commune de Testville/OU=0002 21000000000000"
PKI_DN="/C=FR/O=Paraph Test PKI"
OFFICER_DN="$ORG_DN/CN=TEST Officer Name"

log() { printf '== %s\n' "$*"; }

# ------------------------------------------------------------------ helpers

# genkey FILE SPEC  (SPEC: rsa1024|rsa2048|rsa3072|p256|p384) -> unencrypted PKCS#8 PEM
genkey() {
  local out=$1 spec=$2
  case "$spec" in
    rsa*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${spec#rsa}" -out "$out" \
            2>"$PKI_WORK/genpkey.log" || { cat "$PKI_WORK/genpkey.log" >&2; exit 1; } ;;
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -pkeyopt ec_param_enc:named_curve -out "$out" ;;
    p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 \
            -pkeyopt ec_param_enc:named_curve -out "$out" ;;
    *) echo "unknown key spec $spec" >&2; exit 1 ;;
  esac
  chmod 644 "$out"
}

# initca DIRNAME: empty openssl ca database in .work/DIRNAME
initca() {
  local d="$PKI_WORK/$1"
  mkdir -p "$d/newcerts"
  : > "$d/index.txt"
  echo "unique_subject = no" > "$d/index.txt.attr"
  echo 01 > "$d/crlnumber"
}

# issue CA_SECTION NAME KEYSPEC SUBJECT EXTENSIONS START END [MD]
#   -> NAME.key.pem, NAME.cert.pem
issue() {
  local ca=$1 name=$2 spec=$3 subj=$4 ext=$5 start=$6 end=$7 md=${8:-sha256}
  genkey "$OUT/$name.key.pem" "$spec"
  openssl req -new -config "$CNF" -key "$OUT/$name.key.pem" -subj "$subj" \
    -out "$PKI_WORK/$name.csr.pem"
  openssl ca -batch -config "$CNF" -name "$ca" -in "$PKI_WORK/$name.csr.pem" \
    -out "$OUT/$name.cert.pem" -extensions "$ext" -startdate "$start" -enddate "$end" \
    -md "$md" -notext 2>"$PKI_WORK/$name.ca.log" \
    || { cat "$PKI_WORK/$name.ca.log" >&2; exit 1; }
}

# selfsign CA_SECTION NAME KEYSPEC SUBJECT EXTENSIONS
selfsign() {
  local ca=$1 name=$2 spec=$3 subj=$4 ext=$5
  genkey "$OUT/$name.key.pem" "$spec"
  openssl req -new -config "$CNF" -key "$OUT/$name.key.pem" -subj "$subj" \
    -out "$PKI_WORK/$name.csr.pem"
  openssl ca -batch -config "$CNF" -name "$ca" -selfsign -in "$PKI_WORK/$name.csr.pem" \
    -out "$OUT/$name.cert.pem" -extensions "$ext" -startdate "$CA_START" -enddate "$CA_END" \
    -md sha256 -notext 2>"$PKI_WORK/$name.ca.log" \
    || { cat "$PKI_WORK/$name.ca.log" >&2; exit 1; }
}

# p12 NAME ISSUER_CERT -> NAME.p12 (key + cert + issuing CA cert)
p12() {
  local name=$1 issuer=$2
  openssl pkcs12 -export -name "$name" \
    -inkey "$OUT/$name.key.pem" -in "$OUT/$name.cert.pem" -certfile "$OUT/$issuer" \
    -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 \
    -passout "pass:$PASS" -out "$OUT/$name.p12"
}

# gencrl CA_SECTION OUTFILE LASTUPDATE NEXTUPDATE
gencrl() {
  openssl ca -batch -config "$CNF" -name "$1" -gencrl -md sha256 \
    -crl_lastupdate "$3" -crl_nextupdate "$4" -out "$OUT/$2" 2>"$PKI_WORK/crl.log" \
    || { cat "$PKI_WORK/crl.log" >&2; exit 1; }
}

# set_revocation_date DB WHEN: `openssl ca -revoke` stamps "now"; rewrite the
# revocationDate of every R line of the index (pure bash, no sed).
set_revocation_date() {
  local db=$1 when=$2 line st exp rev rest
  : > "$db.new"
  while IFS= read -r line; do
    if [[ $line == R$'\t'* ]]; then
      IFS=$'\t' read -r st exp rev rest <<<"$line"
      if [[ $rev == *,* ]]; then rev="$when,${rev#*,}"; else rev="$when"; fi
      line="$st"$'\t'"$exp"$'\t'"$rev"$'\t'"$rest"
    fi
    printf '%s\n' "$line" >> "$db.new"
  done < "$db"
  mv "$db.new" "$db"
}

# ------------------------------------------------------------------ wipe

log "wiping outputs in $OUT"
rm -rf -- "$PKI_WORK"
rm -f -- "$OUT"/*.pem "$OUT"/*.p12
mkdir -p "$PKI_WORK"
initca root-ca
initca signing-ca
initca signing-ca-nokcs
initca rogue-ca

# ------------------------------------------------------------------ CAs

log "root-ca (RSA-3072, self-signed)"
selfsign ca_root root-ca rsa3072 "$PKI_DN/CN=TEST Paraph Root CA" v3_root_ca

log "signing-ca (RSA-3072, under root-ca, pathlen:0)"
issue ca_root signing-ca rsa3072 "$PKI_DN/CN=TEST Paraph Signing CA" v3_signing_ca "$CA_START" "$CA_END"

log "signing-ca-nokcs (RSA-3072, under root-ca, keyUsage without keyCertSign)"
issue ca_root signing-ca-nokcs rsa3072 "$PKI_DN/CN=TEST Paraph Signing CA without keyCertSign" \
  v3_signing_ca_nokcs "$CA_START" "$CA_END"

log "rogue-ca (P-384, self-signed, outside the hierarchy)"
selfsign ca_rogue rogue-ca p384 "/C=FR/O=Rogue Test PKI/CN=TEST Rogue CA" v3_rogue_ca

# ------------------------------------------------------------------ valid leaves (signing-ca)

officer() { # NAME KEYSPEC EXT SUBJECT
  log "$1"
  issue ca_signing "$1" "$2" "$4" "$3" "$LEAF_START" "$LEAF_END"
  p12 "$1" signing-ca.cert.pem
}
officer officer-l1-rsa2048 rsa2048 v3_l1 "$OFFICER_DN"
officer officer-l2-rsa3072 rsa3072 v3_l2 "$OFFICER_DN"
officer officer-l2-p256    p256    v3_l2 "$OFFICER_DN"
officer officer-l3-p384    p384    v3_l3 "$OFFICER_DN"
officer officer-l3-p256    p256    v3_l3 "$OFFICER_DN"
officer officer-l3-rsa2048 rsa2048 v3_l3 "$OFFICER_DN"
officer officer2-l2-p256   p256    v3_l2 "$ORG_DN/CN=TEST Second Officer"
officer officer3-l3-p256   p256    v3_l3 "$ORG_DN/CN=TEST Third Officer"
officer seal               p256    v3_l2 "$ORG_DN/CN=TEST Cachet Commune de Testville"
officer tsa                p256    v3_tsa "$PKI_DN/CN=TEST Paraph TSA"

# ------------------------------------------------------------------ negative leaves (one defect each)

neg() { # NAME KEYSPEC EXT START END [MD]
  log "$1"
  issue ca_signing "$1" "$2" "$OFFICER_DN" "$3" "$4" "$5" "${6:-sha256}"
  p12 "$1" signing-ca.cert.pem
}
neg neg-expired           p256    v3_l2           200101000000Z 210101000000Z
neg neg-not-yet-valid     p256    v3_l2           480101000000Z "$LEAF_END"
neg neg-revoked           p256    v3_l2           "$LEAF_START" "$LEAF_END"
neg neg-no-nonrepudiation p256    v3_l2_no_nonrep "$LEAF_START" "$LEAF_END"
neg neg-rsa1024           rsa1024 v3_l2           "$LEAF_START" "$LEAF_END"
neg neg-bad-policy        p256    v3_bad_policy   "$LEAF_START" "$LEAF_END"
# signing-ca is RSA, so this is sha1WithRSAEncryption (OpenSSL 3.0 still signs it).
neg neg-sha1              p256    v3_l2           "$LEAF_START" "$LEAF_END" sha1

log "neg-unknown-issuer (issued by rogue-ca)"
issue ca_rogue neg-unknown-issuer p256 "$OFFICER_DN" v3_l2_rogue "$LEAF_START" "$LEAF_END"
p12 neg-unknown-issuer rogue-ca.cert.pem

log "neg-ca-no-keycertsign (issued by signing-ca-nokcs)"
issue ca_nokcs neg-ca-no-keycertsign p256 "$OFFICER_DN" v3_l2_nokcs "$LEAF_START" "$LEAF_END"
p12 neg-ca-no-keycertsign signing-ca-nokcs.cert.pem

# ------------------------------------------------------------------ CRLs (v2, CRLNumber + AKI)

log "CRLs"
# Expired CRL first (crlNumber 1, before the revocation): 2020-01-01 .. 2020-02-01.
gencrl ca_signing signing-ca.crl-expired.pem 200101000000Z 200201000000Z

openssl ca -batch -config "$CNF" -name ca_signing -revoke "$OUT/neg-revoked.cert.pem" \
  -crl_reason keyCompromise 2>"$PKI_WORK/revoke.log" \
  || { cat "$PKI_WORK/revoke.log" >&2; exit 1; }
set_revocation_date "$PKI_WORK/signing-ca/index.txt" "$REVOKED_AT"

gencrl ca_signing       signing-ca.crl.pem       "$CRL_LAST" "$CRL_NEXT"   # crlNumber 2, lists neg-revoked
gencrl ca_root          root-ca.crl.pem          "$CRL_LAST" "$CRL_NEXT"   # empty
gencrl ca_nokcs         signing-ca-nokcs.crl.pem "$CRL_LAST" "$CRL_NEXT"   # empty
gencrl ca_rogue         rogue-ca.crl.pem         "$CRL_LAST" "$CRL_NEXT"   # empty

# ------------------------------------------------------------------ bundles

cat "$OUT/signing-ca.cert.pem" "$OUT/root-ca.cert.pem" > "$OUT/chain.pem"
cat "$OUT/root-ca.crl.pem" "$OUT/signing-ca.crl.pem" > "$OUT/crls.pem"

# ------------------------------------------------------------------ clean up, check

rm -rf -- "$PKI_WORK"
log "generated $(ls "$OUT"/*.pem "$OUT"/*.p12 | wc -l) files in $OUT"

bash "$OUT/check.sh"
