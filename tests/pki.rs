//! Path validation (`paraph::pki`) against the test PKI in certs-test/ and against certificates
//! generated here with the openssl command line. Every validation time is explicit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use openssl::x509::X509;
use paraph::pki::{
    self, load_certs, load_certs_file, load_crls, load_crls_file, parse_rfc3339, run_verify,
    CliOutcome, Crl, PkiError, PkiVerifyArgs, Profile, Refusal, VerifyOptions,
};

const T: &str = "2026-06-01T00:00:00Z";
const L1: &str = "1.3.6.1.4.1.99999.1.1.1";
const L2: &str = "1.3.6.1.4.1.99999.1.1.2";
const L3: &str = "1.3.6.1.4.1.99999.1.1.3";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-test")
}

fn file(name: &str) -> PathBuf {
    dir().join(name)
}

fn cert(name: &str) -> X509 {
    load_certs_file(file(name)).unwrap().remove(0)
}

fn crls(names: &[&str]) -> Vec<Crl> {
    names
        .iter()
        .flat_map(|n| load_crls_file(file(n)).unwrap())
        .collect()
}

fn at(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

fn levels() -> BTreeMap<String, u8> {
    [(L1, 1), (L2, 2), (L3, 3)]
        .into_iter()
        .map(|(o, l)| (o.to_string(), l))
        .collect()
}

/// The RGS options a tenant trusting certs-test/ would use.
fn rgs() -> VerifyOptions {
    let mut o = VerifyOptions::new(at(T), Profile::Rgs);
    o.trust_anchors = vec![cert("root-ca.cert.pem")];
    o.untrusted = vec![cert("signing-ca.cert.pem")];
    o.crls = crls(&["crls.pem"]);
    o.policy_levels = levels();
    o
}

fn rfc5280() -> VerifyOptions {
    let mut o = rgs();
    o.profile = Profile::Rfc5280;
    o.policy_levels.clear();
    o
}

fn refusal(leaf: &X509, opts: &VerifyOptions) -> Refusal {
    match pki::verify(leaf, opts) {
        Ok(v) => panic!("expected a refusal, got a valid chain for {}", v.subject()),
        Err(r) => r,
    }
}

fn code(leaf: &str, opts: &VerifyOptions) -> &'static str {
    refusal(&cert(leaf), opts).code()
}

// ------------------------------------------------------------------------------ valid leaves

#[test]
fn every_valid_officer_passes_rgs_with_its_level() {
    let cases = [
        ("officer-l1-rsa2048", 1, L1),
        ("officer-l2-rsa3072", 2, L2),
        ("officer-l2-p256", 2, L2),
        ("officer-l3-p384", 3, L3),
        ("officer-l3-p256", 3, L3),
        ("officer-l3-rsa2048", 3, L3),
        ("officer2-l2-p256", 2, L2),
        ("officer3-l3-p256", 3, L3),
        ("seal", 2, L2),
    ];
    for (name, level, policy) in cases {
        let leaf = cert(&format!("{name}.cert.pem"));
        let v = pki::verify(&leaf, &rgs()).unwrap_or_else(|r| panic!("{name}: {} {r}", r.code()));
        assert_eq!(v.level(), Some(level), "{name}");
        assert_eq!(v.policy(), Some(policy), "{name}");
        assert!(v.subject().contains("CN=TEST "), "{name}: {}", v.subject());
        assert_eq!(v.chain().len(), 3, "{name}: leaf, signing-ca, root-ca");
        assert_eq!(
            v.chain()[2].to_der().unwrap(),
            cert("root-ca.cert.pem").to_der().unwrap()
        );
        let der = leaf.to_der().unwrap();
        assert_eq!(
            v.fingerprint_sha256().as_slice(),
            openssl::sha::sha256(&der).as_slice()
        );
        assert_eq!(v.not_before(), at("2025-01-01T00:00:00Z"), "{name}");
        assert_eq!(v.not_after(), at("2049-12-31T23:59:59Z"), "{name}");
        assert_eq!(v.validated_at(), at(T));
        assert!(!v.serial_hex().is_empty());
        // The required level is met exactly and from below.
        let mut o = rgs();
        o.required_level = Some(level);
        assert!(pki::verify(&leaf, &o).is_ok(), "{name} at its own level");
    }
}

#[test]
fn level_below_the_required_level_is_refused() {
    let mut o = rgs();
    o.required_level = Some(2);
    let r = refusal(&cert("officer-l1-rsa2048.cert.pem"), &o);
    assert_eq!(r.code(), "LEVEL_TOO_LOW");
    assert_eq!(
        r,
        Refusal::LevelTooLow {
            level: 1,
            required: 2,
            policy: L1.into()
        }
    );
    o.required_level = Some(3);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "LEVEL_TOO_LOW");
    assert!(pki::verify(&cert("officer-l3-p384.cert.pem"), &o).is_ok());
}

#[test]
fn a_level_map_decides_the_level_not_the_oid() {
    let mut o = rgs();
    o.policy_levels.insert(L1.into(), 3);
    let v = pki::verify(&cert("officer-l1-rsa2048.cert.pem"), &o).unwrap();
    assert_eq!(v.level(), Some(3));
}

// ------------------------------------------------------------------------------ negative fixtures

