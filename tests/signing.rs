//! Certificate signatures over real gRPC: two-phase CAdES signing with keys that never reach
//! the server, the tenant seal, validation reports, every refusal with its own reason, and
//! interoperability with OpenSSL and pyHanko.

mod common;
use common::*;
use paraph::proto::{self, DocumentState as S, StepKind as K, StepMode as M};
use std::path::Path;
use tonic::Code;

async fn start() -> (TestServer, Org) {
    start_with_seal("ville-s").await
}

const CONTENT: &[u8] = b"%PDF-1.7 test content";

fn openssl_cms_verify(dir: &Path, cms: &[u8], data: &[u8], policies: &[&str]) -> (bool, String) {
    std::fs::write(dir.join("sig.p7s"), cms).unwrap();
    std::fs::write(dir.join("data.bin"), data).unwrap();
    let mut anchors = certs("root-ca.cert.pem");
    anchors.extend(certs("crls.pem"));
    std::fs::write(dir.join("anchors.pem"), anchors).unwrap();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(dir.join("sig.p7s"))
        .arg("-content")
        .arg(dir.join("data.bin"))
        .arg("-CAfile")
        .arg(dir.join("anchors.pem"))
        .args(["-purpose", "any", "-crl_check_all", "-explicit_policy"]);
    for p in policies {
        cmd.args(["-policy", p]);
    }
    let out = cmd.args(["-out", "/dev/null"]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// pyHanko's detached CMS validation (hard-fail revocation with the CRLs given, no fetching).
fn pyhanko_verify(dir: &Path, cms: &[u8], data: &[u8]) -> Result<String, String> {
    std::fs::write(dir.join("sig.p7s"), cms).unwrap();
    std::fs::write(dir.join("data.bin"), data).unwrap();
    let script = r#"
import asyncio, sys
from asn1crypto import cms, pem, x509, crl
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
def load(path, kind):
    raw = open(path, 'rb').read()
    out = []
    for _t, _h, der in pem.unarmor(raw, multiple=True):
        out.append(kind.load(der))
    return out
root = load('certs-test/root-ca.cert.pem', x509.Certificate)[0]
inter = load('certs-test/signing-ca.cert.pem', x509.Certificate)[0]
crls = load('certs-test/crls.pem', crl.CertificateList)
d = sys.argv[1]
sd = cms.ContentInfo.load(open(d + '/sig.p7s', 'rb').read())['content']
data = open(d + '/data.bin', 'rb').read()
vc = ValidationContext(trust_roots=[root], other_certs=[inter], crls=crls, allow_fetching=False, revocation_mode='hard-fail')
st = asyncio.run(async_validate_detached_cms(data, sd, signer_validation_context=vc))
print(st.summary())
sys.exit(0 if (st.intact and st.valid and st.trusted) else 1)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[tokio::test]
async fn visa_signature_and_seal_complete_and_every_signature_verifies_externally() {
    let (srv, org) = start().await;
    create_circuit(
        &srv,
        &org,
        "vss",
        vec![
            visa(&["carol"]),
            sign_step(&["alice"], 2),
            step(K::Seal, &[], M::All, 0),
        ],
    )
    .await;
    let d = submit(&srv, &org, "vss", &[]).await;
    // Not yet: the signature step is not active (she is told so), and a visa is not a
    // signature.
    assert_code(
        prepare(&srv, &org, "alice", &d.id, "officer-l2-p256", &[]).await,
        Code::FailedPrecondition,
        "your step (1, signature) is not active yet",
    );
    approve(&srv, &org, "carol", &d.id, Some(0)).await.unwrap();
    assert_code(
        approve(&srv, &org, "alice", &d.id, Some(1)).await,
        Code::FailedPrecondition,
        "signature step",
    );
    let r = sign(&srv, &org, "alice", &d.id, "officer-l2-p256")
        .await
        .unwrap();
    assert_eq!(
        proto::DocumentState::try_from(r.state).unwrap(),
        S::Completed,
        "the seal was applied at once"
    );
    let sig = r.signature.unwrap();
    assert_eq!(
        (sig.index, sig.step, sig.level, sig.signer.as_str()),
        (0, 1, 2, "alice")
    );
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert_eq!(
        history_kinds(&doc)
            .iter()
            .filter(|k| *k == "signed" || *k == "sealed")
            .count(),
        2
    );
    assert_eq!(
        doc.steps[2].actions[0].kind,
        proto::ActionKind::Sealed as i32
    );

    let all = signatures_of(&srv, &org, &d.id).await;
    assert_eq!(all.signatures.len(), 2);
    assert!(all.signatures[1].seal);
    let dir = tempfile::tempdir().unwrap();
    for s in &all.signatures {
        let (ok, err) = openssl_cms_verify(dir.path(), &s.cms, CONTENT, &[L2]);
        assert!(ok, "openssl refused signature {}: {err}", s.index);
        pyhanko_verify(dir.path(), &s.cms, CONTENT)
            .unwrap_or_else(|e| panic!("pyHanko refused signature {}: {e}", s.index));
        let (ok, _) = openssl_cms_verify(dir.path(), &s.cms, b"%PDF-1.7 other", &[L2]);
        assert!(!ok);
    }
    let parsed = paraph::crypto::parse(&all.combined_cms).unwrap();
    assert_eq!(parsed.signers.len(), 2);
    // pyHanko validates single-signer CMS only: the combined one is checked by OpenSSL.
    let (ok, err) = openssl_cms_verify(dir.path(), &all.combined_cms, CONTENT, &[L2]);
    assert!(ok, "combined: {err}");

    // The server's own validation report.
    let mut v = sigs(&srv, org.token("audit"));
    let rep = v
        .validate_signature(proto::ValidateSignatureRequest {
            data: CONTENT.to_vec(),
            signature: all.signatures[0].cms.clone(),
            at: None,
            required_level: 2,
            document_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rep.indication,
        proto::Indication::TotalPassed as i32,
        "{rep:?}"
    );
    assert_eq!(rep.signers[0].level, 2);
    assert_eq!(rep.signers[0].policy_oid, "1.2.250.1.131.1.5.18.21.1.7");
    assert_eq!(rep.signers[0].chain.len(), 3);
    let rep = v
        .validate_signature(proto::ValidateSignatureRequest {
            data: b"tampered".to_vec(),
            signature: all.signatures[0].cms.clone(),
            at: None,
            required_level: 0,
            document_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (rep.indication, rep.sub_indication.as_str()),
        (proto::Indication::TotalFailed as i32, "HASH_FAILURE")
    );
    let rep = v
        .validate_signature(proto::ValidateSignatureRequest {
            data: CONTENT.to_vec(),
            signature: all.signatures[0].cms.clone(),
            at: None,
            required_level: 3,
            document_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rep.sub_indication, "LEVEL_TOO_LOW");
    let rep = v
        .validate_signature(proto::ValidateSignatureRequest {
            data: CONTENT.to_vec(),
            signature: b"garbage".to_vec(),
            at: None,
            required_level: 0,
            document_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rep.sub_indication, "FORMAT_FAILURE");
    srv.stop().await;
}

#[tokio::test]
async fn every_key_type_signs_and_several_signatures_form_one_signed_data() {
    let (srv, org) = start().await;
    create_circuit(
        &srv,
        &org,
        "four",
        vec![step(
            K::Signature,
            &["alice", "bob", "carol", "dave"],
            M::All,
            0,
        )],
    )
    .await;
    let d = submit(&srv, &org, "four", &[]).await;
    for (who, stem) in [
        ("alice", "officer-l2-p256"),
        ("bob", "officer-l3-p384"),
        ("carol", "officer-l1-rsa2048"),
        ("dave", "officer-l2-rsa3072"),
    ] {
        sign(&srv, &org, who, &d.id, stem)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"));
    }
    let all = signatures_of(&srv, &org, &d.id).await;
    assert_eq!(all.signatures.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = openssl_cms_verify(dir.path(), &all.combined_cms, CONTENT, &[L1, L2, L3]);
    assert!(ok, "{err}");
    for s in &all.signatures {
        pyhanko_verify(dir.path(), &s.cms, CONTENT)
            .unwrap_or_else(|e| panic!("pyHanko refused {}: {e}", s.signer));
    }
    assert_eq!(
        state(&get(&srv, &org, "alice", &d.id).await.unwrap()),
        S::Completed
    );
    srv.stop().await;
}

#[tokio::test]
async fn each_defective_certificate_is_refused_with_its_own_reason() {
    let (srv, org) = start().await;
    create_circuit(&srv, &org, "one", vec![sign_step(&["erin"], 1)]).await;
    let d = submit(&srv, &org, "one", &[]).await;
    let cases: &[(&str, &[&str], &str)] = &[
        ("neg-expired", &["signing-ca"], "EXPIRED"),
        ("neg-not-yet-valid", &["signing-ca"], "NOT_YET_VALID"),
        ("neg-revoked", &["signing-ca"], "REVOKED"),
        ("neg-no-nonrepudiation", &["signing-ca"], "KEY_USAGE"),
        ("neg-rsa1024", &["signing-ca"], "WEAK_ALGORITHM"),
        ("neg-sha1", &["signing-ca"], "WEAK_ALGORITHM"),
        ("neg-unknown-issuer", &[], "CHAIN_NOT_TRUSTED"),
        ("neg-bad-policy", &["signing-ca"], "NO_POLICY"),
    ];
    let mut messages = std::collections::HashSet::new();
    for (stem, extra, code) in cases {
        bind(&srv, &org, "erin", &certs(&format!("{stem}.cert.pem")))
            .await
            .unwrap();
        let e = prepare(&srv, &org, "erin", &d.id, stem, extra)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{stem}: {e:?}");
        assert!(
            e.message()
                .contains(&format!("certificate refused: {code}")),
            "{stem}: {}",
            e.message()
        );
        assert!(
            messages.insert(e.message().to_string()),
            "{stem}: reason not distinct"
        );
    }
    // sha1 and rsa1024 share a code but not a message (checked above). The issuing CA without
    // keyCertSign is refused at depth 1 with a message naming keyCertSign.
    bind(&srv, &org, "erin", &certs("neg-ca-no-keycertsign.cert.pem"))
        .await
        .unwrap();
    let e = prepare(
        &srv,
        &org,
        "erin",
        &d.id,
        "neg-ca-no-keycertsign",
        &["signing-ca-nokcs"],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("depth 1") && e.message().contains("keyCertSign"),
        "{}",
        e.message()
    );
    // A CRL past its nextUpdate is a failure, never a pass.
    bind(&srv, &org, "erin", &certs("officer2-l2-p256.cert.pem"))
        .await
        .unwrap();
    prepare(
        &srv,
        &org,
        "erin",
        &d.id,
        "officer2-l2-p256",
        &["signing-ca"],
    )
    .await
    .unwrap();
    set_trust(
        &srv,
        &org,
        vec![
            certs("root-ca.crl.pem"),
            certs("signing-ca.crl-expired.pem"),
        ],
    )
    .await;
    assert_code(
        prepare(
            &srv,
            &org,
            "erin",
            &d.id,
            "officer2-l2-p256",
            &["signing-ca"],
        )
        .await,
        Code::FailedPrecondition,
        "CRL_EXPIRED",
    );
    // No CRL at all: revocation unknown is a failure too.
    set_trust(&srv, &org, vec![]).await;
    assert_code(
        prepare(
            &srv,
            &org,
            "erin",
            &d.id,
            "officer2-l2-p256",
            &["signing-ca"],
        )
        .await,
        Code::FailedPrecondition,
        "CRL_NOT_FOUND",
    );
    srv.stop().await;
}

/// alice prepares a signature of document `id` with her level-2 P-256 certificate.
async fn alice_prepares_l2(
    srv: &TestServer,
    org: &Org,
    id: &str,
) -> Result<proto::Preparation, tonic::Status> {
    prepare(srv, org, "alice", id, "officer-l2-p256", &["signing-ca"]).await
}

#[tokio::test]
async fn forged_replayed_unbound_underlevel_expired_and_reused_preparations_are_refused() {
    let (srv, org) = start().await;
    create_circuit(&srv, &org, "s2", vec![sign_step(&["alice", "bob"], 2)]).await;
    create_circuit(&srv, &org, "s3", vec![sign_step(&["alice"], 3)]).await;
    let d1 = submit(&srv, &org, "s2", &[]).await;
    // Another document, other content.
    let mut fin = srv.docs(org.token("finance"), None);
    let d2 = submit_raw(
        &mut fin,
        header("s2", "Autre mandat", &[]),
        b"%PDF-1.7 another document",
        1024,
    )
    .await
    .unwrap();

    // Unbound: bob's certificate is not alice's.
    assert_code(
        prepare(
            &srv,
            &org,
            "alice",
            &d1.id,
            "officer-l3-p384",
            &["signing-ca"],
        )
        .await,
        Code::FailedPrecondition,
        "NOT_BOUND",
    );
    // Binding someone else's certificate is refused.
    assert_code(
        bind(&srv, &org, "alice", &certs("officer-l3-p384.cert.pem")).await,
        Code::AlreadyExists,
        "another user",
    );
    // Level below the step's requirement.
    let d3 = submit(&srv, &org, "s3", &[]).await;
    assert_code(
        alice_prepares_l2(&srv, &org, &d3.id).await,
        Code::FailedPrecondition,
        "LEVEL_TOO_LOW",
    );

    let p1 = alice_prepares_l2(&srv, &org, &d1.id).await.unwrap();
    let p2 = alice_prepares_l2(&srv, &org, &d2.id).await.unwrap();
    let v1 = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &p1.signed_attributes).unwrap();
    // A value over altered attributes.
    let mut altered = p1.signed_attributes.clone();
    let n = altered.len();
    altered[n - 2] ^= 1;
    let forged = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &altered).unwrap();
    assert_code(
        complete(&srv, &org, "alice", &p1.id, forged).await,
        Code::FailedPrecondition,
        "SIG_CRYPTO_FAILURE",
    );
    // A valid value replayed onto another preparation (another document).
    assert_code(
        complete(&srv, &org, "alice", &p2.id, v1.clone()).await,
        Code::FailedPrecondition,
        "SIG_CRYPTO_FAILURE",
    );
    // Same content as d1 but prepared a second later: the signing time binds the value too.
    srv.clock.advance(1);
    let d4 = submit(&srv, &org, "s2", &[]).await;
    let p4 = alice_prepares_l2(&srv, &org, &d4.id).await.unwrap();
    assert_ne!(p4.signed_attributes, p1.signed_attributes);
    assert_code(
        complete(&srv, &org, "alice", &p4.id, v1.clone()).await,
        Code::FailedPrecondition,
        "SIG_CRYPTO_FAILURE",
    );
    // Someone else completing alice's preparation.
    assert_code(
        complete(&srv, &org, "bob", &p1.id, v1.clone()).await,
        Code::PermissionDenied,
        "another user",
    );
    // Garbage values and ids.
    assert_code(
        complete(&srv, &org, "alice", &p1.id, vec![]).await,
        Code::InvalidArgument,
        "signature_value",
    );
    assert_code(
        complete(&srv, &org, "alice", "zz", v1.clone()).await,
        Code::InvalidArgument,
        "preparation_id",
    );
    assert_code(
        complete(&srv, &org, "alice", &"0".repeat(32), v1.clone()).await,
        Code::NotFound,
        "preparation",
    );
    // The genuine value works once; a second use is refused.
    complete(&srv, &org, "alice", &p1.id, v1.clone())
        .await
        .unwrap();
    assert_code(
        complete(&srv, &org, "alice", &p1.id, v1.clone()).await,
        Code::FailedPrecondition,
        "already",
    );
    // Preparations older versions marked as spent, with a `prepused/` record or their `used`
    // flag, stay spent; once the marker is gone (to show it is what refuses), the value works.
    let store = srv.svc.as_ref().expect("in-process server").store().clone();
    let p5 = alice_prepares_l2(&srv, &org, &d4.id).await.unwrap();
    let v4 = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &p4.signed_attributes).unwrap();
    let v5 = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &p5.signed_attributes).unwrap();
    let (t, id4, id5) = (org.tenant.clone(), p4.id.clone(), p5.id.clone());
    store
        .transact(move |tx| {
            tx.put_raw(&format!("prepused/{t}/{id4}"), b"")?;
            let k5 = format!("prep/{t}/{id5}");
            let p5 = String::from_utf8(tx.get_raw(&k5)?.expect("p5").to_vec()).expect("JSON");
            assert!(p5.contains(r#""used":false"#), "{p5}");
            tx.put_raw(
                &k5,
                p5.replace(r#""used":false"#, r#""used":true"#).as_bytes(),
            )
        })
        .await
        .unwrap();
    for (p, v) in [(&p4, &v4), (&p5, &v5)] {
        assert_code(
            complete(&srv, &org, "alice", &p.id, v.clone()).await,
            Code::FailedPrecondition,
            "already",
        );
    }
    let (t, id4) = (org.tenant.clone(), p4.id.clone());
    store
        .transact(move |tx| tx.remove(&format!("prepused/{t}/{id4}")))
        .await
        .unwrap();
    complete(&srv, &org, "alice", &p4.id, v4).await.unwrap();
    // A preparation records the level its step requires; one of an older version, without
    // it, makes the completion read the level from the document. Moved (in the store) onto
    // the level-3 document, a level-2 preparation without its recorded level is refused.
    let p6 = alice_prepares_l2(&srv, &org, &d2.id).await.unwrap();
    let v6 = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &p6.signed_attributes).unwrap();
    let (t, id6, d3id) = (org.tenant.clone(), p6.id.clone(), d3.id.clone());
    store
        .transact(move |tx| {
            let k6 = format!("prep/{t}/{id6}");
            let mut p6: serde_json::Value =
                serde_json::from_slice(&tx.get_raw(&k6)?.expect("p6")).expect("JSON");
            assert_eq!(p6["step_level"], serde_json::json!({ "required": 2 }));
            p6["document"] = d3id.into();
            p6.as_object_mut().expect("object").remove("step_level");
            tx.put_raw(&k6, &serde_json::to_vec(&p6).expect("JSON"))
        })
        .await
        .unwrap();
    assert_code(
        complete(&srv, &org, "alice", &p6.id, v6).await,
        Code::FailedPrecondition,
        "LEVEL_TOO_LOW",
    );
    // An expired preparation.
    srv.clock.advance(601);
    let v2 = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &p2.signed_attributes).unwrap();
    assert_code(
        complete(&srv, &org, "alice", &p2.id, v2).await,
        Code::FailedPrecondition,
        "expired",
    );
    // Other tenants see nothing.
    let other = Org::create(&srv, "ville-o").await;
    assert_code(
        sigs(&srv, other.token("audit"))
            .get_signatures(proto::GetSignaturesRequest {
                document_id: d1.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    // Garbage certificate chains.
    let e = sigs(&srv, org.token("alice"))
        .prepare_signature(proto::PrepareSignatureRequest {
            document_id: d2.id.clone(),
            step: None,
            certificate_chain: vec![b"junk".to_vec()],
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_code(
        sigs(&srv, org.token("alice"))
            .prepare_signature(proto::PrepareSignatureRequest {
                document_id: d2.id.clone(),
                step: None,
                certificate_chain: vec![],
                idempotency_key: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "certificate_chain",
    );
    srv.stop().await;
}

#[tokio::test]
async fn trust_settings_are_validated_and_needed_for_signature_circuits() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-t").await;
    let mut admin = srv.admin(org.token("boss"), None);
    let base = proto::SetTrustRequest {
        anchors: vec![certs("root-ca.cert.pem")],
        policy_levels: vec![proto::PolicyLevel {
            oid: L2.into(),
            level: 2,
        }],
        ..Default::default()
    };
    let mut bad = base.clone();
    bad.anchors = vec![b"junk".to_vec()];
    assert_code(
        admin.set_trust(bad).await,
        Code::InvalidArgument,
        "anchors[0]",
    );
    let mut bad = base.clone();
    bad.crls = vec![b"junk".to_vec()];
    assert_code(admin.set_trust(bad).await, Code::InvalidArgument, "crls[0]");
    let mut bad = base.clone();
    bad.policy_levels = vec![proto::PolicyLevel {
        oid: "not.an.oid".into(),
        level: 2,
    }];
    assert_code(
        admin.set_trust(bad).await,
        Code::InvalidArgument,
        "policy_levels",
    );
    let mut bad = base.clone();
    bad.policy_levels = vec![proto::PolicyLevel {
        oid: L2.into(),
        level: 4,
    }];
    assert_code(
        admin.set_trust(bad).await,
        Code::InvalidArgument,
        "policy_levels",
    );
    assert_code(
        srv.admin(org.token("alice"), None)
            .set_trust(base.clone())
            .await,
        Code::PermissionDenied,
        "admin",
    );
    // Nothing trusted yet: signature circuits are refused.
    let mut c = srv.circuits(org.token("boss"), None);
    let req = proto::CreateCircuitRequest {
        name: "sig".into(),
        steps: vec![sign_step(&["alice"], 2)],
        ..Default::default()
    };
    assert_code(
        c.create_circuit(req.clone()).await,
        Code::FailedPrecondition,
        "trust settings",
    );
    let shown = admin.set_trust(base).await.unwrap().into_inner();
    assert_eq!(shown.anchors.len(), 1);
    assert!(!shown.seal_configured);
    c.create_circuit(req).await.unwrap();
    let got = srv
        .admin(org.token("audit"), None)
        .get_trust(proto::GetTrustRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.policy_levels,
        vec![proto::PolicyLevel {
            oid: L2.into(),
            level: 2
        }]
    );
    // Binding: officers only, one certificate.
    assert_code(
        bind(&srv, &org, "finance", &certs("officer-l2-p256.cert.pem")).await,
        Code::FailedPrecondition,
        "not an officer",
    );
    assert_code(
        bind(&srv, &org, "alice", b"junk").await,
        Code::InvalidArgument,
        "certificate",
    );
    assert_code(
        bind(&srv, &org, "alice", &certs("chain.pem")).await,
        Code::InvalidArgument,
        "exactly one",
    );
    let u = bind(&srv, &org, "alice", &certs("officer-l2-p256.cert.pem"))
        .await
        .unwrap();
    assert_eq!(u.certificates.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_retried_completion_answers_the_first_signature_again_and_a_reused_key_is_refused() {
    let (srv, org) = start().await;
    create_circuit(
        &srv,
        &org,
        "two",
        vec![step(K::Signature, &["alice", "bob"], M::All, 0)],
    )
    .await;
    let d = submit(&srv, &org, "two", &[]).await;
    let stem = "officer-l2-p256";
    let p = prepare(&srv, &org, "alice", &d.id, stem, &["signing-ca"])
        .await
        .unwrap();
    let value = paraph::crypto::sign_with_key(&key(stem), &p.signed_attributes).unwrap();
    let request = |value: Vec<u8>| proto::CompleteSignatureRequest {
        preparation_id: p.id.clone(),
        signature_value: value,
        idempotency_key: "complete-1".into(),
        signature_values: Vec::new(),
    };
    let mut alice = sigs(&srv, org.token("alice"));
    let first = alice
        .complete_signature(request(value.clone()))
        .await
        .unwrap()
        .into_inner();
    // The document moves on before the retry: the retry still answers the first answer.
    sign(&srv, &org, "bob", &d.id, "officer-l3-p384")
        .await
        .unwrap();
    let again = alice
        .complete_signature(request(value.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    let signature = first.signature.as_ref().expect("the signature");
    assert!(!signature.cms.is_empty(), "the answer carries the CMS");
    // The same key for another request (another valid value: ECDSA signs with a fresh nonce)
    // is refused, and changes nothing.
    let other = paraph::crypto::sign_with_key(&key(stem), &p.signed_attributes).unwrap();
    assert_ne!(other, value);
    let refused = alice.complete_signature(request(other)).await;
    assert_code(refused, Code::InvalidArgument, "idempotency");
    let all = signatures_of(&srv, &org, &d.id).await;
    assert_eq!(all.signatures.len(), 2, "the retry signed nothing again");
    assert_eq!(all.signatures[0].cms, signature.cms);
    srv.stop().await;
}
