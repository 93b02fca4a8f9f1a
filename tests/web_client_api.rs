//! The calls the web client's submitter and administrator pages stand on, over a real server:
//! a submitter's own documents (ListSubmitted: newest first, paged, with progress, filtered by
//! state, nobody else's, the index rebuilt for documents stored before it existed), a
//! submission in one message (SubmitDocumentInline: the streamed call's size limit, error and
//! idempotency), and a circuit rendered as its TOML file (GetCircuit, ListCircuits).

mod common;

use common::*;
use paraph::domain::Timestamp;
use paraph::proto::{self, DocumentState as S};
use tonic::Code;

async fn list(
    docs: &mut Docs,
    page_size: u32,
    page_token: &str,
    state: S,
) -> Result<proto::ListSubmittedResponse, tonic::Status> {
    docs.list_submitted(proto::ListSubmittedRequest {
        page_size,
        page_token: page_token.into(),
        state: state as i32,
    })
    .await
    .map(|r| r.into_inner())
}

fn ids(r: &proto::ListSubmittedResponse) -> Vec<String> {
    r.documents.iter().map(|d| d.id.clone()).collect()
}

async fn inline(
    docs: &mut Docs,
    header: proto::SubmitHeader,
    content: &[u8],
) -> Result<proto::Document, tonic::Status> {
    docs.submit_document_inline(proto::SubmitDocumentInlineRequest {
        header: Some(header),
        content: content.to_vec(),
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_submitter_lists_his_own_documents_newest_first_with_their_progress() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-l").await;
    create_circuit(&srv, &org, "two", vec![visa(&["carol"]), visa(&["alice"])]).await;
    let mut submitted = Vec::new();
    for i in 0..5 {
        srv.at(Timestamp(T0.0 + i * 60)).await;
        submitted.push(submit(&srv, &org, "two", &[]).await.id);
    }
    let mut finance = srv.docs(org.token("finance"), None);
    // Newest first, two by two.
    let p1 = list(&mut finance, 2, "", S::Unspecified).await.unwrap();
    assert_eq!(ids(&p1), [submitted[4].clone(), submitted[3].clone()]);
    assert!(!p1.next_page_token.is_empty());
    let p2 = list(&mut finance, 2, &p1.next_page_token, S::Unspecified)
        .await
        .unwrap();
    assert_eq!(ids(&p2), [submitted[2].clone(), submitted[1].clone()]);
    let p3 = list(&mut finance, 2, &p2.next_page_token, S::Unspecified)
        .await
        .unwrap();
    assert_eq!(ids(&p3), [submitted[0].clone()]);
    assert!(p3.next_page_token.is_empty());
    let all = list(&mut finance, 0, "", S::Unspecified).await.unwrap();
    assert_eq!(all.documents.len(), 5);
    assert!(all.next_page_token.is_empty());
    // Progress: the first step waits for carol.
    let first = &all.documents[4];
    assert_eq!(first.id, submitted[0]);
    assert_eq!(first.state, S::InProgress as i32);
    assert_eq!(first.current_step, 0);
    assert_eq!(first.current_step_kind, proto::StepKind::Visa as i32);
    assert_eq!(first.waiting_for, ["carol"]);
    assert_eq!((first.steps_finished, first.steps_total), (0, 2));
    assert_eq!(first.circuit, "two");
    assert_eq!(first.title, "Mandat 2026-001");
    assert_eq!(first.created_at, at(T0.0));
    // After carol's visa, alice's step; after alice's, done.
    approve(&srv, &org, "carol", &submitted[0], None)
        .await
        .unwrap();
    let now = list(&mut finance, 0, "", S::Unspecified).await.unwrap();
    let first = &now.documents[4];
    assert_eq!((first.current_step, first.steps_finished), (1, 1));
    assert_eq!(first.waiting_for, ["alice"]);
    approve(&srv, &org, "alice", &submitted[0], None)
        .await
        .unwrap();
    // The submitter withdraws another one; each state filter finds its own.
    finance
        .withdraw(proto::WithdrawRequest {
            id: submitted[3].clone(),
            reason: "erreur".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let now = list(&mut finance, 0, "", S::Unspecified).await.unwrap();
    let by_id = |id: &str| now.documents.iter().find(|d| d.id == id).unwrap().clone();
    let done = by_id(&submitted[0]);
    assert_eq!(done.state, S::Completed as i32);
    assert_eq!((done.current_step, done.steps_finished), (-1, 2));
    assert!(done.waiting_for.is_empty());
    assert_eq!(done.current_step_kind, proto::StepKind::Unspecified as i32);
    assert_eq!(by_id(&submitted[3]).state, S::Withdrawn as i32);
    let withdrawn = list(&mut finance, 0, "", S::Withdrawn).await.unwrap();
    assert_eq!(ids(&withdrawn), [submitted[3].clone()]);
    let completed = list(&mut finance, 0, "", S::Completed).await.unwrap();
    assert_eq!(ids(&completed), [submitted[0].clone()]);
    let open = list(&mut finance, 0, "", S::InProgress).await.unwrap();
    assert_eq!(
        ids(&open),
        [
            submitted[4].clone(),
            submitted[2].clone(),
            submitted[1].clone()
        ]
    );
    // A filtered page of one goes on with its token.
    let f1 = list(&mut finance, 1, "", S::InProgress).await.unwrap();
    assert_eq!(ids(&f1), [submitted[4].clone()]);
    let f2 = list(&mut finance, 1, &f1.next_page_token, S::InProgress)
        .await
        .unwrap();
    assert_eq!(ids(&f2), [submitted[2].clone()]);
    // Bad requests are named.
    let e = list(&mut finance, 501, "", S::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_size"), "{e:?}");
    let e = list(&mut finance, 10, "not-a-token", S::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{e:?}");
    let e = finance
        .list_submitted(proto::ListSubmittedRequest {
            state: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("state"), "{e:?}");
}

#[tokio::test]
async fn nobody_sees_another_users_or_another_tenants_submissions() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-m").await;
    let other = Org::create(&srv, "ville-n").await;
    create_circuit(&srv, &org, "one", vec![visa(&["carol"])]).await;
    create_circuit(&srv, &other, "one", vec![visa(&["carol"])]).await;
    let mine = submit(&srv, &org, "one", &[]).await;
    // erin is a submitter too, in the same tenant: she sees none of finance's documents.
    let mut erin = srv.docs(org.token("erin"), None);
    let r = list(&mut erin, 0, "", S::Unspecified).await.unwrap();
    assert!(r.documents.is_empty(), "{r:?}");
    let theirs = list(
        &mut srv.docs(org.token("finance"), None),
        1,
        "",
        S::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(ids(&theirs), [mine.id]);
    // The same user name in another tenant sees his own only.
    let elsewhere = submit(&srv, &other, "one", &[]).await;
    let r = list(
        &mut srv.docs(other.token("finance"), None),
        0,
        "",
        S::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(ids(&r), [elsewhere.id]);
    // Officers, auditors and admins have no submissions list.
    for who in ["carol", "audit", "boss"] {
        let e = list(&mut srv.docs(org.token(who), None), 0, "", S::Unspecified)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
    }
}

#[tokio::test]
async fn documents_stored_before_the_index_existed_are_listed_after_a_restart() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-o").await;
    create_circuit(&srv, &org, "one", vec![visa(&["carol"])]).await;
    let mut submitted = Vec::new();
    for i in 0..3 {
        srv.at(Timestamp(T0.0 + i * 1000)).await;
        submitted.push(submit(&srv, &org, "one", &[]).await.id);
    }
    let (dir, operator) = srv.stop().await;
    // What an older version left: the documents without their `submitted/` keys.
    {
        let store = common::open_test_store(&dir.path().join("data"));
        let keys = store.scan_keys("submitted/", None, usize::MAX).unwrap();
        assert_eq!(keys.len(), 3, "{keys:?}");
        store
            .transact_blocking(move |tx| {
                for k in &keys {
                    tx.remove(&format!("submitted/{k}"))?;
                }
                tx.remove("meta/submitted-index")
            })
            .unwrap();
        assert!(store
            .scan_keys("submitted/", None, usize::MAX)
            .unwrap()
            .is_empty());
    }
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let r = list(
        &mut srv.docs(org.token("finance"), None),
        0,
        "",
        S::Unspecified,
    )
    .await
    .unwrap();
    submitted.reverse();
    assert_eq!(ids(&r), submitted);
    // New documents are indexed as before, newest first.
    srv.at(Timestamp(T0.0 + 10_000)).await;
    let new = submit(&srv, &org, "one", &[]).await;
    let r = list(
        &mut srv.docs(org.token("finance"), None),
        1,
        "",
        S::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(ids(&r), [new.id]);
}

#[tokio::test]
async fn a_submission_in_one_message_takes_the_streamed_path() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_document_bytes = 1000
    })
    .await;
    let org = Org::create(&srv, "ville-p").await;
    create_circuit(&srv, &org, "one", vec![visa(&["carol"])]).await;
    let mut finance = srv.docs(org.token("finance"), None);
    let content = b"%PDF-1.7 inline test content".to_vec();
    let mut h = header(
        "one",
        "Mandat inline",
        &[("amount", "12.50"), ("beneficiary", "ACME")],
    );
    h.idempotency_key = "0190f0e3a1b2c3d4e5f6a7b8c9d0e1f2".into();
    let d = inline(&mut finance, h.clone(), &content).await.unwrap();
    assert_eq!(d.title, "Mandat inline");
    assert_eq!(d.metadata["amount"], "12.50");
    assert_eq!(d.content_size, content.len() as u64);
    assert_eq!(d.file_name, "mandat.pdf");
    assert_eq!(d.current_step, 0);
    assert_eq!(srv.content(org.token("carol"), &d.id).await, content);
    // The same key and request: the same document, by either call.
    let again = inline(&mut finance, h.clone(), &content).await.unwrap();
    assert_eq!(again.id, d.id);
    let streamed = submit_raw(&mut finance, h.clone(), &content, 7)
        .await
        .unwrap();
    assert_eq!(streamed.id, d.id);
    // The same key with other content is another request: refused.
    let e = inline(&mut finance, h.clone(), b"%PDF-1.7 other")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let listed = list(&mut finance, 0, "", S::Unspecified).await.unwrap();
    assert_eq!(ids(&listed), std::slice::from_ref(&d.id));
    // The limit and its words are the streamed upload's, whether the content is just over
    // it or far over (refused by the gate before the message is read whole).
    let expected = "document exceeds max_document_bytes (1000 bytes)";
    let h = header("one", "Trop gros", &[]);
    for size in [1001, 8000, 3 * 1024 * 1024] {
        let big = vec![b'x'; size];
        let e = inline(&mut finance, h.clone(), &big).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{size}: {e:?}");
        assert!(e.message().contains(expected), "{size}: {e:?}");
    }
    let e = submit_raw(&mut finance, h.clone(), &[b'x'; 1001], 100)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains(expected), "{e:?}");
    // The other calls of the service keep gRPC's usual 4 MiB per message.
    let e = finance
        .withdraw(proto::WithdrawRequest {
            id: d.id.clone(),
            reason: "x".repeat(5 * 1024 * 1024),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("limit of 4194304 bytes"), "{e:?}");
    // Exactly at the limit is accepted; the header is required; officers may not submit.
    let at_limit = inline(&mut finance, h.clone(), &[b'y'; 1000])
        .await
        .unwrap();
    assert_eq!(at_limit.content_size, 1000);
    let e = finance
        .submit_document_inline(proto::SubmitDocumentInlineRequest {
            header: None,
            content: content.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("header"), "{e:?}");
    let e = inline(&mut srv.docs(org.token("carol"), None), h.clone(), &content)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = inline(&mut finance, h, b"").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("content"), "{e:?}");
}

#[tokio::test]
async fn a_circuit_reads_as_its_toml_file() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-q").await;
    trust_and_bind_officers(&srv, &org).await;
    let mut quorum = step(
        proto::StepKind::Visa,
        &["bob", "carol", "dave"],
        proto::StepMode::Quorum,
        2,
    );
    quorum.deadline_seconds = 36 * 3600;
    quorum.escalate = "fallback".into();
    quorum.fallback = "alice".into();
    let mut sign = step(
        proto::StepKind::Signature,
        &["alice"],
        proto::StepMode::Any,
        0,
    );
    sign.level = 2;
    sign.condition = "amount >= 10000 and beneficiary != 'X'".into();
    let request = proto::CreateCircuitRequest {
        name: "depenses".into(),
        fallback: "bob".into(),
        steps: vec![quorum, sign],
        idempotency_key: String::new(),
    };
    let mut circuits = srv.circuits(org.token("boss"), None);
    let created = circuits
        .create_circuit(request.clone())
        .await
        .unwrap()
        .into_inner();
    let got = circuits
        .get_circuit(proto::GetCircuitRequest {
            name: "depenses".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.toml, created.toml);
    let text = &got.toml;
    assert!(text.starts_with("# circuit depenses version 1"), "{text}");
    assert!(text.contains("mode = \"quorum\"\nquorum = 2\n"), "{text}");
    assert!(text.contains("deadline = \"1d12h\""), "{text}");
    assert!(
        text.contains("condition = \"amount >= 10000 and beneficiary != 'X'\""),
        "{text}"
    );
    // It is a circuit file: read back, it is the request that made the circuit.
    let back = paraph::client::circuit_file::parse(text).unwrap();
    assert_eq!(back, request, "{text}");
    // ListCircuits carries it too (what the administrator's page shows).
    let listed = circuits
        .list_circuits(proto::ListCircuitsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.circuits.len(), 1);
    assert_eq!(listed.circuits[0].toml, got.toml);
}
