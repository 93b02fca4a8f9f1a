//! Circuits run to completion over real gRPC: sequential, ALL, ANY, QUORUM, conditional;
//! rejection, withdrawal, deadlines, versions pinned at submission.

mod common;
use common::*;
use paraph::proto::{self, DocumentState as S, StepKind as K, StepMode as M, StepStatus as St};
use tonic::Code;

#[tokio::test]
async fn sequential_three_step_circuit_completes_with_full_history() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-a").await;
    create_circuit(
        &srv,
        &org,
        "seq",
        vec![visa(&["alice"]), visa(&["bob"]), visa(&["carol"])],
    )
    .await;
    let d = submit(&srv, &org, "seq", &[("amount", "1200.50")]).await;
    assert_eq!(state(&d), S::InProgress);
    assert_eq!(d.current_step, 0);
    assert_eq!(d.circuit_version, 1);
    assert_eq!(inbox(&srv, &org, "alice").await, vec![d.id.clone()]);
    assert!(inbox(&srv, &org, "bob").await.is_empty());
    // Out of order: bob cannot act on step 0 (his step is not active yet), nor on step 1
    // before it is active.
    assert_code(
        approve(&srv, &org, "bob", &d.id, None).await,
        Code::FailedPrecondition,
        "your step (1, visa) is not active yet",
    );
    assert_code(
        approve(&srv, &org, "bob", &d.id, Some(1)).await,
        Code::FailedPrecondition,
        "not active",
    );
    let d1 = approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    assert_eq!(d1.current_step, 1);
    assert!(inbox(&srv, &org, "alice").await.is_empty());
    assert_eq!(inbox(&srv, &org, "bob").await, vec![d.id.clone()]);
    assert_code(
        approve(&srv, &org, "alice", &d.id, Some(0)).await,
        Code::FailedPrecondition,
        "not active",
    );
    approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    let done = approve(&srv, &org, "carol", &d.id, Some(2)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
    assert_eq!(done.current_step, -1);
    assert_eq!(
        history_kinds(&done),
        [
            "submitted",
            "step_activated",
            "approved",
            "step_completed",
            "step_activated",
            "approved",
            "step_completed",
            "step_activated",
            "approved",
            "step_completed",
            "completed"
        ]
    );
    assert!(done.history.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // Nothing leaves a terminal state.
    assert_code(
        approve(&srv, &org, "carol", &d.id, None).await,
        Code::FailedPrecondition,
        "completed",
    );
    srv.stop().await;
}

#[tokio::test]
async fn all_any_and_quorum_modes() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-b").await;
    create_circuit(
        &srv,
        &org,
        "modes",
        vec![
            step(K::Visa, &["alice", "bob"], M::All, 0),
            step(K::Visa, &["alice", "bob"], M::Any, 0),
            step(K::Visa, &["alice", "bob", "carol"], M::Quorum, 2),
        ],
    )
    .await;
    let d = submit(&srv, &org, "modes", &[]).await;
    // ALL: alice alone is not enough, and she cannot approve twice.
    let d1 = approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    assert_eq!(d1.current_step, 0);
    assert!(inbox(&srv, &org, "alice").await.is_empty());
    assert_eq!(inbox(&srv, &org, "bob").await, vec![d.id.clone()]);
    assert_code(
        approve(&srv, &org, "alice", &d.id, Some(0)).await,
        Code::FailedPrecondition,
        "already acted",
    );
    let d2 = approve(&srv, &org, "bob", &d.id, Some(0)).await.unwrap();
    assert_eq!(d2.current_step, 1);
    // ANY: bob's visa is enough; alice's inbox empties.
    assert_eq!(inbox(&srv, &org, "alice").await, vec![d.id.clone()]);
    let d3 = approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    assert_eq!(d3.current_step, 2);
    assert_eq!(step_status(&d3, 1), St::Done);
    // QUORUM 2 of 3.
    let d4 = approve(&srv, &org, "carol", &d.id, Some(2)).await.unwrap();
    assert_eq!(state(&d4), S::InProgress);
    let d5 = approve(&srv, &org, "alice", &d.id, Some(2)).await.unwrap();
    assert_eq!(state(&d5), S::Completed);
    assert!(
        inbox(&srv, &org, "bob").await.is_empty(),
        "bob's pending quorum vote is moot"
    );
    assert_code(
        approve(&srv, &org, "bob", &d.id, Some(2)).await,
        Code::FailedPrecondition,
        "completed",
    );
    srv.stop().await;
}

