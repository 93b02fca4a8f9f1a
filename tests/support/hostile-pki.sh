#!/usr/bin/env bash
# Builds, in OUT, the hostile material of the validation tests from the TEST PKI in SRC
# (certs-test): certificates and CRLs whose dates the tests need, issued with the test CAs'
# own keys. Usage: hostile-pki.sh OUT SRC. Needs only the openssl CLI.
#
#   late-revoked.{cert,key}.pem  leaf of signing-ca, RGS ** policy, valid 2025-01-01..2049,
#                                revoked 2026-06-01 for keyCompromise
#   crl-before.pem               signing-ca CRL of 2025-06-01 (lists nothing)
#   crl-after.pem                signing-ca CRL of 2026-06-01 (lists late-revoked)
#   capped-ca.{cert,key}.pem     CA under root-ca whose certificatePolicies allow only the * OID
#   capped-crl.pem               its CRL (empty)
#   claims-l3.{cert,key}.pem     leaf of capped-ca claiming only the *** OID
#   claims-l1-l3.{cert,key}.pem  leaf of capped-ca claiming the * and *** OIDs
#   arc2.{cert,key}.pem          leaf of signing-ca whose policy is 2.999.7.1
set -euo pipefail
OUT=$1
SRC=$(cd "$2" && pwd)
cd "$OUT"
mkdir -p sig/new capped/new
: > sig/index.txt
: > capped/index.txt
echo 1000 > sig/crlnumber
echo 1000 > capped/crlnumber
cat > ca.cnf <<CNF
[ ca_sig ]
dir = sig
database = sig/index.txt
new_certs_dir = sig/new
crlnumber = sig/crlnumber
certificate = $SRC/signing-ca.cert.pem
private_key = $SRC/signing-ca.key.pem
default_md = sha256
policy = any
rand_serial = yes
unique_subject = no
crl_extensions = crl_ext
[ ca_root ]
dir = capped
database = capped/index.txt
new_certs_dir = capped/new
crlnumber = capped/crlnumber
certificate = $SRC/root-ca.cert.pem
private_key = $SRC/root-ca.key.pem
default_md = sha256
policy = any
rand_serial = yes
unique_subject = no
crl_extensions = crl_ext
[ ca_capped ]
dir = capped
database = capped/index2.txt
new_certs_dir = capped/new
crlnumber = capped/crlnumber
certificate = capped-ca.cert.pem
private_key = capped-ca.key.pem
default_md = sha256
policy = any
rand_serial = yes
unique_subject = no
crl_extensions = crl_ext
[ any ]
commonName = supplied
[ crl_ext ]
authorityKeyIdentifier = keyid
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
certificatePolicies = \$ENV::LEAF_POLICIES
crlDistributionPoints = URI:http://crl.paraph.test/signing-ca.crl
[ capped_ca ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
certificatePolicies = 1.3.6.1.4.1.99999.1.1.1
CNF
: > capped/index2.txt
# issue SECTION EXTENSIONS NAME CN [key options]
issue() {
  local section=$1 ext=$2 name=$3 cn=$4
  shift 4
  openssl genpkey "$@" -out "$name.key.pem" 2>/dev/null
  openssl req -new -key "$name.key.pem" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  openssl ca -batch -config ca.cnf -name "$section" -extensions "$ext" -extfile ca.cnf \
    -startdate 20250101000000Z -enddate 20491231235959Z -notext \
    -in "$name.csr" -out "$name.cert.pem" 2>/dev/null
}
gencrl() {
  openssl ca -batch -config ca.cnf -name "$1" -gencrl -md sha256 \
    -crl_lastupdate "$3" -crl_nextupdate 20491201000000Z -out "$2" 2>/dev/null
}
export LEAF_POLICIES=1.3.6.1.4.1.99999.1.1.2
EC=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
LEAF_POLICIES=1.3.6.1.4.1.99999.1.1.2 issue ca_sig leaf late-revoked "TEST Late Revoked" "${EC[@]}"
LEAF_POLICIES=2.999.7.1 issue ca_sig leaf arc2 "TEST Arc Two" "${EC[@]}"
gencrl ca_sig crl-before.pem 20250601000000Z
# Mark late-revoked as revoked on 2026-06-01 for keyCompromise (its database line only).
serial=$(openssl x509 -in late-revoked.cert.pem -noout -serial | cut -d= -f2)
awk -v s="$serial" 'BEGIN{FS=OFS="\t"} $4==s {$1="R"; $3="260601000000Z,keyCompromise"} {print}' \
  sig/index.txt > sig/index.new && mv sig/index.new sig/index.txt
gencrl ca_sig crl-after.pem 20260601000000Z
LEAF_POLICIES=1.3.6.1.4.1.99999.1.1.1 issue ca_root capped_ca capped-ca "TEST Capped CA" \
  -algorithm RSA -pkeyopt rsa_keygen_bits:2048
LEAF_POLICIES=1.3.6.1.4.1.99999.1.1.3 issue ca_capped leaf claims-l3 "TEST Claims L3" "${EC[@]}"
LEAF_POLICIES=1.3.6.1.4.1.99999.1.1.1,1.3.6.1.4.1.99999.1.1.3 \
  issue ca_capped leaf claims-l1-l3 "TEST Claims L1 L3" "${EC[@]}"
gencrl ca_capped capped-crl.pem 20250601000000Z
