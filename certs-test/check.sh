#!/usr/bin/env bash
# Checks the committed TEST PKI of certs-test/ with the openssl CLI only.
# Run by generate.sh after each regeneration; can be run alone from any cwd:
#   bash certs-test/check.sh
# Prints one line per assertion and the openssl command behind it; exits 1 if any fails.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")"

AT=1767225600       # 2026-01-01T00:00:00Z (main validation time of the tests)
AT_LATE=2506118400  # 2049-06-01T00:00:00Z (still inside every validity window)
PASS="paraph-test"
OID_L1="1.3.6.1.4.1.99999.1.1.1"
OID_L2="1.3.6.1.4.1.99999.1.1.2"
OID_L3="1.3.6.1.4.1.99999.1.1.3"
OID_BAD="1.3.6.1.4.1.99999.1.1.99"

failures=0
ok()  { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

# expect_ok DESC openssl-args...   (command must exit 0 and print ": OK")
expect_ok() {
  local desc=$1 out rc=0; shift
  printf '     $ openssl %s\n' "$*"
  out=$(openssl "$@" 2>&1) || rc=$?
  if [[ $rc -eq 0 && $out == *": OK"* ]]; then ok "$desc"; else bad "$desc: rc=$rc $out"; fi
}

# expect_fail DESC PATTERN openssl-args...   (command must fail and print PATTERN)
expect_fail() {
  local desc=$1 pattern=$2 out rc=0; shift 2
  printf '     $ openssl %s\n' "$*"
  out=$(openssl "$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 && $out == *"$pattern"* ]]; then
    ok "$desc -> $(grep -m1 -o 'error [0-9]* at [0-9]* depth lookup: .*' <<<"$out" || echo "rc=$rc")"
  else
    bad "$desc (wanted failure with '$pattern'): rc=$rc $out"
  fi
}

# expect_text DESC FILE-KIND FILE PATTERN [absent]
expect_text() {
  local desc=$1 kind=$2 file=$3 pattern=$4 mode=${5:-present} text
  text=$(openssl "$kind" -in "$file" -noout -text 2>&1)
  if [[ $mode == present && $text == *"$pattern"* ]] || [[ $mode == absent && $text != *"$pattern"* ]]; then
    ok "$desc"
  else
    bad "$desc: '$pattern' $mode expected in $file"
  fi
}

CHAIN=(-CAfile root-ca.cert.pem -untrusted signing-ca.cert.pem -crl_check_all -CRLfile crls.pem)
POLICY=(-policy_check -explicit_policy)

echo "## valid certificates: chain + CRLs + explicit policy at 2026-01-01"
valid=(
  "officer-l1-rsa2048 $OID_L1"
  "officer-l2-rsa3072 $OID_L2"
  "officer-l2-p256 $OID_L2"
  "officer-l3-p384 $OID_L3"
  "officer-l3-p256 $OID_L3"
  "officer-l3-rsa2048 $OID_L3"
  "officer2-l2-p256 $OID_L2"
  "officer3-l3-p256 $OID_L3"
  "seal $OID_L2"
)
for entry in "${valid[@]}"; do
  read -r name oid <<<"$entry"
  expect_ok "$name verifies (policy $oid)" verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$oid" "$name.cert.pem"
  expect_ok "$name verifies at 2049-06-01, auth_level 2" \
    verify "${CHAIN[@]}" -attime "$AT_LATE" -auth_level 2 "${POLICY[@]}" -policy "$oid" "$name.cert.pem"
  expect_text "$name keyUsage critical digitalSignature+nonRepudiation" x509 "$name.cert.pem" \
    "X509v3 Key Usage: critical
                Digital Signature, Non Repudiation"
  expect_text "$name sha256 signature" x509 "$name.cert.pem" "Signature Algorithm: sha256WithRSAEncryption"
done
expect_ok "officer-l2-p256 verifies now (no -attime)" verify "${CHAIN[@]}" "${POLICY[@]}" -policy "$OID_L2" officer-l2-p256.cert.pem
expect_ok "tsa verifies with purpose timestampsign" verify "${CHAIN[@]}" -attime "$AT" -purpose timestampsign tsa.cert.pem
expect_text "tsa has critical EKU timeStamping" x509 tsa.cert.pem "X509v3 Extended Key Usage: critical
                Time Stamping"

echo "## negative fixtures"
expect_fail "neg-revoked is revoked" "certificate revoked" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-revoked.cert.pem
expect_fail "neg-expired is expired at 2026" "certificate has expired" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-expired.cert.pem
expect_fail "neg-not-yet-valid is not yet valid at 2026" "not yet valid" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-not-yet-valid.cert.pem
expect_fail "neg-unknown-issuer has no path to root-ca" "unable to get local issuer certificate" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-unknown-issuer.cert.pem
expect_fail "officer-l2-p256 with the expired signing-ca CRL" "CRL has expired" \
  verify -CAfile root-ca.cert.pem -untrusted signing-ca.cert.pem -crl_check_all \
  -CRLfile root-ca.crl.pem -CRLfile signing-ca.crl-expired.pem -attime "$AT" \
  "${POLICY[@]}" -policy "$OID_L2" officer-l2-p256.cert.pem
expect_fail "neg-ca-no-keycertsign: intermediate without keyCertSign" "invalid CA certificate" \
  verify -CAfile root-ca.cert.pem -untrusted signing-ca-nokcs.cert.pem -crl_check_all \
  -CRLfile crls.pem -CRLfile signing-ca-nokcs.crl.pem -attime "$AT" \
  "${POLICY[@]}" -policy "$OID_L2" neg-ca-no-keycertsign.cert.pem
expect_fail "neg-bad-policy is outside the allowlist" "no explicit policy" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L1" -policy "$OID_L2" -policy "$OID_L3" \
  neg-bad-policy.cert.pem
expect_fail "neg-sha1 refused at auth_level 2" "CA signature digest algorithm too weak" \
  verify "${CHAIN[@]}" -attime "$AT" -auth_level 2 "${POLICY[@]}" -policy "$OID_L2" neg-sha1.cert.pem
expect_fail "neg-rsa1024 refused at auth_level 2" "EE certificate key too weak" \
  verify "${CHAIN[@]}" -attime "$AT" -auth_level 2 "${POLICY[@]}" -policy "$OID_L2" neg-rsa1024.cert.pem

echo "## negative fixtures carry only their own defect"
expect_ok "neg-no-nonrepudiation passes path validation (openssl ignores nonRepudiation)" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-no-nonrepudiation.cert.pem
expect_text "neg-no-nonrepudiation keyUsage is digitalSignature only" x509 neg-no-nonrepudiation.cert.pem \
  "X509v3 Key Usage: critical
                Digital Signature
"
expect_text "neg-no-nonrepudiation has no nonRepudiation" x509 neg-no-nonrepudiation.cert.pem "Non Repudiation" absent
expect_ok "neg-bad-policy passes path validation without explicit policy" \
  verify "${CHAIN[@]}" -attime "$AT" neg-bad-policy.cert.pem
expect_text "neg-bad-policy carries $OID_BAD" x509 neg-bad-policy.cert.pem "Policy: $OID_BAD"
expect_ok "neg-sha1 passes at OpenSSL 3.0 default auth_level 1" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-sha1.cert.pem
expect_text "neg-sha1 is signed sha1WithRSAEncryption" x509 neg-sha1.cert.pem "Signature Algorithm: sha1WithRSAEncryption"
expect_ok "neg-rsa1024 passes at OpenSSL 3.0 default auth_level 1" \
  verify "${CHAIN[@]}" -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-rsa1024.cert.pem
expect_text "neg-rsa1024 has a 1024-bit key" x509 neg-rsa1024.cert.pem "Public-Key: (1024 bit)"
expect_ok "neg-revoked passes without CRL checking" \
  verify -CAfile root-ca.cert.pem -untrusted signing-ca.cert.pem -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-revoked.cert.pem
expect_ok "neg-expired passes at 2020-06-01 (no CRL)" \
  verify -CAfile root-ca.cert.pem -untrusted signing-ca.cert.pem -attime 1590969600 "${POLICY[@]}" -policy "$OID_L2" neg-expired.cert.pem
expect_ok "neg-not-yet-valid passes at 2049-06-01" \
  verify "${CHAIN[@]}" -attime "$AT_LATE" "${POLICY[@]}" -policy "$OID_L2" neg-not-yet-valid.cert.pem
expect_ok "neg-unknown-issuer verifies against rogue-ca" \
  verify -CAfile rogue-ca.cert.pem -crl_check_all -CRLfile rogue-ca.crl.pem -attime "$AT" "${POLICY[@]}" -policy "$OID_L2" neg-unknown-issuer.cert.pem

echo "## CRLs"
for crl in root-ca.crl.pem signing-ca.crl.pem signing-ca.crl-expired.pem signing-ca-nokcs.crl.pem rogue-ca.crl.pem; do
  expect_text "$crl is v2" crl "$crl" "Version 2 (0x1)"
  expect_text "$crl has a CRL Number" crl "$crl" "X509v3 CRL Number"
  expect_text "$crl has an AKI" crl "$crl" "X509v3 Authority Key Identifier"
done
for crl in root-ca.crl.pem signing-ca.crl.pem signing-ca-nokcs.crl.pem rogue-ca.crl.pem; do
  expect_text "$crl lastUpdate 2025-01-01" crl "$crl" "Last Update: Jan  1 00:00:00 2025 GMT"
  expect_text "$crl nextUpdate 2049-12-01" crl "$crl" "Next Update: Dec  1 00:00:00 2049 GMT"
done
expect_text "root-ca.crl.pem is empty" crl root-ca.crl.pem "No Revoked Certificates."
expect_text "signing-ca.crl-expired.pem window 2020-01-01..2020-02-01" crl signing-ca.crl-expired.pem \
  "Last Update: Jan  1 00:00:00 2020 GMT
        Next Update: Feb  1 00:00:00 2020 GMT"
revoked_serial=$(openssl x509 -in neg-revoked.cert.pem -noout -serial)
expect_text "signing-ca.crl.pem lists neg-revoked (${revoked_serial#serial=}), keyCompromise" crl signing-ca.crl.pem \
  "Serial Number: ${revoked_serial#serial=}
        Revocation Date: Jan  1 00:00:00 2025 GMT
        CRL entry extensions:
            X509v3 CRL Reason Code: 
                Key Compromise"
for pair in "root-ca.crl.pem root-ca.cert.pem" "signing-ca.crl.pem signing-ca.cert.pem" \
            "signing-ca.crl-expired.pem signing-ca.cert.pem" "signing-ca-nokcs.crl.pem signing-ca-nokcs.cert.pem" \
            "rogue-ca.crl.pem rogue-ca.cert.pem"; do
  read -r crl ca <<<"$pair"
  if openssl crl -in "$crl" -CAfile "$ca" -noout 2>&1 | grep -q "verify OK"; then
    ok "$crl signature verifies with $ca"
  else
    bad "$crl signature does not verify with $ca"
  fi
done

echo "## CA certificates"
expect_text "root-ca critical CA:TRUE" x509 root-ca.cert.pem "X509v3 Basic Constraints: critical
                CA:TRUE"
for ca in root-ca signing-ca rogue-ca; do
  expect_text "$ca keyUsage critical keyCertSign+cRLSign" x509 "$ca.cert.pem" "X509v3 Key Usage: critical
                Certificate Sign, CRL Sign"
done
for ca in signing-ca signing-ca-nokcs; do
  expect_text "$ca critical CA:TRUE pathlen:0" x509 "$ca.cert.pem" "X509v3 Basic Constraints: critical
                CA:TRUE, pathlen:0"
  expect_text "$ca anyPolicy" x509 "$ca.cert.pem" "Policy: X509v3 Any Policy"
done
expect_text "signing-ca-nokcs keyUsage lacks keyCertSign" x509 signing-ca-nokcs.cert.pem "X509v3 Key Usage: critical
                Digital Signature, CRL Sign"
expect_ok "signing-ca verifies under root-ca" verify -CAfile root-ca.cert.pem -crl_check -CRLfile root-ca.crl.pem -attime "$AT" signing-ca.cert.pem
expect_ok "chain.pem as -untrusted builds the officer path" verify -CAfile root-ca.cert.pem -untrusted chain.pem -crl_check_all -CRLfile crls.pem -attime "$AT" officer-l2-p256.cert.pem
if [[ $(grep -c "BEGIN CERTIFICATE" chain.pem) -eq 2 && $(grep -c "BEGIN X509 CRL" crls.pem) -eq 2 ]]; then
  ok "chain.pem has 2 certificates, crls.pem has 2 CRLs"
else
  bad "chain.pem / crls.pem contents"
fi

echo "## keys and PKCS#12 (passphrase $PASS)"
for p12 in *.p12; do
  name=${p12%.p12}
  if [[ $(head -n1 "$name.key.pem") != "-----BEGIN PRIVATE KEY-----" ]]; then
    bad "$name.key.pem is not an unencrypted PKCS#8 PEM"; continue
  fi
  certs=$(openssl pkcs12 -in "$p12" -passin "pass:$PASS" -nokeys 2>&1) \
    || { bad "$p12 does not open: $certs"; continue; }
  n=$(grep -c "BEGIN CERTIFICATE" <<<"$certs" || true)
  keypub=$(openssl pkcs12 -in "$p12" -passin "pass:$PASS" -nocerts -nodes 2>/dev/null | openssl pkey -pubout)
  certpub=$(openssl x509 -in "$name.cert.pem" -noout -pubkey)
  filepub=$(openssl pkey -in "$name.key.pem" -pubout)
  info=$(openssl pkcs12 -in "$p12" -passin "pass:$PASS" -info -noout 2>&1)
  if [[ $n -eq 2 && $keypub == "$certpub" && $filepub == "$certpub" \
        && $info == *"MAC: sha256"* && $info == *"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"* ]]; then
    ok "$p12 opens (-nokeys: 2 certs), key matches $name.cert.pem and $name.key.pem, AES-256-CBC/sha256 MAC"
  else
    bad "$p12: certs=$n keymatch=$([[ $keypub == "$certpub" ]] && echo y || echo n) info=$info"
  fi
done

echo
if [[ $failures -eq 0 ]]; then
  echo "check.sh: all checks passed"
else
  echo "check.sh: $failures check(s) FAILED"
  exit 1
fi
