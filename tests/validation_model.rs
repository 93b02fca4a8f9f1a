//! The validation model against hostile signatures, from the outside: the real `paraph` binary
//! (offline `validate`, `pki verify`), a real server (ValidateSignature, SetTrust), and for each
//! hostile signature the verdicts of OpenSSL and pyHanko beside paraph's.
//!
//! The hostile material (a key revoked after the fact, CRLs from before and after, a CA that
//! caps the policies, an OID under arc 2) is issued at test time by `tests/support/hostile-pki.sh`
//! with the TEST PKI's own CA keys; the hostile CMS are built here, with paraph's CMS assembly
//! or `openssl cms -sign`.

mod common;
use common::*;
use paraph::proto;
use paraph::validation::{validate_cms, Der, Indication, ProofOfExistence, TrustSettings};
use std::path::{Path, PathBuf};
use std::process::Command;

/// 2025-07-01T00:00:00Z: before the revocation of `late-revoked` (2026-06-01).
const BEFORE_REVOCATION: i64 = 1_751_328_000;
/// 2026-07-01T00:00:00Z: after it.
const AFTER_REVOCATION: i64 = 1_782_864_000;
/// 2026-12-01T00:00:00Z: the validation time of these tests.
const NOW: i64 = 1_796_083_200;
const NOW_TEXT: &str = "2026-12-01T00:00:00Z";
const DATA: &[u8] = b"Mandat 2026-042: 50 EUR to ACME";

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg("tests/support/hostile-pki.sh")
            .arg(dir.path())
            .arg("certs-test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hostile-pki.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn cert_der(&self, stem: &str) -> Vec<u8> {
        openssl::x509::X509::from_pem(&self.pem(&format!("{stem}.cert.pem")))
            .unwrap()
            .to_der()
            .unwrap()
    }

    fn crl_der(&self, name: &str) -> Vec<u8> {
        openssl::x509::X509Crl::from_pem(&self.pem(name))
            .unwrap()
            .to_der()
            .unwrap()
    }

    fn key(&self, stem: &str) -> openssl::pkey::PKey<openssl::pkey::Private> {
        openssl::pkey::PKey::private_key_from_pem(&self.pem(&format!("{stem}.key.pem"))).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn test_crl_der(name: &str) -> Vec<u8> {
    openssl::x509::X509Crl::from_pem(&certs(name))
        .unwrap()
        .to_der()
        .unwrap()
}

/// A detached CAdES signature by `key`/`cert` over DATA, with the signing-time the signer
/// chooses and the certificates and CRLs he chooses to carry (paraph's own assembly).
fn cades(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    cert: Vec<u8>,
    signing_time: i64,
    certs: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
) -> Vec<u8> {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(DATA).into();
    let attrs =
        paraph::crypto::build_signed_attributes(&digest, signing_time, &cert, None).unwrap();
    let signature = paraph::crypto::sign_with_key(key, &attrs).unwrap();
    let alg = paraph::crypto::verify_signature_value(&cert, &attrs, &signature).unwrap();
    let part = paraph::crypto::SignerPart {
        cert_der: cert.clone(),
        signed_attrs_der: attrs,
        signature,
        alg,
    };
    let mut all = vec![cert];
    all.extend(certs);
    paraph::crypto::assemble(&[part], &all, &crls).unwrap()
}

/// A signature by the key revoked on 2026-06-01, dated back to before the revocation.
fn backdated(pki: &Pki, carried_crls: Vec<Vec<u8>>) -> Vec<u8> {
    cades(
        &pki.key("late-revoked"),
        pki.cert_der("late-revoked"),
        BEFORE_REVOCATION,
        vec![cert_der("signing-ca")],
        carried_crls,
    )
}

/// A signature by an officer whose certificate was never revoked, with a signing-time long
/// before the CRL in force, carrying the CRLs given.
fn clean_officer(crls: Vec<Vec<u8>>) -> Vec<u8> {
    cades(
        &key("officer-l2-p256"),
        cert_der("officer-l2-p256"),
        BEFORE_REVOCATION,
        vec![cert_der("signing-ca")],
        crls,
    )
}

fn levels() -> Vec<String> {
    [(L1, 1), (L2, 2), (L3, 3)]
        .iter()
        .map(|(o, l)| format!("--policy-level={o}={l}"))
        .collect()
}

/// `paraph validate` offline: exit code and output.
fn paraph_validate(
    pki: &Pki,
    cms: &[u8],
    intermediates: &[&Path],
    crls: &[&Path],
    extra: &[&str],
) -> (i32, String) {
    let sig = pki.write("sig.p7s", cms);
    let data = pki.write("data.bin", DATA);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paraph"));
    cmd.arg("validate")
        .arg("--data")
        .arg(&data)
        .arg("--signature")
        .arg(&sig)
        .arg("--trust")
        .arg("certs-test/root-ca.cert.pem")
        .args(levels());
    for i in intermediates {
        cmd.arg("--intermediate").arg(i);
    }
    for c in crls {
        cmd.arg("--crl").arg(c);
    }
    let out = cmd.args(extra).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// OpenSSL's verdict on a detached CMS (anchors: the test root and `crls`; `attime` if given).
fn openssl_verdict(
    pki: &Pki,
    cms: &[u8],
    intermediates: &[&Path],
    crls: &[&Path],
    attime: Option<i64>,
) -> (bool, String) {
    let sig = pki.write("o-sig.p7s", cms);
    let data = pki.write("o-data.bin", DATA);
    let mut anchors = certs("root-ca.cert.pem");
    for c in crls {
        anchors.extend(std::fs::read(c).unwrap());
    }
    let anchors = pki.write("o-anchors.pem", &anchors);
    let mut inter = Vec::new();
    for i in intermediates {
        inter.extend(std::fs::read(i).unwrap());
    }
    let inter = pki.write("o-inter.pem", &inter);
    let mut cmd = Command::new("openssl");
    cmd.args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&sig)
        .arg("-content")
        .arg(&data)
        .arg("-CAfile")
        .arg(&anchors)
        .arg("-certfile")
        .arg(&inter)
        .args(["-purpose", "any", "-crl_check_all"]);
    if let Some(t) = attime {
        cmd.arg("-attime").arg(t.to_string());
    }
    let out = cmd.args(["-out", "/dev/null"]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// pyHanko's verdict (hard-fail revocation with the CRLs given, no fetching), at `moment`.
fn pyhanko_verdict(
    pki: &Pki,
    cms: &[u8],
    intermediates: &[&Path],
    crls: &[&Path],
    moment: Option<i64>,
) -> (bool, String) {
    let sig = pki.write("p-sig.p7s", cms);
    let data = pki.write("p-data.bin", DATA);
    let script = r#"
import asyncio, sys, json, datetime
from asn1crypto import cms, pem, x509, crl
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
args = json.loads(sys.argv[1])
def load(path, kind):
    out = []
    for _t, _h, der in pem.unarmor(open(path, 'rb').read(), multiple=True):
        out.append(kind.load(der))
    return out
root = load('certs-test/root-ca.cert.pem', x509.Certificate)[0]
inter = [c for p in args['inter'] for c in load(p, x509.Certificate)]
crls = [c for p in args['crls'] for c in load(p, crl.CertificateList)]
moment = None
if args['moment'] is not None:
    moment = datetime.datetime.fromtimestamp(args['moment'], tz=datetime.timezone.utc)
vc = ValidationContext(trust_roots=[root], other_certs=inter, crls=crls, allow_fetching=False,
                       revocation_mode='hard-fail', moment=moment)
sd = cms.ContentInfo.load(open(args['sig'], 'rb').read())['content']
data = open(args['data'], 'rb').read()
try:
    st = asyncio.run(async_validate_detached_cms(data, sd, signer_validation_context=vc))
    print(st.summary(), getattr(st, 'trust_problem_indic', None))
    sys.exit(0 if (st.intact and st.valid and st.trusted and not getattr(st, 'revoked', False)) else 1)
except Exception as e:
    print('error:', type(e).__name__, e)
    sys.exit(1)
"#;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let args = serde_json::json!({
        "inter": intermediates.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "crls": crls.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "moment": moment,
        "sig": path(&sig),
        "data": path(&data),
    });
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(args.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "pyHanko is not installed: {text}"
    );
    (out.status.success(), text)
}

fn signing_ca() -> PathBuf {
    PathBuf::from("certs-test/signing-ca.cert.pem")
}

fn root_crl() -> PathBuf {
    PathBuf::from("certs-test/root-ca.crl.pem")
}

fn trust(pki: &Pki, crls: &[&str]) -> TrustSettings {
    let mut c = vec![Der(test_crl_der("root-ca.crl.pem"))];
    c.extend(crls.iter().map(|n| Der(pki.crl_der(n))));
    TrustSettings {
        anchors: vec![Der(cert_der("root-ca"))],
        intermediates: vec![Der(cert_der("signing-ca"))],
        crls: c,
        policy_levels: [(L1, 1), (L2, 2), (L3, 3)]
            .iter()
            .map(|(o, l)| (o.to_string(), *l))
            .collect(),
        ..TrustSettings::default()
    }
}

#[test]
fn a_backdated_signature_by_a_key_revoked_since_is_refused_like_openssl_and_pyhanko_refuse_it() {
    let pki = Pki::new();
    // Signed today with the compromised key, dated back before the revocation, carrying the
    // CA's CRL from before the revocation (still inside its nextUpdate).
    let cms = backdated(
        &pki,
        vec![
            pki.crl_der("crl-before.pem"),
            test_crl_der("root-ca.crl.pem"),
        ],
    );
    // The same signature without the carried CRLs, for OpenSSL: `openssl cms` merges a
    // signature's CRLs with the relying party's and may use the older one (OpenSSL 3.0 then
    // accepts the backdated signature), which is exactly what paraph must not do.
    let bare = backdated(&pki, vec![]);
    let after = pki.path("crl-after.pem");
    let before = pki.path("crl-before.pem");
    let sca = signing_ca();
    let root = root_crl();
    // The relying party has the current CRL; even when it also keeps the older one.
    for crls in [vec![&root, &after], vec![&root, &before, &after]] {
        let crls: Vec<&Path> = crls.iter().map(|p| p.as_path()).collect();
        let (code, out) = paraph_validate(&pki, &cms, &[&sca], &crls, &["--at", NOW_TEXT]);
        assert_eq!(code, 6, "{out}");
        assert!(out.contains("REVOKED_NO_POE"), "{out}");
        assert!(out.contains("INDETERMINATE"), "{out}");
        let (code, out) = paraph_validate(&pki, &bare, &[&sca], &crls, &["--at", NOW_TEXT]);
        assert_eq!(code, 6, "{out}");
        assert!(out.contains("REVOKED_NO_POE"), "{out}");
        let (ok, err) = openssl_verdict(&pki, &bare, &[&sca], &crls, Some(NOW));
        assert!(!ok, "OpenSSL accepted it with {crls:?}");
        assert!(err.contains("revoked"), "{err}");
        // pyHanko, given the signature with its carried CRL, comes to the same indication.
        let (ok, text) = pyhanko_verdict(&pki, &cms, &[&sca], &crls, Some(NOW));
        assert!(!ok, "pyHanko accepted it: {text}");
        assert!(text.contains("REVOKED_NO_POE"), "{text}");
        assert!(text.to_lowercase().contains("revoked"), "{text}");
    }
    // The claimed signing-time is reported as such, never used.
    let (_, out) = paraph_validate(
        &pki,
        &cms,
        &[&sca],
        &[&root, &after],
        &["--at", NOW_TEXT, "--json"],
    );
    let json = &out[out.find('{').unwrap_or(0)..];
    let v: serde_json::Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no JSON report: {out}"));
    let signer = &v["signers"][0];
    assert_eq!(signer["validation_time"], "2026-12-01T00:00:00Z", "{v}");
}

#[test]
fn a_genuine_older_signature_passes_against_the_current_crls() {
    let pki = Pki::new();
    // An officer whose certificate was never revoked, signing-time long before the CRL in force.
    let cms = clean_officer(vec![]);
    let after = pki.path("crl-after.pem");
    let sca = signing_ca();
    let root = root_crl();
    let crls = [root.as_path(), after.as_path()];
    let (code, out) = paraph_validate(&pki, &cms, &[&sca], &crls, &["--at", NOW_TEXT]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TOTAL_PASSED"), "{out}");
    assert!(openssl_verdict(&pki, &cms, &[&sca], &crls, Some(NOW)).0);
    let (ok, text) = pyhanko_verdict(&pki, &cms, &[&sca], &crls, Some(NOW));
    assert!(ok, "{text}");
}

#[test]
fn a_proof_of_existence_decides_whether_a_later_revocation_counts() {
    let pki = Pki::new();
    let cms = backdated(&pki, vec![]);
    let value = paraph::crypto::parse(&cms).unwrap().signers[0]
        .signature
        .clone();
    let t = trust(&pki, &["crl-after.pem"]);
    let judge = |poe: Option<i64>| {
        let proofs: Vec<ProofOfExistence> = poe
            .map(|at| ProofOfExistence {
                signature_value: value.clone(),
                at,
            })
            .into_iter()
            .collect();
        validate_cms(&t, DATA, &cms, NOW, &proofs, None)
    };
    // Proven before the revocation: passes, judged at the proof's time.
    let r = judge(Some(BEFORE_REVOCATION));
    assert_eq!(r.indication, Indication::TotalPassed, "{r:?}");
    assert_eq!(r.signers[0].validation_time, BEFORE_REVOCATION);
    assert_eq!(r.signers[0].proof_of_existence, Some(BEFORE_REVOCATION));
    // Proven only after it: definitely revoked.
    let r = judge(Some(AFTER_REVOCATION));
    assert_eq!(
        (r.indication, r.sub_indication.as_str()),
        (Indication::TotalFailed, "REVOKED"),
        "{r:?}"
    );
    // No proof: the claim alone proves nothing.
    let r = judge(None);
    assert_eq!(
        (r.indication, r.sub_indication.as_str()),
        (Indication::Indeterminate, "REVOKED_NO_POE"),
        "{r:?}"
    );
    // A proof for another signature value does not count.
    let other = validate_cms(
        &t,
        DATA,
        &cms,
        NOW,
        &[ProofOfExistence {
            signature_value: vec![1, 2, 3],
            at: BEFORE_REVOCATION,
        }],
        None,
    );
    assert_eq!(other.sub_indication, "REVOKED_NO_POE");
    // A CRL carried by the signature that no configured CA signed is ignored: the rogue CA's
    // CRL (same kind of material, wrong issuer) changes nothing.
    let with_rogue = clean_officer(vec![test_crl_der("rogue-ca.crl.pem")]);
    let r = validate_cms(&t, DATA, &with_rogue, NOW, &[], None);
    assert_eq!(r.indication, Indication::TotalPassed, "{r:?}");
}

#[tokio::test]
async fn the_server_judges_a_signature_it_stored_at_the_time_its_log_recorded_it() {
    let pki = Pki::new();
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-poe").await;
    set_trust(
        &srv,
        &org,
        vec![certs("root-ca.crl.pem"), pki.pem("crl-before.pem")],
    )
    .await;
    bind(&srv, &org, "alice", &pki.pem("late-revoked.cert.pem"))
        .await
        .unwrap();
    create_circuit(&srv, &org, "sig", vec![sign_step(&["alice"], 2)]).await;
    let doc = submit(&srv, &org, "sig", &[]).await;
    // Signed at T0 (2026-01-01), before the revocation.
    let p = sigs(&srv, org.token("alice"))
        .prepare_signature(proto::PrepareSignatureRequest {
            document_id: doc.id.clone(),
            step: None,
            certificate_chain: vec![pki.cert_der("late-revoked"), cert_der("signing-ca")],
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let value =
        paraph::crypto::sign_with_key(&pki.key("late-revoked"), &p.signed_attributes).unwrap();
    complete(&srv, &org, "alice", &p.id, value).await.unwrap();
    let cms = signatures_of(&srv, &org, &doc.id).await.signatures[0]
        .cms
        .clone();
    // The key is revoked since (2026-06-01); the tenant's CRL says so; now is 2026-12-01.
    set_trust(
        &srv,
        &org,
        vec![certs("root-ca.crl.pem"), pki.pem("crl-after.pem")],
    )
    .await;
    srv.clock.set(paraph::domain::Timestamp(NOW));
    let validate = |document_id: &str| {
        let mut v = sigs(&srv, org.token("audit"));
        let req = proto::ValidateSignatureRequest {
            data: b"%PDF-1.7 test content".to_vec(),
            signature: cms.clone(),
            at: None,
            required_level: 2,
            document_id: document_id.into(),
        };
        async move { v.validate_signature(req).await.unwrap().into_inner() }
    };
    // As paraph's own signature: judged at the time the server recorded it.
    let rep = validate(&doc.id).await;
    assert_eq!(
        rep.indication,
        proto::Indication::TotalPassed as i32,
        "{rep:?}"
    );
    let s = &rep.signers[0];
    assert_eq!(s.proof_of_existence.as_ref().map(|t| t.seconds), Some(T0.0));
    assert_eq!(s.validation_time.as_ref().map(|t| t.seconds), Some(T0.0));
    // As an arbitrary CMS: judged now, and revoked with no proof of existence.
    let rep = validate("").await;
    assert_eq!(
        (rep.indication, rep.sub_indication.as_str()),
        (proto::Indication::Indeterminate as i32, "REVOKED_NO_POE"),
        "{rep:?}"
    );
    assert_eq!(
        rep.signers[0].validation_time.as_ref().map(|t| t.seconds),
        Some(NOW)
    );
    // The same CMS offered for another document proves nothing either.
    let other = submit(&srv, &org, "sig", &[]).await;
    let rep = validate(&other.id).await;
    assert_eq!(rep.sub_indication, "REVOKED_NO_POE", "{rep:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_crl_no_configured_ca_signed_is_refused_when_the_trust_is_set() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-crl").await;
    let mut admin = srv.admin(org.token("boss"), None);
    let req = |crls: Vec<Vec<u8>>| proto::SetTrustRequest {
        anchors: vec![certs("root-ca.cert.pem")],
        intermediates: vec![certs("signing-ca.cert.pem")],
        crls,
        policy_levels: vec![proto::PolicyLevel {
            oid: L2.into(),
            level: 2,
        }],
        signature_policy: None,
        idempotency_key: String::new(),
    };
    // The rogue CA's CRL: well formed, but no configured CA signed it.
    assert_code(
        admin
            .set_trust(req(vec![certs("crls.pem"), certs("rogue-ca.crl.pem")]))
            .await,
        tonic::Code::InvalidArgument,
        "TEST Rogue CA",
    );
    // A CRL in the signing CA's name whose signature does not verify.
    let mut forged = test_crl_der("signing-ca.crl.pem");
    let n = forged.len();
    forged[n - 5] ^= 0x01;
    assert_code(
        admin
            .set_trust(req(vec![certs("root-ca.crl.pem"), forged]))
            .await,
        tonic::Code::InvalidArgument,
        "not signed by any configured anchor or intermediate",
    );
    admin.set_trust(req(vec![certs("crls.pem")])).await.unwrap();
    // Offline, the same rule for --crl.
    let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args([
            "validate",
            "--data",
            "README.md",
            "--signature",
            "README.md",
        ])
        .args(["--trust", "certs-test/root-ca.cert.pem"])
        .args(["--crl", "certs-test/rogue-ca.crl.pem"])
        .arg(format!("--policy-level={L2}=2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEST Rogue CA"));
    srv.stop().await;
}

#[test]
fn the_level_comes_from_the_policies_valid_for_the_whole_path() {
    let pki = Pki::new();
    let capped = pki.path("capped-ca.cert.pem");
    let capped_crl = pki.path("capped-crl.pem");
    let root = root_crl();
    let verify = |leaf: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
            .args(["pki", "verify"])
            .arg(pki.path(&format!("{leaf}.cert.pem")))
            .args(["--trust", "certs-test/root-ca.cert.pem", "--untrusted"])
            .arg(&capped)
            .arg("--crl")
            .arg(&root)
            .arg("--crl")
            .arg(&capped_crl)
            .args(levels())
            .args(["--at", NOW_TEXT])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // The leaf claims *** under a CA that allows only *: no level at all...
    let (code, out) = verify("claims-l3", &["--level", "3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NO_POLICY"), "{out}");
    // ... and claiming * beside *** gives *, never ***.
    let (code, out) = verify("claims-l1-l3", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RGS level 1 (*)"), "{out}");
    let (code, out) = verify("claims-l1-l3", &["--level", "3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("LEVEL_TOO_LOW"), "{out}");
    // OpenSSL's policy processing agrees: *** is not valid on that path, * is.
    let openssl_policy = |policy: &str| {
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "certs-test/root-ca.cert.pem",
                "-untrusted",
            ])
            .arg(&capped)
            .args(["-policy_check", "-explicit_policy", "-policy", policy])
            .arg(pki.path("claims-l1-l3.cert.pem"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!openssl_policy(L3));
    assert!(openssl_policy(L1));
    // A signature by that leaf in a *** circuit is refused the same way.
    let cms = cades(
        &pki.key("claims-l1-l3"),
        pki.cert_der("claims-l1-l3"),
        NOW,
        vec![pki.cert_der("capped-ca")],
        vec![],
    );
    let crls = [root.as_path(), capped_crl.as_path()];
    let inter = [capped.as_path()];
    let (code, out) = paraph_validate(
        &pki,
        &cms,
        &inter,
        &crls,
        &["--at", NOW_TEXT, "--level", "3"],
    );
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("LEVEL_TOO_LOW"), "{out}");
    let (code, out) = paraph_validate(&pki, &cms, &inter, &crls, &["--at", NOW_TEXT]);
    assert_eq!(code, 0, "{out}");
}

/// Re-encodes a CMS with its first SignerInfo's signatureAlgorithm replaced.
fn relabel(cms: &[u8], oid: &str) -> Vec<u8> {
    use der::{Decode, Encode};
    let mut ci = cms::content_info::ContentInfo::from_der(cms).unwrap();
    let mut sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    let mut infos: Vec<cms::signed_data::SignerInfo> = sd.signer_infos.0.iter().cloned().collect();
    infos[0].signature_algorithm = spki::AlgorithmIdentifierOwned {
        oid: der::asn1::ObjectIdentifier::new_unwrap(oid),
        parameters: None,
    };
    sd.signer_infos = cms::signed_data::SignerInfos(infos.try_into().unwrap());
    ci.content = der::Any::from_der(&sd.to_der().unwrap()).unwrap();
    ci.to_der().unwrap()
}

#[test]
fn an_rsa_signature_labelled_ecdsa_fails_everywhere() {
    let pki = Pki::new();
    let genuine = cades(
        &key("officer-l1-rsa2048"),
        cert_der("officer-l1-rsa2048"),
        NOW,
        vec![cert_der("signing-ca")],
        vec![],
    );
    let sca = signing_ca();
    let root = root_crl();
    let sca_crl = PathBuf::from("certs-test/signing-ca.crl.pem");
    let crls = [root.as_path(), sca_crl.as_path()];
    let (code, out) = paraph_validate(&pki, &genuine, &[&sca], &crls, &["--at", NOW_TEXT]);
    assert_eq!(code, 0, "{out}");
    let forged = relabel(&genuine, "1.2.840.10045.4.3.2");
    let (code, out) = paraph_validate(&pki, &forged, &[&sca], &crls, &["--at", NOW_TEXT]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("TOTAL_FAILED"), "{out}");
    assert!(out.contains("SIG_CRYPTO_FAILURE"), "{out}");
    assert!(!openssl_verdict(&pki, &forged, &[&sca], &crls, Some(NOW)).0);
    let (ok, text) = pyhanko_verdict(&pki, &forged, &[&sca], &crls, Some(NOW));
    assert!(!ok, "{text}");
}

#[test]
fn pss_sha384_sha512_and_a_signer_named_by_key_identifier_are_accepted_like_elsewhere() {
    let pki = Pki::new();
    let sca = signing_ca();
    let root = root_crl();
    let sca_crl = PathBuf::from("certs-test/signing-ca.crl.pem");
    let crls = [root.as_path(), sca_crl.as_path()];
    let data = pki.write("data.bin", DATA);
    let cases: &[(&str, &[&str])] = &[
        (
            "officer-l2-rsa3072",
            &["-md", "sha256", "-keyopt", "rsa_padding_mode:pss"],
        ),
        (
            "officer-l2-rsa3072",
            &["-md", "sha512", "-keyopt", "rsa_padding_mode:pss"],
        ),
        ("officer-l3-p384", &["-md", "sha384"]),
        ("officer-l2-p256", &["-md", "sha512"]),
        ("officer-l1-rsa2048", &["-md", "sha384"]),
        ("officer-l2-p256", &["-md", "sha256", "-keyid"]),
    ];
    for (stem, opts) in cases {
        let out_file = pki.path("openssl.p7s");
        let out = Command::new("openssl")
            .args([
                "cms", "-sign", "-binary", "-cades", "-outform", "DER", "-in",
            ])
            .arg(&data)
            .arg("-signer")
            .arg(format!("certs-test/{stem}.cert.pem"))
            .arg("-inkey")
            .arg(format!("certs-test/{stem}.key.pem"))
            .args(["-certfile", "certs-test/signing-ca.cert.pem"])
            .args(*opts)
            .arg("-out")
            .arg(&out_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cms = std::fs::read(&out_file).unwrap();
        let (code, text) = paraph_validate(&pki, &cms, &[&sca], &crls, &[]);
        assert_eq!(code, 0, "{stem} {opts:?}: {text}");
        assert!(text.contains("TOTAL_PASSED"), "{stem} {opts:?}: {text}");
        let (ok, err) = openssl_verdict(&pki, &cms, &[&sca], &crls, None);
        assert!(ok, "OpenSSL: {stem} {opts:?}: {err}");
        let (ok, text) = pyhanko_verdict(&pki, &cms, &[&sca], &crls, None);
        assert!(ok, "pyHanko: {stem} {opts:?}: {text}");
    }
}

#[test]
fn oids_under_arc_2_are_read_and_written_correctly() {
    let pki = Pki::new();
    let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(["pki", "verify"])
        .arg(pki.path("arc2.cert.pem"))
        .args(["--trust", "certs-test/root-ca.cert.pem"])
        .args(["--untrusted", "certs-test/signing-ca.cert.pem"])
        .args(["--crl", "certs-test/crls.pem"])
        .args(["--policy-level", "2.999.7.1=2", "--at", NOW_TEXT])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("by policy 2.999.7.1"), "{text}");
    // The command line accepts it for offline validation too.
    let cms = cades(
        &pki.key("arc2"),
        pki.cert_der("arc2"),
        NOW,
        vec![cert_der("signing-ca")],
        vec![],
    );
    let sca = signing_ca();
    let root = root_crl();
    let sca_crl = PathBuf::from("certs-test/signing-ca.crl.pem");
    let sig = pki.write("sig.p7s", &cms);
    let data = pki.write("data.bin", DATA);
    let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .arg("validate")
        .arg("--data")
        .arg(&data)
        .arg("--signature")
        .arg(&sig)
        .args(["--trust", "certs-test/root-ca.cert.pem", "--intermediate"])
        .arg(&sca)
        .arg("--crl")
        .arg(&root)
        .arg("--crl")
        .arg(&sca_crl)
        .args([
            "--policy-level",
            "2.999.7.1=2",
            "--level",
            "2",
            "--at",
            NOW_TEXT,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_pass_the_server_remembers_never_outlives_a_date_or_a_trust_change_it_depended_on() {
    // The server keeps passed path validations to answer the same chain again quickly: asked
    // again and again about the same signatures, at times and under trust that differ only in
    // what the verdict depends on, it must answer each time what a fresh validation would.
    let pki = Pki::new();
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-memo").await;
    let revoked_later = backdated(&pki, vec![]);
    let clean = clean_officer(vec![]);
    let ask = |cms: &[u8], at: i64| {
        let mut v = sigs(&srv, org.token("audit"));
        let req = proto::ValidateSignatureRequest {
            data: DATA.to_vec(),
            signature: cms.to_vec(),
            at: Some(proto::Timestamp { seconds: at }),
            required_level: 2,
            document_id: String::new(),
        };
        async move {
            let r = v.validate_signature(req).await.unwrap().into_inner();
            (r.indication, r.sub_indication)
        }
    };
    let passed = (proto::Indication::TotalPassed as i32, String::new());
    let in_2026 = T0.0; // before the 2026-06-01 CRL was issued
                        // Both CRLs of the signing CA are configured: which one is in force depends on the time.
    set_trust(
        &srv,
        &org,
        vec![
            certs("root-ca.crl.pem"),
            pki.pem("crl-before.pem"),
            pki.pem("crl-after.pem"),
        ],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(ask(&revoked_later, in_2026).await, passed);
    }
    // Same signature, same trust, later time: the newer CRL (issued in between) lists the key.
    for _ in 0..2 {
        assert_eq!(
            ask(&revoked_later, NOW).await,
            (
                proto::Indication::Indeterminate as i32,
                "REVOKED_NO_POE".to_string()
            )
        );
    }
    assert_eq!(ask(&revoked_later, in_2026).await, passed);
    // The clean officer: passes up to its certificate's last second, not one second after.
    let not_after = 2_524_607_999; // 2049-12-31T23:59:59Z
    let crl_next = 2_521_929_600; // 2049-12-01T00:00:00Z, the CRLs' nextUpdate
    assert_eq!(ask(&clean, in_2026).await, passed);
    assert_eq!(ask(&clean, crl_next - 1).await, passed);
    let (indication, sub) = ask(&clean, crl_next + 1).await;
    assert_ne!(indication, passed.0, "CRLs past their nextUpdate: {sub}");
    let (indication, sub) = ask(&clean, not_after + 1).await;
    assert_ne!(indication, passed.0, "certificate expired: {sub}");
    assert_eq!(ask(&clean, in_2026).await, passed);
    // A trust change: without the 2025 CRL, no CRL of the signing CA was issued by 2026-01-01.
    set_trust(
        &srv,
        &org,
        vec![certs("root-ca.crl.pem"), pki.pem("crl-after.pem")],
    )
    .await;
    for cms in [&clean, &revoked_later] {
        let (indication, sub) = ask(cms, in_2026).await;
        assert_ne!(indication, passed.0, "no CRL in force yet: {sub}");
    }
    // And back: the same answers as before.
    set_trust(
        &srv,
        &org,
        vec![certs("root-ca.crl.pem"), pki.pem("crl-before.pem")],
    )
    .await;
    assert_eq!(ask(&revoked_later, in_2026).await, passed);
    assert_eq!(ask(&revoked_later, NOW).await, passed);
    srv.stop().await;
}
