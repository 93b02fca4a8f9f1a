//! The tenant audit log over real gRPC: every change has its event (and a refused command has
//! none), checkpoints verify with the exported key, inclusion and consistency proofs verify,
//! only auditors and admins read it, tenants are isolated, and the log and its key survive a
//! restart.

mod common;
use common::*;
use paraph::audit::{merkle, AuditEvent, AuditPublicKey, SignedCheckpoint};
use paraph::domain::Document;
use paraph::proto::{self, audit_service_client::AuditServiceClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Audit = AuditServiceClient<InterceptedService<Channel, Auth>>;

fn audit(srv: &TestServer, token: &str) -> Audit {
    AuditServiceClient::with_interceptor(srv.channel(), auth(token))
        .max_decoding_message_size(64 * 1024 * 1024)
}

async fn log_key(a: &mut Audit) -> AuditPublicKey {
    let pem = a
        .get_log_key(proto::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .public_key_pem;
    AuditPublicKey::from_pem(pem.as_bytes()).unwrap()
}

async fn checkpoint(a: &mut Audit, key: &AuditPublicKey, tenant: &str) -> SignedCheckpoint {
    let r = a
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let cp = SignedCheckpoint::decode(r.checkpoint.as_bytes()).unwrap();
    cp.verify(key, &format!("paraph/{tenant}")).unwrap();
    assert_eq!(r.size, cp.checkpoint.size);
    cp
}

async fn doc_events(a: &mut Audit, id: &str) -> Vec<(u64, Vec<u8>)> {
    a.list_events(proto::ListEventsRequest {
        document_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .events
    .into_iter()
    .map(|e| (e.index, e.event))
    .collect()
}

/// The first 1000 events of the caller's tenant log.
async fn first_events(a: &mut Audit) -> Vec<proto::LoggedEvent> {
    a.list_events(proto::ListEventsRequest {
        start: 0,
        count: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .events
}

/// The inclusion proof of event `index` in the tree of `tree_size` events, as served.
async fn inclusion(a: &mut Audit, index: u64, tree_size: u64) -> proto::InclusionProof {
    a.get_inclusion_proof(proto::GetInclusionProofRequest { index, tree_size })
        .await
        .unwrap()
        .into_inner()
}

fn hashes(v: &[Vec<u8>]) -> Vec<merkle::Hash> {
    v.iter()
        .map(|h| merkle::hash_from_slice(h).unwrap())
        .collect()
}

#[tokio::test]
async fn every_change_is_logged_proven_and_checkpointed() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-a").await;
    create_circuit(&srv, &org, "two", vec![visa(&["alice"]), visa(&["bob"])]).await;
    let mut aud = audit(&srv, org.token("audit"));
    let key = log_key(&mut aud).await;
    let cp1 = checkpoint(&mut aud, &key, "ville-a").await;
    // Tenant creation, users, tokens and the circuit are already in the log.
    assert!(cp1.checkpoint.size >= 10, "{}", cp1.checkpoint.size);

    let d = submit(&srv, &org, "two", &[]).await;
    // A refused command changes nothing and logs nothing (bob is early: his step is next).
    let size_before = checkpoint(&mut aud, &key, "ville-a").await.checkpoint.size;
    assert_eq!(
        approve(&srv, &org, "bob", &d.id, Some(0))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        checkpoint(&mut aud, &key, "ville-a").await.checkpoint.size,
        size_before
    );
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let done = approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();

    // The document's events mirror its history one to one, chained.
    let events = doc_events(&mut aud, &d.id).await;
    assert_eq!(events.len(), done.history.len());
    let mut prev = String::new();
    for (i, (index, bytes)) in events.iter().enumerate() {
        let e = AuditEvent::parse(bytes).unwrap();
        let facts = e.document.as_ref().unwrap();
        assert_eq!(e.index, *index);
        assert_eq!(e.kind, done.history[i].kind);
        assert_eq!(facts.seq, i as u64);
        assert_eq!(facts.id, d.id);
        assert_eq!(facts.content_sha256, done.content_sha256);
        assert_eq!(facts.prev, prev);
        prev = hex::encode(merkle::leaf_hash(bytes));
    }
    let last = AuditEvent::parse(&events.last().unwrap().1).unwrap();
    assert_eq!(last.kind, "completed");
    assert_eq!(last.document.unwrap().state, "completed");

    // Each event is provably in the checkpointed tree.
    let cp2 = checkpoint(&mut aud, &key, "ville-a").await;
    for (index, bytes) in &events {
        let p = inclusion(&mut aud, *index, cp2.checkpoint.size).await;
        assert_eq!(&p.event, bytes);
        cp2.checkpoint
            .verify_inclusion(&merkle::leaf_hash(bytes), *index, &hashes(&p.hashes))
            .unwrap();
        // The same proof does not hold for another event's bytes.
        let mut other = bytes.clone();
        other[10] ^= 1;
        assert!(cp2
            .checkpoint
            .verify_inclusion(&merkle::leaf_hash(&other), *index, &hashes(&p.hashes))
            .is_err());
    }
    // The log only grew between the two checkpoints.
    let c = aud
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            from_size: cp1.checkpoint.size,
            to_size: cp2.checkpoint.size,
        })
        .await
        .unwrap()
        .into_inner();
    cp1.checkpoint
        .verify_consistency(&cp2.checkpoint, &hashes(&c.hashes))
        .unwrap();
    cp2.checkpoint.ensure_not_older(&cp1.checkpoint).unwrap();
    // A range listing sees the user creations too.
    let range = first_events(&mut aud).await;
    assert_eq!(range.len() as u64, cp2.checkpoint.size);
    let kinds: Vec<String> = range
        .iter()
        .map(|e| AuditEvent::parse(&e.event).unwrap().kind)
        .collect();
    assert!(kinds.contains(&"user_created".to_string()), "{kinds:?}");
    // Out-of-range requests are refused with the field named.
    let e = aud
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            index: cp2.checkpoint.size,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let size = cp2.checkpoint.size;
    let e = aud
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            index: 0,
            tree_size: size + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("tree_size"), "{}", e.message());
    let e = aud
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            from_size: 1,
            to_size: size + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("new_size"), "{}", e.message());
    let e = aud
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            from_size: size,
            to_size: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("never shrinks"), "{}", e.message());
    let e = aud
        .list_events(proto::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("count"), "{}", e.message());
    let e = aud
        .list_events(proto::ListEventsRequest {
            document_id: "not-an-id".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

/// A log of several hundred events spans stored and recomputed levels of the tree (only every
/// fourth level is stored): every event's inclusion proof, at the final size and at earlier
/// sizes, and every earlier checkpoint's consistency proof verify, and the root recomputed
/// from the listed events is the checkpointed one.
#[tokio::test]
async fn proofs_hold_over_a_log_spanning_several_stored_levels() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-a").await;
    create_circuit(&srv, &org, "two", vec![visa(&["alice"]), visa(&["bob"])]).await;
    let mut aud = audit(&srv, org.token("audit"));
    let key = log_key(&mut aud).await;
    let mut earlier = Vec::new();
    for i in 0..40 {
        let d = submit(&srv, &org, "two", &[]).await;
        approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
        approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
        if i % 7 == 0 {
            earlier.push(checkpoint(&mut aud, &key, "ville-a").await);
        }
    }
    let last = checkpoint(&mut aud, &key, "ville-a").await;
    let size = last.checkpoint.size;
    assert!(size > 256, "{size} events: the test must reach level 8");
    let events = first_events(&mut aud).await;
    assert_eq!(events.len() as u64, size);
    let mut mem = merkle::MemNodes::new();
    for e in &events {
        mem.append(&e.event).unwrap();
    }
    assert_eq!(merkle::root(&mem, size).unwrap(), last.checkpoint.root);
    for e in &events {
        let p = inclusion(&mut aud, e.index, size).await;
        assert_eq!(p.event, e.event);
        last.checkpoint
            .verify_inclusion(&merkle::leaf_hash(&e.event), e.index, &hashes(&p.hashes))
            .unwrap();
    }
    for old in &earlier {
        let old_size = old.checkpoint.size;
        for index in [0, old_size / 3, old_size - 1] {
            let p = inclusion(&mut aud, index, old_size).await;
            old.checkpoint
                .verify_inclusion(&merkle::leaf_hash(&p.event), index, &hashes(&p.hashes))
                .unwrap();
        }
        let c = aud
            .get_consistency_proof(proto::GetConsistencyProofRequest {
                from_size: old_size,
                to_size: size,
            })
            .await
            .unwrap()
            .into_inner();
        old.checkpoint
            .verify_consistency(&last.checkpoint, &hashes(&c.hashes))
            .unwrap();
    }
}

#[tokio::test]
async fn only_auditors_and_admins_read_the_log_and_tenants_are_isolated() {
    let srv = TestServer::start().await;
    let a = Org::create(&srv, "ville-b").await;
    let b = Org::create(&srv, "ville-c").await;
    create_circuit(&srv, &a, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &a, "one", &[]).await;
    for who in ["alice", "finance"] {
        let e = audit(&srv, a.token(who))
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}");
    }
    audit(&srv, a.token("boss"))
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap();
    // Another tenant's auditor does not see the document, and its log is its own.
    let mut other = audit(&srv, b.token("audit"));
    let e = other
        .export_evidence(proto::ExportEvidenceRequest {
            document_id: d.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = other
        .list_events(proto::ListEventsRequest {
            document_id: d.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let key = log_key(&mut other).await;
    let cp = checkpoint(&mut other, &key, "ville-c").await;
    let all = first_events(&mut other).await;
    assert_eq!(all.len() as u64, cp.checkpoint.size);
    assert!(all
        .iter()
        .all(|e| AuditEvent::parse(&e.event).unwrap().tenant == "ville-c"));
}

#[tokio::test]
async fn the_log_and_its_key_survive_a_restart_and_keep_growing_consistently() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-r").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    submit(&srv, &org, "one", &[]).await;
    let mut aud = audit(&srv, org.token("audit"));
    let key = log_key(&mut aud).await;
    let before = checkpoint(&mut aud, &key, "ville-r").await;
    let (dir, operator) = srv.stop().await;

    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let mut aud = audit(&srv, org.token("audit"));
    assert_eq!(log_key(&mut aud).await, key, "the audit key is kept");
    let d = submit(&srv, &org, "one", &[]).await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let after = checkpoint(&mut aud, &key, "ville-r").await;
    assert!(after.checkpoint.size > before.checkpoint.size);
    let c = aud
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            from_size: before.checkpoint.size,
            to_size: after.checkpoint.size,
        })
        .await
        .unwrap()
        .into_inner();
    before
        .checkpoint
        .verify_consistency(&after.checkpoint, &hashes(&c.hashes))
        .unwrap();
    // The evidence bundle's events are proven at its checkpoint.
    let raw = aud
        .export_evidence(proto::ExportEvidenceRequest {
            document_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle;
    let bundle: paraph::audit::bundle::EvidenceBundle = serde_json::from_slice(&raw).unwrap();
    let cp = SignedCheckpoint::decode(bundle.checkpoint.as_bytes()).unwrap();
    cp.verify(&key, "paraph/ville-r").unwrap();
    assert_eq!(bundle.events.len(), bundle.document.history.len());
    for e in &bundle.events {
        let proof: Vec<merkle::Hash> = e
            .proof
            .iter()
            .map(|h| merkle::hash_from_slice(&hex::decode(h).unwrap()).unwrap())
            .collect();
        cp.checkpoint
            .verify_inclusion(&merkle::leaf_hash(&e.event.0), e.index, &proof)
            .unwrap();
    }
    assert!(
        bundle.summary.contains("approved step 0  by alice"),
        "{}",
        bundle.summary
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_real_evidence_bundle_verifies_offline_and_tampering_is_named() {
    let (srv, org) = start_with_seal("ville-e").await;
    let seal = proto::StepDefinition {
        kind: proto::StepKind::Seal as i32,
        ..Default::default()
    };
    create_circuit(
        &srv,
        &org,
        "full",
        vec![visa(&["carol"]), sign_step(&["alice"], 2), seal],
    )
    .await;
    // Alice is away: bob (level 3) signs on her behalf.
    paraph::proto::delegation_service_client::DelegationServiceClient::with_interceptor(
        srv.channel(),
        auth(org.token("alice")),
    )
    .declare_absence(proto::DeclareAbsenceRequest {
        from: Some(proto::Timestamp { seconds: T0.0 }),
        to: Some(proto::Timestamp {
            seconds: T0.0 + 86_400,
        }),
        delegate: "bob".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = submit(&srv, &org, "full", &[]).await;
    approve(&srv, &org, "carol", &d.id, Some(0)).await.unwrap();
    let done = sign(&srv, &org, "bob", &d.id, "officer-l3-p384")
        .await
        .unwrap();
    assert_eq!(done.state, proto::DocumentState::Completed as i32);

    let mut aud = audit(&srv, org.token("audit"));
    let key = log_key(&mut aud).await;
    let raw = aud
        .export_evidence(proto::ExportEvidenceRequest {
            document_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle;
    let bundle = paraph::audit::bundle::EvidenceBundle::from_json(&raw).unwrap();
    assert_eq!(bundle.signatures.len(), 2, "bob's signature and the seal");
    let root = cert_der("root-ca");
    let checker =
        paraph::client::evidence::signature_checker(vec![root.clone()], Default::default());
    let v = paraph::audit::bundle::verify(&bundle, &key, &checker).unwrap();
    assert_eq!(v.signatures.len(), 2);
    assert!(
        v.summary
            .iter()
            .any(|l| l.contains("signed step 1  by bob on behalf of alice")),
        "{:?}",
        v.summary
    );
    // One byte of the content, of a signature, of an event: each refused with its own reason.
    let mut t = bundle.clone();
    t.content.0[0] ^= 1;
    let e = paraph::audit::bundle::verify(&t, &key, &checker)
        .unwrap_err()
        .to_string();
    assert!(e.contains("content"), "{e}");
    let mut t = bundle.clone();
    let n = t.signatures[0].cms.0.len();
    t.signatures[0].cms.0[n - 5] ^= 1;
    let e = paraph::audit::bundle::verify(&t, &key, &checker)
        .unwrap_err()
        .to_string();
    assert!(e.contains("signature #0"), "{e}");
    let mut t = bundle.clone();
    t.events.remove(3);
    let e = paraph::audit::bundle::verify(&t, &key, &checker)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dropped"), "{e}");

    // The command line verifies the exported file against a pinned key and the test root.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.json"), &raw).unwrap();
    std::fs::write(dir.path().join("k.pem"), key.to_pem().unwrap()).unwrap();
    let run = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_paraph"))
            .args(["verify-bundle", file, "--log-key", "k.pem", "--trust"])
            .arg(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("certs-test/root-ca.cert.pem"),
            )
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let ok = run("b.json");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("bundle verified"));
    let mut tampered = raw.clone();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.path().join("t.json"), &tampered).unwrap();
    let bad = run("t.json");
    assert_eq!(
        bad.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    srv.stop().await;
}

/// Rewrites the record of document `id` of `tenant` in a stopped server's store, through the
/// store (so with a valid checksum), as someone with access to the disk (or to the database,
/// on PostgreSQL) could.
fn rewrite_record(data: &std::path::Path, tenant: &str, id: &str, change: fn(&mut Document)) {
    let store = open_test_store(data);
    let key = format!("doc/{tenant}/{id}");
    store
        .transact_blocking(move |tx| {
            let mut doc: Document = tx.get(&key)?.expect("the document record");
            change(&mut doc);
            tx.put(&key, &doc)
        })
        .unwrap();
}

#[tokio::test]
async fn a_document_record_rewritten_in_the_store_no_longer_verifies() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-w").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &org, "one", &[("amount", "50")]).await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let mut aud = audit(&srv, org.token("audit"));
    let key = log_key(&mut aud).await;
    let root = cert_der("root-ca");
    let verify = |raw: &[u8]| {
        paraph::client::evidence::verify_bytes(raw, &key, vec![root.clone()], Default::default())
    };
    let export = |mut aud: Audit, id: String| async move {
        aud.export_evidence(proto::ExportEvidenceRequest { document_id: id })
            .await
            .unwrap()
            .into_inner()
            .bundle
    };
    let raw = export(aud, d.id.clone()).await;
    let genuine = verify(&raw).unwrap();
    assert!(genuine.unverified.is_empty(), "{:?}", genuine.unverified);
    let (dir, operator) = srv.stop().await;

    // The amount, with the summary still derived from the record: the export no longer
    // verifies, and says what does not hold.
    let data = dir.path().join("data");
    rewrite_record(&data, "ville-w", &d.id, |doc| {
        doc.metadata.insert("amount".into(), "50000".into());
    });
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let raw = export(audit(&srv, org.token("audit")), d.id.clone()).await;
    let bundle = paraph::audit::bundle::EvidenceBundle::from_json(&raw).unwrap();
    assert_eq!(bundle.document.metadata["amount"], "50000");
    let e = verify(&raw).unwrap_err();
    assert_eq!(
        e,
        paraph::audit::bundle::BundleError::DescriptionMismatch,
        "{e}"
    );
    let (dir, operator) = srv.stop().await;

    // The amount put back, the actor of the visa changed: named too.
    let data = dir.path().join("data");
    rewrite_record(&data, "ville-w", &d.id, |doc| {
        doc.metadata.insert("amount".into(), "50".into());
        doc.steps[0].actions[0].actor = paraph::domain::UserName::parse("mallory").unwrap();
    });
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let raw = export(audit(&srv, org.token("audit")), d.id.clone()).await;
    let e = verify(&raw).unwrap_err().to_string();
    assert!(
        e.contains("step 0, action #0: its actor is mallory, the event's (seq 2) alice"),
        "{e}"
    );
    // The command line says so too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.json"), &raw).unwrap();
    std::fs::write(dir.path().join("k.pem"), key.to_pem().unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(["verify-bundle", "b.json", "--log-key", "k.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its actor is mallory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;
}
