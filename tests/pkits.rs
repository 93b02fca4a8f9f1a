//! NIST PKITS (Public Key Interoperability Test Suite) through the real binary:
//! `paraph pki verify --profile rfc5280`, one process per case, every case of
//! `tests/fixtures/pkits/pkits.json` (see the README there for where the vectors come from).
//!
//! A case agrees when the exit status is 0 for a valid path and 1 (refused) for an invalid one;
//! 2 (bad input) never agrees. The test fails listing every disagreeing case, except those of
//! [`KNOWN_DIFFERENCES`], each with its reason. An invalid path accepted can never be listed
//! there, and a listed case that now agrees fails the test too, so the list stays honest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

/// Inside the validity of every certificate and CRL the cases rely on (the trust anchor and its
/// CRL run from 2010 to 2030; the test vectors are dated relative to 2010), and the time
/// pyhanko-certvalidator runs them at.
const AT: &str = "2022-05-01T00:00:00Z";

/// Valid paths that `paraph pki verify --profile rfc5280` refuses, by "id name" of pkits.json,
/// with the reason. Only *valid* paths may appear here (checked below).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "40105 valid_dsa_parameter_inheritance_test5",
        "DSA parameter inheritance: the intermediate CA's DSA key has no parameters and takes \
         them from its issuer's key (RFC 3279 2.3.2). OpenSSL 3.0 cannot decode such a key, so \
         the leaf's signature cannot be checked and no path is built (CHAIN_NOT_TRUSTED). DSA \
         is not an RGS algorithm either.",
    ),
    (
        "41430 valid_crlissuer_test30",
        "The leaf's CRL is an indirect CRL whose issuer's own certificate is covered by that \
         same CRL. OpenSSL 3.0 validates a CRL issuer's path once and never recursively (a \
         CRL whose issuer's revocation depends on another CRL issuer's path is unusable), so \
         the CRL is refused (CRL_INVALID: CRL path validation error): fails closed.",
    ),
];

/// The NIST test policies (2.16.840.1.101.3.2.1.48.N), each allowlisted at RGS level 1 so
/// that the cases can be run under `--profile rgs` too.
fn rgs_levels() -> Vec<String> {
    (1..=8)
        .flat_map(|n| {
            [
                "--policy-level".to_string(),
                format!("2.16.840.1.101.3.2.1.48.{n}=1"),
            ]
        })
        .collect()
}

#[derive(Debug)]
struct Case {
    key: String,
    expect_valid: bool,
    args: Vec<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pkits")
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn path_arg(dir: &str, name: &str) -> String {
    fixtures().join(dir).join(name).display().to_string()
}

/// The cases of pkits.json, run under `profile` with `extra` arguments.
fn cases(profile: &str, extra: &[String]) -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("pkits.json")).expect("pkits.json");
    let all: Vec<Value> = serde_json::from_str(&text).expect("pkits.json is a JSON array");
    all.iter()
        .map(|c| {
            let id = c["id"].as_str().expect("id");
            let name = c["name"].as_str().expect("name");
            let leaf = c["cert"].as_str().expect("cert");
            let mut args: Vec<String> = vec![
                "pki".into(),
                "verify".into(),
                path_arg("certs", leaf),
                "--profile".into(),
                profile.into(),
                "--at".into(),
                AT.into(),
                "--trust".into(),
                path_arg("certs", "TrustAnchorRootCertificate.crt"),
            ];
            let mut untrusted = strings(c, "other_certs");
            for cert in strings(c, "path_intermediates") {
                if !untrusted.contains(&cert) {
                    untrusted.push(cert);
                }
            }
            for cert in untrusted {
                args.push("--untrusted".into());
                args.push(path_arg("certs", &cert));
            }
            // The trust anchor's CRL is always given.
            let mut crls = vec!["TrustAnchorRootCRL.crl".to_string()];
            crls.extend(strings(c, "crls"));
            for crl in crls {
                args.push("--crl".into());
                args.push(path_arg("crls", &crl));
            }
            args.extend(extra.iter().cloned());
            if c.get("revocation").and_then(Value::as_bool) == Some(false) {
                args.push("--no-revocation".into());
            }
            if let Some(params) = c.get("params") {
                for oid in strings(params, "user_initial_policy_set") {
                    args.push("--policy".into());
                    args.push(oid);
                }
                let flag = |f: &str| params.get(f).and_then(Value::as_bool) == Some(true);
                if flag("initial_explicit_policy") {
                    args.push("--explicit-policy".into());
                }
                if flag("initial_policy_mapping_inhibit") {
                    args.push("--inhibit-policy-mapping".into());
                }
                if flag("initial_any_policy_inhibit") {
                    args.push("--inhibit-any-policy".into());
                }
            }
            Case {
                key: format!("{id} {name}"),
                expect_valid: c.get("error").is_none(),
                args,
            }
        })
        .collect()
}

struct Outcome {
    code: Option<i32>,
    output: String,
}

