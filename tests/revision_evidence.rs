//! Evidence of documents signed inside their content (PES flows in XAdES, PDFs in PAdES),
//! through a real server: each signature's event records the content revision it created and
//! its SHA-256, the submission event the digest of revision 0, and an evidence bundle carries
//! the revisions so that `paraph verify-bundle` checks them offline — the revisions against the
//! logged digests, each signature in its revision by its format's validator, the events
//! chained. A tampered, a swapped and a missing revision are each refused, naming it.

mod common;
use common::*;
use paraph::audit::bundle::{self, BundleError, EvidenceBundle};
use paraph::audit::{AuditEvent, AuditPublicKey};
use paraph::proto::{self, audit_service_client::AuditServiceClient, StepKind as K, StepMode as M};
use sha2::Digest as _;
use std::path::Path;

/// A PES V2 flow of two bordereaux, built here.
fn pes_flow() -> Vec<u8> {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PES_Aller>\n");
    x.push_str("  <EnTetePES><IdColl V=\"21690123400017\"/></EnTetePES>\n  <PES_DepenseAller>\n");
    for b in ["BORD_1", "BORD_2"] {
        x.push_str(&format!(
            "    <Bordereau Id=\"{b}\"><BlocBordereau><Exer V=\"2026\"/></BlocBordereau><Piece><LigneDePiece><BlocLignePiece><InfoLignePiece><MtHT V=\"120.50\"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V=\"Zo\u{e9} M\u{fc}ller\"/></InfoTiers></Tiers></LigneDePiece></Piece></Bordereau>\n"
        ));
    }
    x.push_str("  </PES_DepenseAller>\n</PES_Aller>\n");
    x.into_bytes()
}

/// A one-page PDF with a cross-reference table, built here.
fn pdf() -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let text = "BT /F1 14 Tf 72 760 Td (Contrat de service) Tj ET";
    let bodies = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [4 0 R] /Count 1 >>".to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>".to_string(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
    ];
    let mut offsets = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref_at = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", bodies.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
            bodies.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