#[test]
fn each_negative_fixture_is_refused_with_its_own_code() {
    let o = rgs();
    assert_eq!(code("neg-expired.cert.pem", &o), "EXPIRED");
    assert_eq!(code("neg-not-yet-valid.cert.pem", &o), "NOT_YET_VALID");
    assert_eq!(code("neg-revoked.cert.pem", &o), "REVOKED");
    assert_eq!(code("neg-no-nonrepudiation.cert.pem", &o), "KEY_USAGE");
    assert_eq!(code("neg-rsa1024.cert.pem", &o), "WEAK_ALGORITHM");
    assert_eq!(code("neg-sha1.cert.pem", &o), "WEAK_ALGORITHM");
    assert_eq!(code("neg-unknown-issuer.cert.pem", &o), "CHAIN_NOT_TRUSTED");
    assert_eq!(code("neg-bad-policy.cert.pem", &o), "NO_POLICY");

    let mut nokcs = rgs();
    nokcs.untrusted.push(cert("signing-ca-nokcs.cert.pem"));
    nokcs.crls.extend(crls(&["signing-ca-nokcs.crl.pem"]));
    assert_eq!(
        code("neg-ca-no-keycertsign.cert.pem", &nokcs),
        "CA_KEY_USAGE"
    );

    let mut expired_crl = rgs();
    expired_crl.crls = crls(&["root-ca.crl.pem", "signing-ca.crl-expired.pem"]);
    assert_eq!(
        code("officer-l2-p256.cert.pem", &expired_crl),
        "CRL_EXPIRED"
    );
}

#[test]
fn refusal_messages_name_the_defect() {
    let o = rgs();
    let rsa = refusal(&cert("neg-rsa1024.cert.pem"), &o).to_string();
    let sha1 = refusal(&cert("neg-sha1.cert.pem"), &o).to_string();
    assert_ne!(rsa, sha1);
    assert!(rsa.contains("1024 bits"), "{rsa}");
    assert!(!rsa.contains("SHA-1"), "{rsa}");
    assert!(sha1.contains("SHA-1"), "{sha1}");
    assert!(!sha1.contains("bits"), "{sha1}");

    let revoked = refusal(&cert("neg-revoked.cert.pem"), &o);
    let text = revoked.to_string();
    assert!(text.contains("keyCompromise"), "{text}");
    assert!(text.contains("2025-01-01"), "{text}");
    assert_eq!(revoked.cert().unwrap().depth, 0);

    let expired = refusal(&cert("neg-expired.cert.pem"), &o).to_string();
    assert!(expired.contains("2021-01-01"), "{expired}");
    assert!(expired.contains(T), "{expired}");

    let mut expired_crl = rgs();
    expired_crl.crls = crls(&["root-ca.crl.pem", "signing-ca.crl-expired.pem"]);
    let crl = refusal(&cert("officer-l2-p256.cert.pem"), &expired_crl).to_string();
    assert!(crl.contains("2020-02-01"), "{crl}");

    let policy = refusal(&cert("neg-bad-policy.cert.pem"), &o).to_string();
    assert!(policy.contains("1.3.6.1.4.1.99999.1.1.99"), "{policy}");

    let unknown = refusal(&cert("neg-unknown-issuer.cert.pem"), &o).to_string();
    assert!(unknown.contains("TEST Rogue CA"), "{unknown}");
}

#[test]
fn unknown_issuer_is_untrusted_even_with_its_ca_as_intermediate() {
    let mut o = rgs();
    o.untrusted.push(cert("rogue-ca.cert.pem"));
    o.crls.extend(crls(&["rogue-ca.crl.pem"]));
    assert_eq!(code("neg-unknown-issuer.cert.pem", &o), "CHAIN_NOT_TRUSTED");
    let mut none = rgs();
    none.trust_anchors.clear();
    assert_eq!(code("officer-l2-p256.cert.pem", &none), "CHAIN_NOT_TRUSTED");
}

#[test]
fn each_negative_fixture_passes_when_its_defect_is_not_looked_at() {
    // Outside the RGS profile, algorithms, nonRepudiation and the allowlist are not checked.
    let o = rfc5280();
    for name in [
        "neg-rsa1024",
        "neg-sha1",
        "neg-no-nonrepudiation",
        "neg-bad-policy",
    ] {
        let r = pki::verify(&cert(&format!("{name}.cert.pem")), &o);
        assert!(r.is_ok(), "{name}: {:?}", r.err());
    }
    // At a time inside their validity (the current CRLs start in 2025: no revocation check).
    let mut old = rgs();
    old.at = at("2020-06-01T00:00:00Z");
    old.check_revocation = false;
    assert!(pki::verify(&cert("neg-expired.cert.pem"), &old).is_ok());
    let mut late = rgs();
    late.at = at("2048-06-01T00:00:00Z");
    assert!(pki::verify(&cert("neg-not-yet-valid.cert.pem"), &late).is_ok());
    // neg-revoked without revocation checking.
    let mut norev = rgs();
    norev.check_revocation = false;
    assert!(pki::verify(&cert("neg-revoked.cert.pem"), &norev).is_ok());
}