fn run(case: &Case) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(&case.args)
        .output()
        .expect("run paraph");
    let mut output = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        output.push_str(" | stderr: ");
        output.push_str(err.trim());
    }
    Outcome {
        code: out.status.code(),
        output: output.replace('\n', " / "),
    }
}

/// Runs every case, one process each, a few at a time; the outcomes in the order of `cases`.
fn run_all(cases: &[Case]) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let outcome = run(case);
                results.lock().expect("results lock").push((i, outcome));
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);

    results.into_iter().map(|(_, o)| o).collect()
}

#[test]
fn nist_pkits_rfc5280() {
    let cases = cases("rfc5280", &[]);
    assert_eq!(cases.len(), 246, "pkits.json should hold the 246 cases");

    for (key, reason) in KNOWN_DIFFERENCES {
        let case = cases
            .iter()
            .find(|c| c.key == *key)
            .unwrap_or_else(|| panic!("known difference {key:?} is not a case of pkits.json"));
        assert!(
            case.expect_valid,
            "{key}: an invalid path accepted can never be a known difference ({reason})"
        );
        assert!(
            !reason.trim().is_empty(),
            "{key}: a known difference needs its reason"
        );
    }

    let results = run_all(&cases);

    let mut agree = 0;
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    for (case, outcome) in cases.iter().zip(&results) {
        let wanted = if case.expect_valid { 0 } else { 1 };
        let known = KNOWN_DIFFERENCES.iter().find(|(k, _)| *k == case.key);
        if outcome.code == Some(wanted) {
            agree += 1;
            if let Some((k, _)) = known {
                failures.push(format!(
                    "{k}: listed as a known difference but now agrees: remove it from the list"
                ));
            }
            continue;
        }
        let what = match (case.expect_valid, outcome.code) {
            (false, Some(0)) => "INVALID PATH ACCEPTED".to_string(),
            (true, Some(1)) => "valid path refused".to_string(),
            (_, code) => format!("unexpected exit status {code:?}"),
        };
        match known {
            Some((k, _)) if case.expect_valid && outcome.code == Some(1) => known_seen.push(*k),
            _ => failures.push(format!("{}: {what}: {}", case.key, outcome.output)),
        }
    }
    eprintln!(
        "NIST PKITS under --profile rfc5280: {agree}/{} agree, {} known difference(s), {} \
         unexpected",
        cases.len(),
        known_seen.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} NIST PKITS case(s) disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Under the rgs profile (stricter), the cases still never accept an invalid path; the valid
/// paths it refuses are its own choices (e.g. 4.6.4: a CA's basicConstraints must be
/// critical).
#[test]
fn nist_pkits_rgs_accepts_no_invalid_path() {
    let cases = cases("rgs", &rgs_levels());
    let results = run_all(&cases);
    let mut failures = Vec::new();
    let mut accepted = 0;
    for (case, outcome) in cases.iter().zip(&results) {
        match outcome.code {
            Some(0) if !case.expect_valid => failures.push(format!(
                "{}: INVALID PATH ACCEPTED under rgs: {}",
                case.key, outcome.output
            )),
            Some(0) => accepted += 1,
            Some(1) => {}
            code => failures.push(format!(
                "{}: unexpected exit status {code:?}: {}",
                case.key, outcome.output
            )),
        }
        if case.key == "40604 valid_basicconstraints_not_critical_test4"
            && !outcome.output.contains("CA_NOT_CA")
        {
            failures.push(format!(
                "{}: a CA whose basicConstraints is not critical must stay refused under rgs \
                 (CA_NOT_CA): {}",
                case.key, outcome.output
            ));
        }
    }
    let valid = cases.iter().filter(|c| c.expect_valid).count();
    eprintln!(
        "NIST PKITS under --profile rgs: {accepted}/{valid} valid paths accepted, no invalid one"
    );
    assert!(
        failures.is_empty(),
        "{} NIST PKITS case(s) under rgs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Beyond PKITS: OpenSSL 3.0 with extended CRL support takes a delta CRL restricted to some
/// reasons (onlySomeReasons) for a complete CRL. Here the complete CRL listing the leaf has
/// expired and that delta lists nothing: OpenSSL alone accepts the revoked leaf; paraph must
/// refuse it (see tests/fixtures/delta-reasons/README.md), under both profiles.
#[test]
fn a_delta_crl_restricted_to_some_reasons_is_never_a_complete_crl() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/delta-reasons");
    let f = |name: &str| dir.join(name).display().to_string();
    for profile in ["rfc5280", "rgs"] {
        let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
            .args(["pki", "verify", &f("leaf.pem"), "--profile", profile])
            .args(["--trust", &f("root.pem"), "--at", "2027-01-15T00:00:00Z"])
            .args(["--crl", &f("complete-crl.pem")])
            .args(["--crl", &f("delta-crl-some-reasons.pem")])
            .output()
            .expect("run paraph");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{profile}: {text}");
        if profile == "rfc5280" {
            assert!(text.starts_with("refused: CRL_NOT_FOUND"), "{text}");
        }
    }
}