async fn log_key(srv: &TestServer, org: &Org) -> AuditPublicKey {
    let pem = AuditServiceClient::with_interceptor(srv.channel(), auth(org.token("audit")))
        .get_log_key(proto::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .public_key_pem;
    AuditPublicKey::from_pem(pem.as_bytes()).unwrap()
}

async fn export(srv: &TestServer, org: &Org, id: &str) -> Vec<u8> {
    AuditServiceClient::with_interceptor(srv.channel(), auth(org.token("audit")))
        .max_decoding_message_size(64 * 1024 * 1024)
        .export_evidence(proto::ExportEvidenceRequest {
            document_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle
}

/// `paraph verify-bundle` on `raw`, offline, against the test root: its exit code and JSON.
fn verify_bundle_cli(dir: &Path, raw: &[u8], key: &AuditPublicKey) -> (i32, serde_json::Value) {
    std::fs::write(dir.join("b.json"), raw).unwrap();
    std::fs::write(dir.join("k.pem"), key.to_pem().unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args([
            "verify-bundle",
            "b.json",
            "--log-key",
            "k.pem",
            "--json",
            "--trust",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-test/root-ca.cert.pem"))
        .current_dir(dir)
        .env_remove("PARAPH_TOKEN")
        .env_remove("PARAPH_SERVER")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn verify(b: &EvidenceBundle, key: &AuditPublicKey) -> Result<bundle::VerifiedBundle, BundleError> {
    let checker =
        paraph::client::evidence::signature_checker(vec![cert_der("root-ca")], Default::default());
    bundle::verify(b, key, &checker)
}

/// The document facts of the bundle's events, with their kinds.
fn facts(b: &EvidenceBundle) -> Vec<(String, paraph::audit::event::DocumentFacts)> {
    b.events
        .iter()
        .map(|e| {
            let ev = AuditEvent::parse(&e.event.0).unwrap();
            (ev.kind.clone(), ev.document.unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_pes_bundle_verifies_offline_and_a_tampered_swapped_or_missing_revision_is_named()
{
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |_| {}).await;
    let org = Org::create(&srv, "default").await;
    trust_and_bind_officers(&srv, &org).await;
    create_circuit(
        &srv,
        &org,
        "pes",
        vec![visa(&["carol"]), sign_step(&["alice"], 2)],
    )
    .await;
    let flow = pes_flow();
    let d = submit_file(
        &srv,
        &org,
        "pes",
        ("Mandats", "PES_Aller.xml"),
        "auto",
        &flow,
    )
    .await
    .unwrap();
    assert_eq!(d.signature_format, "xades-pes");
    approve(&srv, &org, "carol", &d.id, None).await.unwrap();
    let p = prepare(
        &srv,
        &org,
        "alice",
        &d.id,
        "officer-l2-p256",
        &["signing-ca"],
    )
    .await
    .unwrap();
    assert_eq!(p.items.len(), 2);
    let k = key("officer-l2-p256");
    let values = p
        .items
        .iter()
        .map(|i| paraph::crypto::sign_with_key(&k, &i.data).unwrap())
        .collect();
    sigs(&srv, org.token("alice"))
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: p.id.clone(),
            signature_value: Vec::new(),
            signature_values: values,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let signed = srv.content(org.token("audit"), &d.id).await;
    assert_ne!(signed, flow);
    // Validated as this document's: every bordereau's signature is judged at the time the log
    // recorded the signature (the proof of existence), not only the first one's.
    let report = sigs(&srv, org.token("alice"))
        .validate_signature(proto::ValidateSignatureRequest {
            data: signed.clone(),
            signature: Vec::new(),
            at: None,
            required_level: 0,
            document_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        report.indication,
        proto::Indication::TotalPassed as i32,
        "{report:?}"
    );
    assert_eq!(report.signers.len(), 2, "{report:?}");
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    let logged = doc
        .history
        .iter()
        .find(|e| e.kind == "signed")
        .and_then(|e| e.at)
        .unwrap();
    for s in &report.signers {
        assert_eq!(s.proof_of_existence.as_ref(), Some(&logged), "{report:?}");
    }

    let key = log_key(&srv, &org).await;
    let raw = export(&srv, &org, &d.id).await;
    let b = EvidenceBundle::from_json(&raw).unwrap();
    assert_eq!(b.format, "paraph-evidence/3");
    assert_eq!(b.content.0, flow, "the bundle's content is revision 0");
    assert_eq!(b.revisions.len(), 1);
    assert_eq!(b.revisions[0].revision, 1);
    assert_eq!(b.revisions[0].content.0, signed);
    // The submission logs revision 0's digest, the signature the revision it created.
    let f = facts(&b);
    assert_eq!(f[0].0, "submitted");
    assert_eq!(f[0].1.content_sha256, sha256_hex(&flow));
    let (_, s) = f.iter().find(|(k, _)| k == "signed").unwrap();
    assert_eq!(s.revision, Some(1));
    assert_eq!(
        s.revision_sha256.as_deref(),
        Some(sha256_hex(&signed).as_str())
    );
    assert!(f
        .iter()
        .filter(|(k, _)| k != "signed")
        .all(|(_, f)| f.revision.is_none() && f.revision_sha256.is_none()));

    // Offline, through the command: verified, the XAdES signatures checked in revision 1.
    let tmp = tempfile::tempdir().unwrap();
    let (code, v) = verify_bundle_cli(tmp.path(), &raw, &key);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(
        v["document"]["revisions_sha256"][0],
        sha256_hex(&signed),
        "{v}"
    );
    let check = v["signatures"][0]["check"].as_str().unwrap();
    assert!(
        check.contains("TOTAL_PASSED (XAdES in revision 1, every bordereau)"),
        "{check}"
    );

    // A byte of a signed bordereau changed in the revision: named, altered.
    let mut t = b.clone();
    let at = t.revisions[0]
        .content
        .0
        .windows(6)
        .position(|w| w == b"120.50")
        .unwrap();
    t.revisions[0].content.0[at] = b'9';
    let e = verify(&t, &key).unwrap_err();
    assert!(
        matches!(e, BundleError::RevisionMismatch { revision: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("is not the logged"), "{e}");
    assert!(e.to_string().contains("(altered)"), "{e}");
    // The submitted flow given as the signed revision: named, swapped.
    let mut t = b.clone();
    t.revisions[0].content.0 = flow.clone();
    let e = verify(&t, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "revision 1: the bundle gives the content of revision 0 in its place (swapped)"
    );
    // No revision: named, missing.
    let mut t = b.clone();
    t.revisions.clear();
    let e = verify(&t, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "revision 1 (created by signature #0) is missing from the bundle"
    );
    // The edited revision with the document record changed to match it: the event that
    // created the revision logged another digest.
    let mut t = b.clone();
    t.revisions[0].content.0[at] = b'9';
    let edited = sha256_hex(&t.revisions[0].content.0);
    t.document.revisions[0].sha256 = edited.clone();
    let e = verify(&t, &key).unwrap_err();
    assert!(
        matches!(e, BundleError::EventRevisionMismatch { .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&edited), "{e}");
    // And through the command, exit 6 naming the revision.
    let mut t = b.clone();
    t.revisions.clear();
    let (code, v) = verify_bundle_cli(tmp.path(), &serde_json::to_vec(&t).unwrap(), &key);
    assert_eq!(code, 6, "{v}");
    assert!(v["error"].as_str().unwrap().contains("revision 1"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_pades_bundle_verifies_offline_and_each_revision_is_checked() {
    let (srv, org) = start_with_seal("default").await;
    create_circuit(
        &srv,
        &org,
        "contrat",
        vec![sign_step(&["alice"], 2), step(K::Seal, &[], M::All, 0)],
    )
    .await;
    let content = pdf();
    let d = submit_file(
        &srv,
        &org,
        "contrat",
        ("Contrat", "contrat.pdf"),
        "auto",
        &content,
    )
    .await
    .unwrap();
    assert_eq!(d.signature_format, "pades");
    sign(&srv, &org, "alice", &d.id, "officer-l2-p256")
        .await
        .unwrap();
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert_eq!(state(&doc), proto::DocumentState::Completed);
    assert_eq!(
        doc.revision_sha256.len(),
        2,
        "alice's revision and the seal's"
    );
    let last = srv.content(org.token("audit"), &d.id).await;

    let key = log_key(&srv, &org).await;
    let raw = export(&srv, &org, &d.id).await;
    let b = EvidenceBundle::from_json(&raw).unwrap();
    assert_eq!(b.revisions.len(), 2);
    assert_eq!(b.revisions[1].content.0, last);
    let f = facts(&b);
    let logged: Vec<(Option<u32>, Option<String>)> = f
        .iter()
        .filter(|(k, _)| k == "signed" || k == "sealed")
        .map(|(_, f)| (f.revision, f.revision_sha256.clone()))
        .collect();
    assert_eq!(
        logged,
        vec![
            (Some(1), Some(sha256_hex(&b.revisions[0].content.0))),
            (Some(2), Some(sha256_hex(&last))),
        ]
    );

    let tmp = tempfile::tempdir().unwrap();
    let (code, v) = verify_bundle_cli(tmp.path(), &raw, &key);
    assert_eq!(code, 0, "{v}");
    for (i, s) in v["signatures"].as_array().unwrap().iter().enumerate() {
        let check = s["check"].as_str().unwrap();
        assert!(check.starts_with("TOTAL_PASSED (PAdES field "), "{check}");
        assert!(
            check.contains(&format!("covering revision {}", i + 1)),
            "{check}"
        );
    }

    // The two revisions swapped: the first one named.
    let mut t = b.clone();
    let (r0, r1) = (
        t.revisions[0].content.clone(),
        t.revisions[1].content.clone(),
    );
    t.revisions[0].content = r1;
    t.revisions[1].content = r0;
    let e = verify(&t, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "revision 1: the bundle gives the content of revision 2 in its place (swapped)"
    );
    // A byte of the seal's incremental update changed.
    let mut t = b.clone();
    let n = t.revisions[1].content.0.len();
    t.revisions[1].content.0[n - 20] ^= 1;
    let e = verify(&t, &key).unwrap_err();
    assert!(
        matches!(e, BundleError::RevisionMismatch { revision: 2, .. }),
        "{e}"
    );
    // Alice's revision left out.
    let mut t = b.clone();
    t.revisions.remove(0);
    let e = verify(&t, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "revision 1 (created by signature #0) is missing from the bundle"
    );
    // A revision the document does not have.
    let mut t = b.clone();
    let mut extra = t.revisions[1].clone();
    extra.revision = 3;
    t.revisions.push(extra);
    let e = verify(&t, &key).unwrap_err();
    assert!(
        matches!(e, BundleError::RevisionMismatch { revision: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("(added)"), "{e}");
}