#[tokio::test]
async fn role_actors_resolve_to_the_officers_holding_the_role() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-r").await;
    create_circuit(
        &srv,
        &org,
        "roles",
        vec![step(K::Visa, &["role:officer"], M::Quorum, 5)],
    )
    .await;
    let d = submit(&srv, &org, "roles", &[]).await;
    let actors = &d.steps[0].actors;
    assert_eq!(actors, &["alice", "bob", "carol", "dave", "erin"]);
    for who in ["alice", "bob", "carol", "dave"] {
        approve(&srv, &org, who, &d.id, Some(0)).await.unwrap();
    }
    assert_eq!(
        state(&approve(&srv, &org, "erin", &d.id, Some(0)).await.unwrap()),
        S::Completed
    );
    // A quorum larger than the role's officers is refused at submission.
    create_circuit(
        &srv,
        &org,
        "roles6",
        vec![step(K::Visa, &["role:officer"], M::Quorum, 6)],
    )
    .await;
    let mut docs = srv.docs(org.token("finance"), None);
    assert_code(
        submit_raw(&mut docs, header("roles6", "t", &[]), b"x", 10).await,
        Code::FailedPrecondition,
        "quorum of 6",
    );
    srv.stop().await;
}

#[tokio::test]
async fn conditional_steps_are_skipped_and_recorded() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-c").await;
    let mut big = visa(&["bob"]);
    big.condition = "amount >= 10000 and beneficiary != 'X'".into();
    let mut small = visa(&["carol"]);
    small.condition = "amount < 10000 or beneficiary = 'X'".into();
    create_circuit(&srv, &org, "cond", vec![visa(&["alice"]), big, small]).await;

    let d = submit(
        &srv,
        &org,
        "cond",
        &[("amount", "1200.50"), ("beneficiary", "ACME")],
    )
    .await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let d = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert_eq!(step_status(&d, 1), St::Skipped);
    assert_eq!(d.current_step, 2);
    let skip = d.history.iter().find(|h| h.kind == "step_skipped").unwrap();
    assert_eq!(skip.step, 1);
    assert!(skip.detail.contains("amount >= 10000"), "{}", skip.detail);
    assert_eq!(
        state(&approve(&srv, &org, "carol", &d.id, Some(2)).await.unwrap()),
        S::Completed
    );

    let d = submit(
        &srv,
        &org,
        "cond",
        &[("amount", "10000"), ("beneficiary", "ACME")],
    )
    .await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let d = approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    assert_eq!(state(&d), S::Completed);
    assert_eq!(step_status(&d, 2), St::Skipped);

    // Metadata that cannot decide a condition is refused at submission (fail closed).
    let mut docs = srv.docs(org.token("finance"), None);
    assert_code(
        submit_raw(
            &mut docs,
            header("cond", "t", &[("amount", "12k"), ("beneficiary", "A")]),
            b"x",
            10,
        )
        .await,
        Code::InvalidArgument,
        "amount",
    );
    assert_code(
        submit_raw(
            &mut docs,
            header("cond", "t", &[("amount", "12")]),
            b"x",
            10,
        )
        .await,
        Code::InvalidArgument,
        "beneficiary",
    );
    srv.stop().await;
}

#[tokio::test]
async fn reject_ends_the_circuit_and_needs_a_reason() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-d").await;
    create_circuit(&srv, &org, "two", vec![visa(&["alice"]), visa(&["bob"])]).await;
    let d = submit(&srv, &org, "two", &[]).await;
    let mut alice = srv.docs(org.token("alice"), None);
    let reject = |reason: &str| proto::RejectRequest {
        id: d.id.clone(),
        step: Some(0),
        reason: reason.into(),
        idempotency_key: String::new(),
    };
    assert_code(
        alice.reject(reject("  ")).await,
        Code::InvalidArgument,
        "reason",
    );
    let r = alice
        .reject(reject("IBAN du bénéficiaire erroné"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&r), S::Rejected);
    assert_eq!(step_status(&r, 0), St::Rejected);
    assert_eq!(step_status(&r, 1), St::Cancelled);
    assert_eq!(r.steps[0].actions[0].reason, "IBAN du bénéficiaire erroné");
    assert!(inbox(&srv, &org, "alice").await.is_empty());
    assert_code(
        approve(&srv, &org, "bob", &d.id, None).await,
        Code::FailedPrecondition,
        "rejected",
    );
    let mut fin = srv.docs(org.token("finance"), None);
    assert_code(
        fin.withdraw(proto::WithdrawRequest {
            id: d.id.clone(),
            reason: String::new(),
            idempotency_key: String::new(),
        })
        .await,
        Code::FailedPrecondition,
        "rejected",
    );
    srv.stop().await;
}