#[test]
fn all_defects_are_listed_in_precedence_order() {
    // neg-expired at a time before the CRLs exist: expired AND the CRL is not yet valid.
    let mut o = rgs();
    o.at = at("2022-01-01T00:00:00Z");
    let all = pki::verify_all(&cert("neg-expired.cert.pem"), &o).unwrap_err();
    let codes: Vec<_> = all.iter().map(Refusal::code).collect();
    assert_eq!(codes[0], "EXPIRED", "{codes:?}");
    assert!(codes.contains(&"CRL_NOT_YET_VALID"), "{codes:?}");
    assert_eq!(
        pki::verify(&cert("neg-expired.cert.pem"), &o)
            .unwrap_err()
            .code(),
        "EXPIRED"
    );
}

// ------------------------------------------------------------------------------ revocation

#[test]
fn revocation_needs_a_crl_for_every_certificate_but_the_anchor() {
    let mut o = rgs();
    o.crls.clear();
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "CRL_NOT_FOUND");
    let mut o = rfc5280();
    o.crls.clear();
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "CRL_NOT_FOUND");
    // Only the signing CA's CRL: signing-ca itself has none from root-ca.
    o.crls = crls(&["signing-ca.crl.pem"]);
    let r = refusal(&cert("officer-l2-p256.cert.pem"), &o);
    assert_eq!(r.code(), "CRL_NOT_FOUND");
    assert_eq!(r.cert().unwrap().depth, 1, "{r}");
    // A CRL from an unrelated CA does not count.
    o.crls = crls(&["root-ca.crl.pem", "rogue-ca.crl.pem"]);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "CRL_NOT_FOUND");
    // Without revocation checking the same path passes.
    o.crls.clear();
    o.check_revocation = false;
    assert!(pki::verify(&cert("officer-l2-p256.cert.pem"), &o).is_ok());
    let mut r = rgs();
    r.crls.clear();
    r.check_revocation = false;
    assert!(pki::verify(&cert("officer-l2-p256.cert.pem"), &r).is_ok());
}

#[test]
fn an_expired_crl_is_a_failure_even_beside_nothing_else() {
    let mut o = rfc5280();
    o.crls = crls(&["root-ca.crl.pem", "signing-ca.crl-expired.pem"]);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "CRL_EXPIRED");
    // With the current CRL present too, the current one is used.
    o.crls.extend(crls(&["signing-ca.crl.pem"]));
    assert!(pki::verify(&cert("officer-l2-p256.cert.pem"), &o).is_ok());
}

#[test]
fn a_tampered_crl_is_invalid() {
    let pem = std::fs::read(file("signing-ca.crl.pem")).unwrap();
    let crl = load_crls(&pem).unwrap().remove(0);
    let mut der = crl.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad = Crl::from_der(&der).unwrap();
    let mut o = rfc5280();
    o.crls = vec![crls(&["root-ca.crl.pem"]).remove(0), bad];
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "CRL_INVALID");
}

// ------------------------------------------------------------------------------ RFC 5280 policies

#[test]
fn initial_policy_set_and_explicit_policy_are_honoured() {
    let leaf = cert("officer-l2-p256.cert.pem");
    let mut o = rfc5280();
    o.explicit_policy = true;
    o.initial_policy_set = vec![L3.into()];
    assert_eq!(refusal(&leaf, &o).code(), "NO_POLICY");
    o.initial_policy_set = vec![L2.into()];
    assert!(pki::verify(&leaf, &o).is_ok());
    o.initial_policy_set = vec![L1.into(), L2.into(), L3.into()];
    assert!(pki::verify(&leaf, &o).is_ok());
    // Without initial-explicit-policy the path is valid with an empty user policy set.
    o.explicit_policy = false;
    o.initial_policy_set = vec![L3.into()];
    assert!(pki::verify(&leaf, &o).is_ok());
    // The CAs carry only anyPolicy: inhibiting anyPolicy leaves no valid policy.
    o.explicit_policy = true;
    o.initial_policy_set = vec![L2.into()];
    o.inhibit_any_policy = true;
    assert_eq!(refusal(&leaf, &o).code(), "NO_POLICY");
    // Inhibiting policy mapping changes nothing here (no mappings).
    o.inhibit_any_policy = false;
    o.inhibit_policy_mapping = true;
    assert!(pki::verify(&leaf, &o).is_ok());
}

#[test]
fn rgs_initial_policy_set_restricts_the_allowlist() {
    let mut o = rgs();
    o.initial_policy_set = vec![L3.into()];
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "NO_POLICY");
    assert!(pki::verify(&cert("officer-l3-p384.cert.pem"), &o).is_ok());
    // No allowlist at all: nothing is trusted for signatures.
    let mut empty = rgs();
    empty.policy_levels.clear();
    assert_eq!(code("officer-l2-p256.cert.pem", &empty), "NO_POLICY");
    // The TSA certificate has no policy at all.
    assert_eq!(code("tsa.cert.pem", &rgs()), "NO_POLICY");
}

#[test]
fn bad_options_are_refused_not_ignored() {
    let mut o = rgs();
    o.policy_levels.insert("not-an-oid".into(), 2);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "INVALID_OPTIONS");
    let mut o = rgs();
    o.policy_levels.insert(L2.into(), 4);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "INVALID_OPTIONS");
    let mut o = rgs();
    o.required_level = Some(0);
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "INVALID_OPTIONS");
    let mut o = rfc5280();
    o.initial_policy_set = vec!["anyPolicy".into()];
    assert_eq!(code("officer-l2-p256.cert.pem", &o), "INVALID_OPTIONS");
}

// ------------------------------------------------------------------------------ tampering, garbage

fn flip(der: &[u8], index: usize) -> Vec<u8> {
    let mut d = der.to_vec();
    d[index] ^= 0x01;
    d
}

#[test]
fn a_tampered_certificate_is_never_valid() {
    for name in ["officer-l2-rsa3072", "officer-l2-p256", "officer-l3-p384"] {
        let der = cert(&format!("{name}.cert.pem")).to_der().unwrap();
        // Last byte: inside the signature value. Byte 200: inside the signed TBSCertificate.
        for index in [der.len() - 1, der.len() - 10, 200] {
            let tampered = flip(&der, index);
            match load_certs(&tampered) {
                Err(_) => {} // no longer parses: fine, never valid
                Ok(certs) => {
                    for profile in [Profile::Rgs, Profile::Rfc5280] {
                        let mut o = rgs();
                        o.profile = profile;
                        match pki::verify(&certs[0], &o) {
                            Ok(_) => panic!("{name} with byte {index} flipped was accepted"),
                            Err(r) if index != 200 => {
                                assert_eq!(r.code(), "SIG_CRYPTO_FAILURE", "{name}@{index}: {r}")
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_tampered_intermediate_is_a_signature_failure() {
    let der = cert("signing-ca.cert.pem").to_der().unwrap();
    let bad = load_certs(&flip(&der, der.len() - 1)).unwrap().remove(0);
    let mut o = rgs();
    o.untrusted = vec![bad];
    let r = refusal(&cert("officer-l2-p256.cert.pem"), &o);
    assert_eq!(r.code(), "SIG_CRYPTO_FAILURE", "{r}");
    assert_eq!(r.cert().unwrap().depth, 1);
}

#[test]
fn garbage_input_is_a_clean_error() {
    for garbage in [
        &b""[..],
        b"garbage",
        b"\x30\x82\xff\xff\x00",
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        b"\xff\xfe\xfd-----BEGIN CERTIFICATE-----",
    ] {
        assert!(load_certs(garbage).is_err(), "{garbage:?}");
        assert!(load_crls(garbage).is_err(), "{garbage:?}");
    }
    // A key file is not a certificate, and the error says what it is.
    let key = std::fs::read(file("officer-l2-p256.key.pem")).unwrap();
    assert!(matches!(
        load_certs(&key),
        Err(PkiError::WrongKind(m)) if m == "this is a private key, not a certificate"
    ));
    // A certificate is not a CRL and vice versa.
    let c = std::fs::read(file("officer-l2-p256.cert.pem")).unwrap();
    assert!(matches!(
        load_crls(&c),
        Err(PkiError::WrongKind(m)) if m == "this is a certificate, not a CRL"
    ));
    let der = cert("officer-l2-p256.cert.pem").to_der().unwrap();
    assert!(load_crls(&der).is_err());
    // Truncated DER.
    assert!(load_certs(&der[..der.len() / 2]).is_err());
    // Missing file.
    assert!(matches!(
        load_certs_file(file("does-not-exist.pem")),
        Err(PkiError::Io { .. })
    ));
}

#[test]
fn pem_bundles_and_der_load() {
    assert_eq!(load_certs_file(file("chain.pem")).unwrap().len(), 2);
    assert_eq!(load_crls_file(file("crls.pem")).unwrap().len(), 2);
    let a = cert("root-ca.cert.pem").to_der().unwrap();
    let b = cert("signing-ca.cert.pem").to_der().unwrap();
    let both = [a.clone(), b].concat();
    assert_eq!(load_certs(&both).unwrap().len(), 2);
    assert_eq!(load_certs(&a).unwrap().len(), 1);
    let crl = crls(&["root-ca.crl.pem"]).remove(0);
    assert_eq!(load_crls(crl.der()).unwrap().len(), 1);
    // A bundle with a key and a certificate: the key is skipped.
    let mixed = [
        std::fs::read(file("officer-l2-p256.key.pem")).unwrap(),
        std::fs::read(file("officer-l2-p256.cert.pem")).unwrap(),
    ]
    .concat();
    assert_eq!(load_certs(&mixed).unwrap().len(), 1);
}

// ------------------------------------------------------------------------------ generated certificates

/// A scratch directory where certificates are made with the openssl command line, issued by the
/// committed test CA keys, with fixed validity dates.
struct Gen {
    dir: tempfile::TempDir,
}

impl Gen {
    fn new() -> Gen {
        Gen {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl on PATH");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An `openssl ca` configuration with the extension section `ext` set to `ext_body`.
    fn ca_config(&self, tag: &str, ext_body: &str) -> PathBuf {
        let db = self.path(&format!("{tag}-db"));
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("index.txt.attr"), "unique_subject = no\n").unwrap();
        std::fs::write(db.join("crlnumber"), "01\n").unwrap();
        let cnf = format!(
            "[ ca ]\ndefault_ca = ca_gen\n\
             [ ca_gen ]\ndir = {db}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir\n\
             crlnumber = $dir/crlnumber\ndefault_md = sha256\npolicy = policy_any\n\
             preserve = yes\nemail_in_dn = no\nunique_subject = no\ncopy_extensions = none\n\
             rand_serial = yes\ncrl_extensions = crl_ext\n\
             [ policy_any ]\ncountryName = optional\norganizationName = optional\n\
             organizationalUnitName = optional\ncommonName = supplied\n\
             [ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n\
             [ ext ]\n{ext_body}\n\
             [ dir_sect ]\nO = Some Other Organisation\n\
             [ req ]\ndistinguished_name = req_dn\nprompt = no\n[ req_dn ]\nCN = placeholder\n",
            db = db.display()
        );
        let path = self.path(&format!("{tag}.cnf"));
        std::fs::write(&path, cnf).unwrap();
        path
    }

    /// Issues `name` (new P-256 key, subject `subj`) by the CA (`ca_cert`, `ca_key`) with the
    /// extensions `ext`, valid 2025-01-01 .. 2049-12-31. Returns the certificate path.
    fn issue(&self, name: &str, subj: &str, ca_cert: &Path, ca_key: &Path, ext: &str) -> PathBuf {
        let key = self.path(&format!("{name}.key.pem"));
        let csr = self.path(&format!("{name}.csr.pem"));
        let out = self.path(&format!("{name}.cert.pem"));
        let cnf = self.ca_config(name, ext);
        let s = |p: &Path| p.display().to_string();
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-pkeyopt",
            "ec_param_enc:named_curve",
            "-out",
            &s(&key),
        ]);
        self.openssl(&[
            "req",
            "-new",
            "-config",
            &s(&cnf),
            "-key",
            &s(&key),
            "-subj",
            subj,
            "-out",
            &s(&csr),
        ]);
        self.openssl(&[
            "ca",
            "-batch",
            "-config",
            &s(&cnf),
            "-cert",
            &s(ca_cert),
            "-keyfile",
            &s(ca_key),
            "-in",
            &s(&csr),
            "-out",
            &s(&out),
            "-extensions",
            "ext",
            "-startdate",
            "20250101000000Z",
            "-enddate",
            "20491231235959Z",
            "-md",
            "sha256",
            "-notext",
        ]);
        out
    }

    /// An empty CRL by the CA, thisUpdate 2025-01-01, nextUpdate 2049-12-01.
    fn crl(&self, tag: &str, ca_cert: &Path, ca_key: &Path) -> PathBuf {
        let cnf = self.ca_config(&format!("{tag}-crl"), "");
        let out = self.path(&format!("{tag}.crl.pem"));
        let s = |p: &Path| p.display().to_string();
        self.openssl(&[
            "ca",
            "-batch",
            "-config",
            &s(&cnf),
            "-gencrl",
            "-cert",
            &s(ca_cert),
            "-keyfile",
            &s(ca_key),
            "-md",
            "sha256",
            "-crl_lastupdate",
            "20250101000000Z",
            "-crl_nextupdate",
            "20491201000000Z",
            "-out",
            &s(&out),
        ]);
        out
    }

    /// Puts `name` (issued by [`Gen::issue`]) on hold in its issuer's database and returns a
    /// current CRL of that issuer listing it with reason certificateHold.
    fn hold_and_crl(&self, name: &str, ca_cert: &Path, ca_key: &Path) -> PathBuf {
        let cnf = self.path(&format!("{name}.cnf"));
        let cert = self.path(&format!("{name}.cert.pem"));
        let out = self.path(&format!("{name}-hold.crl.pem"));
        let s = |p: &Path| p.display().to_string();
        let ca = [
            "-batch".to_string(),
            "-config".into(),
            s(&cnf),
            "-cert".into(),
            s(ca_cert),
            "-keyfile".into(),
            s(ca_key),
        ];
        let ca: Vec<&str> = ca.iter().map(String::as_str).collect();
        let cert = s(&cert);
        let out_s = s(&out);
        self.openssl(
            &[
                &["ca"][..],
                &ca,
                &[
                    "-revoke",
                    &cert,
                    "-crl_reason",
                    "certificateHold",
                    "-crl_hold",
                    "holdInstructionReject",
                ],
            ]
            .concat(),
        );
        self.openssl(
            &[
                &["ca"][..],
                &ca,
                &[
                    "-gencrl",
                    "-md",
                    "sha256",
                    "-crl_lastupdate",
                    "20250101000000Z",
                    "-crl_nextupdate",
                    "20491201000000Z",
                    "-out",
                    &out_s,
                ],
            ]
            .concat(),
        );
        out
    }
}

const LEAF_EXT: &str = "keyUsage = critical, digitalSignature, nonRepudiation\n\
                        subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n\
                        certificatePolicies = 1.3.6.1.4.1.99999.1.1.2";
const SUBCA_EXT: &str = "basicConstraints = critical, CA:true\n\
                         keyUsage = critical, keyCertSign, cRLSign\n\
                         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n\
                         certificatePolicies = 2.5.29.32.0";
const LEAF_SUBJ: &str = "/C=FR/O=Commune de Testville/CN=TEST Generated Officer";

fn signing_ca() -> (PathBuf, PathBuf) {
    (file("signing-ca.cert.pem"), file("signing-ca.key.pem"))
}

fn root_ca() -> (PathBuf, PathBuf) {
    (file("root-ca.cert.pem"), file("root-ca.key.pem"))
}

#[test]
fn an_unknown_critical_extension_is_refused() {
    let g = Gen::new();
    let (ca, key) = signing_ca();
    let ext = format!("{LEAF_EXT}\n1.3.6.1.4.1.99999.42.1 = critical, DER:05:00");
    let leaf = load_certs_file(g.issue("crit", LEAF_SUBJ, &ca, &key, &ext))
        .unwrap()
        .remove(0);
    for opts in [rgs(), rfc5280()] {
        let r = refusal(&leaf, &opts);
        assert_eq!(r.code(), "UNKNOWN_CRITICAL_EXTENSION", "{r}");
        assert!(r.to_string().contains("1.3.6.1.4.1.99999.42.1"), "{r}");
    }
    // The same extension, not critical, is fine.
    let ext = format!("{LEAF_EXT}\n1.3.6.1.4.1.99999.42.1 = DER:05:00");
    let ok = load_certs_file(g.issue("noncrit", LEAF_SUBJ, &ca, &key, &ext))
        .unwrap()
        .remove(0);
    let v = pki::verify(&ok, &rgs()).unwrap();
    assert_eq!(v.level(), Some(2));
}

#[test]
fn a_ca_below_a_pathlen_zero_ca_exceeds_the_path_length() {
    let g = Gen::new();
    let (ca, key) = signing_ca();
    let sub = g.issue(
        "sub-ca",
        "/C=FR/O=Paraph Test PKI/CN=TEST Sub CA",
        &ca,
        &key,
        SUBCA_EXT,
    );
    let sub_key = g.path("sub-ca.key.pem");
    let leaf_path = g.issue("deep-leaf", LEAF_SUBJ, &sub, &sub_key, LEAF_EXT);
    let leaf = load_certs_file(&leaf_path).unwrap().remove(0);
    let mut o = rfc5280();
    o.untrusted.push(load_certs_file(&sub).unwrap().remove(0));
    o.check_revocation = false;
    let r = refusal(&leaf, &o);
    assert_eq!(r.code(), "PATH_LENGTH", "{r}");
    // With revocation on (the sub-CA has no CRL), the path length still comes first.
    o.check_revocation = true;
    assert_eq!(refusal(&leaf, &o).code(), "PATH_LENGTH");
    // And under the RGS profile.
    let mut r = rgs();
    r.untrusted = o.untrusted.clone();
    assert_eq!(refusal(&leaf, &r).code(), "PATH_LENGTH");
    // The same sub-CA directly under the root (no pathlen) is fine.
    let (root, root_key) = root_ca();
    let sub2 = g.issue(
        "sub-ca2",
        "/C=FR/O=Paraph Test PKI/CN=TEST Sub CA 2",
        &root,
        &root_key,
        SUBCA_EXT,
    );
    let leaf2 = g.issue(
        "leaf2",
        LEAF_SUBJ,
        &sub2,
        &g.path("sub-ca2.key.pem"),
        LEAF_EXT,
    );
    let crl2 = g.crl("sub-ca2", &sub2, &g.path("sub-ca2.key.pem"));
    let mut ok = rgs();
    ok.untrusted = load_certs_file(&sub2).unwrap();
    ok.crls = crls(&["root-ca.crl.pem"]);
    ok.crls.extend(load_crls_file(&crl2).unwrap());
    let v = pki::verify(&load_certs_file(&leaf2).unwrap()[0], &ok).unwrap();
    assert_eq!(v.chain().len(), 3);
}

#[test]
fn a_non_ca_issuer_is_refused() {
    // An officer certificate (no basicConstraints, no keyCertSign) used to issue another.
    let g = Gen::new();
    let issuer = file("officer-l2-p256.cert.pem");
    let issuer_key = file("officer-l2-p256.key.pem");
    let leaf = g.issue("by-officer", LEAF_SUBJ, &issuer, &issuer_key, LEAF_EXT);
    let mut o = rfc5280();
    o.untrusted.push(cert("officer-l2-p256.cert.pem"));
    o.check_revocation = false;
    let r = refusal(&load_certs_file(&leaf).unwrap()[0], &o);
    assert_eq!(r.code(), "CA_NOT_CA", "{r}");
    assert_eq!(r.cert().unwrap().depth, 1);
}

#[test]
fn a_name_constraint_violation_is_refused() {
    let g = Gen::new();
    let (root, root_key) = root_ca();
    let ext = format!("{SUBCA_EXT}\nnameConstraints = critical, permitted;dirName:dir_sect");
    let sub = g.issue(
        "nc-ca",
        "/O=Some Other Organisation/CN=TEST Constrained CA",
        &root,
        &root_key,
        &ext,
    );
    let leaf = g.issue(
        "nc-leaf",
        LEAF_SUBJ,
        &sub,
        &g.path("nc-ca.key.pem"),
        LEAF_EXT,
    );
    let mut o = rfc5280();
    o.untrusted = load_certs_file(&sub).unwrap();
    o.check_revocation = false;
    let r = refusal(&load_certs_file(&leaf).unwrap()[0], &o);
    assert_eq!(r.code(), "NAME_CONSTRAINTS", "{r}");
    // A leaf inside the permitted subtree passes.
    let inside = g.issue(
        "nc-inside",
        "/O=Some Other Organisation/CN=TEST Inside",
        &sub,
        &g.path("nc-ca.key.pem"),
        LEAF_EXT,
    );
    assert!(pki::verify(&load_certs_file(&inside).unwrap()[0], &o).is_ok());
}

#[test]
fn a_crl_signer_without_crl_sign_is_refused() {
    let g = Gen::new();
    let (root, root_key) = root_ca();
    let ext = "basicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign\n\
               subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n\
               certificatePolicies = 2.5.29.32.0";
    let sub = g.issue(
        "nocrlsign-ca",
        "/O=Paraph Test PKI/CN=TEST No cRLSign CA",
        &root,
        &root_key,
        ext,
    );
    let sub_key = g.path("nocrlsign-ca.key.pem");
    let leaf = g.issue("nocrlsign-leaf", LEAF_SUBJ, &sub, &sub_key, LEAF_EXT);
    let crl = g.crl("nocrlsign", &sub, &sub_key);
    let leaf = load_certs_file(&leaf).unwrap().remove(0);
    let mut o = rfc5280();
    o.untrusted = load_certs_file(&sub).unwrap();
    o.crls = crls(&["root-ca.crl.pem"]);
    o.crls.extend(load_crls_file(&crl).unwrap());
    assert_eq!(refusal(&leaf, &o).code(), "CRL_INVALID");
    // Under RGS the CA itself breaks the profile first (CAs need keyCertSign and cRLSign).
    let mut r = rgs();
    r.untrusted = o.untrusted.clone();
    r.crls = o.crls.clone();
    let all = pki::verify_all(&leaf, &r).unwrap_err();
    let codes: Vec<_> = all.iter().map(Refusal::code).collect();
    assert_eq!(codes[0], "CA_KEY_USAGE", "{codes:?}");
    assert!(codes.contains(&"CRL_INVALID"), "{codes:?}");
}

// ------------------------------------------------------------------------------ CLI

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: PkiVerifyArgs,
}

fn cli(args: &[&str]) -> CliOutcome {
    let mut argv = vec!["pki-verify".to_string()];
    for a in args {
        argv.push(a.replace("@", &format!("{}/", dir().display())));
    }
    let parsed = Cli::try_parse_from(argv).unwrap();
    // "now" is far in the future so that tests without --at would notice.
    run_verify(&parsed.args, at("2100-01-01T00:00:00Z"))
}

const LEVEL_ARGS: [&str; 6] = [
    "--policy-level",
    "1.3.6.1.4.1.99999.1.1.1=1",
    "--policy-level",
    "1.3.6.1.4.1.99999.1.1.2=**",
    "--policy-level",
    "1.3.6.1.4.1.99999.1.1.3=3",
];

#[test]
fn cli_prints_valid_or_the_reason() {
    let base = [
        "--trust",
        "@root-ca.cert.pem",
        "--untrusted",
        "@signing-ca.cert.pem",
        "--crl",
        "@crls.pem",
        "--at",
        T,
    ];
    let valid = cli(&[
        &["@officer-l3-p384.cert.pem"][..],
        &base,
        &LEVEL_ARGS,
        &["--level", "***"],
    ]
    .concat());
    assert_eq!(valid.exit_code(), 0, "{}", valid.text());
    assert!(valid.text().starts_with("valid\n"), "{}", valid.text());
    assert!(valid.text().contains("RGS level 3"), "{}", valid.text());
    assert!(
        valid.text().contains("CN=TEST Officer Name"),
        "{}",
        valid.text()
    );

    let revoked = cli(&[&["@neg-revoked.cert.pem"][..], &base, &LEVEL_ARGS].concat());
    assert_eq!(revoked.exit_code(), 1);
    assert!(
        revoked.text().starts_with("refused: REVOKED: "),
        "{}",
        revoked.text()
    );

    let low = cli(&[
        &["@officer-l1-rsa2048.cert.pem"][..],
        &base,
        &LEVEL_ARGS,
        &["--level", "2"],
    ]
    .concat());
    assert!(
        low.text().starts_with("refused: LEVEL_TOO_LOW: "),
        "{}",
        low.text()
    );

    // rfc5280 profile, explicit policy, no revocation.
    let r = cli(&[
        "@officer-l2-p256.cert.pem",
        "--trust",
        "@root-ca.cert.pem",
        "--untrusted",
        "@signing-ca.cert.pem",
        "--profile",
        "rfc5280",
        "--no-revocation",
        "--explicit-policy",
        "--policy",
        L3,
        "--at",
        T,
    ]);
    assert!(r.text().starts_with("refused: NO_POLICY: "), "{}", r.text());
    let r = cli(&[
        "@officer-l2-p256.cert.pem",
        "--trust",
        "@root-ca.cert.pem",
        "--untrusted",
        "@signing-ca.cert.pem",
        "--profile",
        "rfc5280",
        "--no-revocation",
        "--explicit-policy",
        "--policy",
        L2,
        "--at",
        T,
    ]);
    assert_eq!(r.exit_code(), 0, "{}", r.text());
    assert!(r.text().contains("no RGS level"), "{}", r.text());

    // Without --at, "now" (2100 here) is used: everything has expired.
    let now = cli(&[&["@officer-l2-p256.cert.pem"][..], &base[..6], &LEVEL_ARGS].concat());
    assert!(
        now.text().starts_with("refused: EXPIRED: "),
        "{}",
        now.text()
    );

    // A leaf file holding the chain: the extra certificates are intermediates.
    let g = Gen::new();
    let bundle = g.path("bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read(file("officer-l2-p256.cert.pem")).unwrap(),
            std::fs::read(file("signing-ca.cert.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let b = cli(&[
        bundle.to_str().unwrap(),
        "--trust",
        "@root-ca.cert.pem",
        "--crl",
        "@crls.pem",
        "--at",
        T,
        "--policy-level",
        "1.3.6.1.4.1.99999.1.1.2=2",
    ]);
    assert_eq!(b.exit_code(), 0, "{}", b.text());
}

#[test]
fn cli_bad_input_is_exit_2() {
    let e = cli(&["@nope.pem", "--trust", "@root-ca.cert.pem", "--at", T]);
    assert_eq!(e.exit_code(), 2);
    assert!(e.text().contains("cannot read"), "{}", e.text());
    let e = cli(&[
        "@officer-l2-p256.cert.pem",
        "--trust",
        "@root-ca.cert.pem",
        "--at",
        "yesterday",
    ]);
    assert_eq!(e.exit_code(), 2);
    assert!(e.text().contains("RFC 3339"), "{}", e.text());
    let e = cli(&[
        "@officer-l2-p256.cert.pem",
        "--trust",
        "@officer-l2-p256.key.pem",
        "--at",
        T,
    ]);
    assert_eq!(e.exit_code(), 2, "{}", e.text());
    // clap refuses a missing --trust and a bad level.
    assert!(Cli::try_parse_from(["x", "leaf.pem"]).is_err());
    assert!(Cli::try_parse_from(["x", "leaf.pem", "--trust", "r.pem", "--level", "4"]).is_err());
    assert!(Cli::try_parse_from([
        "x",
        "leaf.pem",
        "--trust",
        "r.pem",
        "--policy-level",
        "1.2.3"
    ])
    .is_err());
}

// ------------------------------------------------------------------------------ cache

#[test]
fn the_cache_reuses_successes_and_never_turns_a_failure_into_a_pass() {
    let cache = pki::ValidationCache::new(16);
    let leaf = cert("officer-l2-p256.cert.pem");
    let o = rgs();
    let first = cache.verify(&leaf, &o).unwrap();
    let mut later = rgs();
    later.at = at("2027-06-01T00:00:00Z");
    let second = cache.verify(&leaf, &later).unwrap();
    assert_eq!(cache.stats(), pki::CacheStats { hits: 1, misses: 1 });
    assert_eq!(first.fingerprint_sha256(), second.fingerprint_sha256());
    assert_eq!(
        second.validated_at(),
        later.at,
        "the hit reports the time asked for"
    );

    // Past the leaf's notAfter: a different key, and the refusal is computed.
    let mut expired = rgs();
    expired.at = at("2050-01-01T00:00:00Z");
    assert_eq!(cache.verify(&leaf, &expired).unwrap_err().code(), "EXPIRED");
    // Past the CRL's nextUpdate (2049-12-01) but before the leaf's notAfter.
    let mut stale = rgs();
    stale.at = at("2049-12-15T00:00:00Z");
    assert_eq!(
        cache.verify(&leaf, &stale).unwrap_err().code(),
        "CRL_EXPIRED"
    );
    // Another CRL set: a miss, and the expired CRL is refused.
    let mut other_crls = rgs();
    other_crls.crls = crls(&["root-ca.crl.pem", "signing-ca.crl-expired.pem"]);
    assert_eq!(
        cache.verify(&leaf, &other_crls).unwrap_err().code(),
        "CRL_EXPIRED"
    );
    // Other options: a miss, and the level is checked.
    let mut higher = rgs();
    higher.required_level = Some(3);
    assert_eq!(
        cache.verify(&leaf, &higher).unwrap_err().code(),
        "LEVEL_TOO_LOW"
    );
    // Refusals are never stored; a revoked certificate stays refused.
    for _ in 0..3 {
        assert_eq!(
            cache
                .verify(&cert("neg-revoked.cert.pem"), &o)
                .unwrap_err()
                .code(),
            "REVOKED"
        );
    }
    assert_eq!(cache.len(), 1);
    // Once the revoking CRL replaces an (equally current) empty one, the pass is gone.
    let g = Gen::new();
    let (ca, key) = signing_ca();
    let empty = load_crls_file(g.crl("signing-ca-empty", &ca, &key)).unwrap();
    let revoked_leaf = cert("neg-revoked.cert.pem");
    let mut before = rgs();
    before.crls = crls(&["root-ca.crl.pem"]);
    before.crls.extend(empty);
    assert!(
        cache.verify(&revoked_leaf, &before).is_ok(),
        "not listed in the empty CRL"
    );
    assert!(cache.verify(&revoked_leaf, &before).is_ok());
    let hits = cache.stats().hits;
    assert_eq!(
        cache.verify(&revoked_leaf, &rgs()).unwrap_err().code(),
        "REVOKED"
    );
    assert_eq!(cache.stats().hits, hits);
}

#[test]
fn a_certificate_on_hold_is_revoked() {
    let g = Gen::new();
    let (ca, key) = signing_ca();
    let leaf = g.issue("held", LEAF_SUBJ, &ca, &key, LEAF_EXT);
    let crl = g.hold_and_crl("held", &ca, &key);
    let leaf = load_certs_file(&leaf).unwrap().remove(0);
    let mut o = rgs();
    o.crls = crls(&["root-ca.crl.pem"]);
    o.crls.extend(load_crls_file(&crl).unwrap());
    let r = refusal(&leaf, &o);
    assert_eq!(r.code(), "REVOKED", "{r}");
    assert!(r.to_string().contains("certificateHold"), "{r}");
    // With the current CRL that does not list it, it passes.
    assert!(pki::verify(&leaf, &rgs()).is_ok());
}