#[tokio::test]
async fn withdraw_by_submitter_only_while_in_progress() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-e").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &org, "one", &[]).await;
    let w = |id: &str| proto::WithdrawRequest {
        id: id.into(),
        reason: "erreur de saisie".into(),
        idempotency_key: String::new(),
    };
    // erin is a submitter too, but not this document's.
    assert_code(
        srv.docs(org.token("erin"), None).withdraw(w(&d.id)).await,
        Code::PermissionDenied,
        "submitter",
    );
    assert_code(
        srv.docs(org.token("alice"), None).withdraw(w(&d.id)).await,
        Code::PermissionDenied,
        "submitter",
    );
    let r = srv
        .docs(org.token("finance"), None)
        .withdraw(w(&d.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&r), S::Withdrawn);
    assert_eq!(step_status(&r, 0), St::Cancelled);
    assert!(inbox(&srv, &org, "alice").await.is_empty());
    assert_code(
        approve(&srv, &org, "alice", &d.id, None).await,
        Code::FailedPrecondition,
        "withdrawn",
    );
    // A completed document cannot be withdrawn.
    let d2 = submit(&srv, &org, "one", &[]).await;
    approve(&srv, &org, "alice", &d2.id, None).await.unwrap();
    assert_code(
        srv.docs(org.token("finance"), None)
            .withdraw(w(&d2.id))
            .await,
        Code::FailedPrecondition,
        "completed",
    );
    srv.stop().await;
}

#[tokio::test]
async fn deadlines_are_stored_and_versions_are_pinned() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-f").await;
    let mut s = visa(&["alice"]);
    s.deadline_seconds = 48 * 3600;
    create_circuit(&srv, &org, "dl", vec![s, visa(&["bob"])]).await;
    let d = submit(&srv, &org, "dl", &[]).await;
    assert_eq!(d.steps[0].activated_at.unwrap().seconds, T0.0);
    assert_eq!(d.steps[0].due_at.unwrap().seconds, T0.0 + 48 * 3600);
    assert_eq!(d.steps[1].due_at, None);
    // Version 2 drops bob: the submitted document keeps version 1.
    let v2 = create_circuit(&srv, &org, "dl", vec![visa(&["carol"])]).await;
    assert_eq!(v2.version, 2);
    srv.clock.advance(3600);
    let d = approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    assert_eq!(d.circuit_version, 1);
    assert_eq!(d.steps[1].actors, ["bob"]);
    assert_eq!(d.steps[1].activated_at.unwrap().seconds, T0.0 + 3600);
    let new = submit(&srv, &org, "dl", &[]).await;
    assert_eq!(new.circuit_version, 2);
    assert_eq!(new.steps[0].actors, ["carol"]);
    let mut c = srv.circuits(org.token("alice"), None);
    let v1 = c
        .get_circuit(proto::GetCircuitRequest {
            name: "dl".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v1.steps.len(), 2);
    assert_eq!(v1.steps[0].deadline_seconds, 48 * 3600);
    let list = c
        .list_circuits(proto::ListCircuitsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.circuits.len(), 1);
    assert_eq!(list.circuits[0].version, 2);
    srv.stop().await;
}

#[tokio::test]
async fn content_round_trips_in_chunks_and_inbox_paginates() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-g").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut fin = srv.docs(org.token("finance"), None);
    let d = submit_raw(
        &mut fin,
        header("one", "Gros marché", &[]),
        &content,
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(d.content_size, content.len() as u64);
    let mut stream = srv
        .docs(org.token("alice"), None)
        .get_content(proto::GetContentRequest {
            id: d.id.clone(),
            revision: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        got.extend_from_slice(&c.data);
    }
    assert_eq!(got, content);
    let mut ids = vec![d.id.clone()];
    for i in 0..6 {
        srv.clock.advance(1);
        ids.push(submit(&srv, &org, "one", &[("n", &i.to_string())]).await.id);
    }
    let mut alice = srv.docs(org.token("alice"), None);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = alice
            .list_inbox(proto::ListInboxRequest {
                page_size: 4,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.items.len() <= 4);
        seen.extend(page.items.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "oldest first, each once");
    assert_code(
        alice
            .list_inbox(proto::ListInboxRequest {
                page_size: 4,
                page_token: "garbage".into(),
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    srv.stop().await;
}
