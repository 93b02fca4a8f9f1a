//! Absences and delegation over real gRPC, with the clock set by the test (no sleeping): steps
//! reach a present officer, chains and cycles, certificate levels, scopes, returns, deadlines,
//! races between the absent officer and his delegate, and reassignment.

mod common;
use common::*;
use paraph::domain::Timestamp;
use paraph::proto::{self, DocumentState as S, StepKind as K, StepMode as M};
use tonic::Code;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// `who` declares `user`'s absence `[from, to)` with `delegate`.
async fn absent(
    srv: &TestServer,
    org: &Org,
    who: &str,
    user: &str,
    from: i64,
    to: i64,
    delegate: &str,
) -> Result<proto::Absence, tonic::Status> {
    dele(srv, org.token(who))
        .declare_absence(proto::DeclareAbsenceRequest {
            user: user.into(),
            from: at(from),
            to: at(to),
            delegate: delegate.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn circuit_with_fallback(
    srv: &TestServer,
    org: &Org,
    name: &str,
    fallback: &str,
    steps: Vec<proto::StepDefinition>,
) {
    srv.circuits(org.token("boss"), None)
        .create_circuit(proto::CreateCircuitRequest {
            name: name.into(),
            fallback: fallback.into(),
            steps,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
}

fn events<'a>(d: &'a proto::Document, kind: &str) -> Vec<&'a proto::HistoryEntry> {
    d.history.iter().filter(|h| h.kind == kind).collect()
}

async fn start(tenant: &str) -> (TestServer, Org) {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, tenant).await;
    (srv, org)
}

#[tokio::test]
async fn a_to_b_while_absent_then_the_step_returns() {
    let (srv, org) = start("ville-d1").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let before = submit(&srv, &org, "one", &[]).await;
    let a = absent(&srv, &org, "alice", "", T0.0 + HOUR, T0.0 + DAY, "bob")
        .await
        .unwrap();
    assert_eq!(a.user, "alice");
    assert!(!a.active);
    // Not yet started: nothing moves.
    assert!(inbox(&srv, &org, "bob").await.is_empty());

    // The absence starts: the pending step goes to bob, marked for alice.
    srv.at(Timestamp(T0.0 + HOUR)).await;
    let items = inbox_items(&srv, &org, "bob").await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0].id.as_str(),
            items[0].on_behalf_of.as_str(),
            items[0].route.as_str()
        ),
        (before.id.as_str(), "alice", "delegation")
    );
    // The absent officer keeps it too: he may still act himself.
    assert_eq!(inbox(&srv, &org, "alice").await, vec![before.id.clone()]);
    // A new document is routed to bob at once.
    let during = submit(&srv, &org, "one", &[]).await;
    let d = get(&srv, &org, "bob", &during.id).await.unwrap();
    assert_eq!(d.steps[0].routes.len(), 1);
    assert_eq!(d.steps[0].routes[0].to, vec!["bob".to_string()]);
    assert_eq!(d.steps[0].routes[0].absence_id, a.id);

    // Bob approves `during` for alice: recorded as his act on her behalf, with the absence.
    let done = approve(&srv, &org, "bob", &during.id, Some(0))
        .await
        .unwrap();
    assert_eq!(state(&done), S::Completed);
    let act = &done.steps[0].actions[0];
    assert_eq!(
        (
            act.actor.as_str(),
            act.on_behalf_of.as_str(),
            act.absence_id.as_str()
        ),
        ("bob", "alice", a.id.as_str())
    );
    let approved = events(&done, "approved");
    assert_eq!(approved[0].actor, "bob");
    assert_eq!(approved[0].on_behalf_of, "alice");
    assert!(approved[0].detail.contains(&a.id), "{}", approved[0].detail);
    // Carol has nothing to do with it.
    assert_eq!(
        approve(&srv, &org, "carol", &before.id, Some(0))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // The absence ends: the step returns to alice and leaves bob's inbox.
    srv.at(Timestamp(T0.0 + DAY)).await;
    assert!(inbox(&srv, &org, "bob").await.is_empty());
    let d = get(&srv, &org, "alice", &before.id).await.unwrap();
    assert!(d.steps[0].routes.is_empty());
    assert_eq!(events(&d, "delegated").len(), 1);
    assert_eq!(events(&d, "returned").len(), 1);
    assert_eq!(
        approve(&srv, &org, "bob", &before.id, Some(0))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    approve(&srv, &org, "alice", &before.id, Some(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn chains_are_transitive_and_cycles_escalate_to_the_fallback_with_an_alert() {
    let (srv, org) = start("ville-d2").await;
    circuit_with_fallback(&srv, &org, "one", "dave", vec![visa(&["alice"])]).await;
    // A -> B -> C with B absent too.
    absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "bob")
        .await
        .unwrap();
    let b = absent(&srv, &org, "bob", "", T0.0, T0.0 + 2 * HOUR, "carol")
        .await
        .unwrap();
    let d = submit(&srv, &org, "one", &[]).await;
    assert_eq!(d.steps[0].routes[0].to, vec!["carol".to_string()]);
    assert_eq!(d.steps[0].routes[0].chain, vec!["bob", "carol"]);
    assert_eq!(inbox(&srv, &org, "carol").await, vec![d.id.clone()]);
    assert!(inbox(&srv, &org, "bob").await.is_empty());
    // Bob comes back early: the chain now stops at him.
    dele(&srv, org.token("bob"))
        .cancel_absence(proto::CancelAbsenceRequest {
            id: b.id.clone(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    assert!(inbox(&srv, &org, "carol").await.is_empty());
    assert_eq!(inbox(&srv, &org, "bob").await, vec![d.id.clone()]);

    // A -> B -> A: a cycle. Nobody present can act: the fallback is alerted and gets the step.
    absent(&srv, &org, "bob", "", T0.0, T0.0 + DAY, "alice")
        .await
        .unwrap();
    let doc = get(&srv, &org, "boss", &d.id).await.unwrap();
    let route = &doc.steps[0].routes[0];
    assert_eq!(
        (route.kind.as_str(), route.to.clone()),
        ("escalation", vec!["dave".to_string()])
    );
    assert!(route.reason.contains("cycle"), "{}", route.reason);
    let alert = events(&doc, "escalated");
    assert_eq!(alert.len(), 1);
    assert!(alert[0].detail.contains("alert"), "{}", alert[0].detail);
    let items = inbox_items(&srv, &org, "dave").await;
    assert_eq!(
        (items[0].on_behalf_of.as_str(), items[0].route.as_str()),
        ("alice", "escalation")
    );
    let done = approve(&srv, &org, "dave", &d.id, Some(0)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
    assert_eq!(done.steps[0].actions[0].route, "escalation");
    assert_eq!(done.steps[0].actions[0].on_behalf_of, "alice");
}

#[tokio::test]
async fn without_a_fallback_the_admins_are_alerted_through_watch_events() {
    let (srv, org) = start("ville-d3").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &org, "one", &[]).await;
    let mut boss = srv
        .docs(org.token("boss"), None)
        .watch_events(proto::WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bob = srv
        .docs(org.token("bob"), None)
        .watch_events(proto::WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    // Alice -> bob from T0+1h, and bob -> alice from T0+1h: a cycle once both start.
    absent(&srv, &org, "alice", "", T0.0 + HOUR, T0.0 + DAY, "bob")
        .await
        .unwrap();
    absent(&srv, &org, "bob", "", T0.0 + 2 * HOUR, T0.0 + DAY, "alice")
        .await
        .unwrap();
    // Only the clock moves: the server's scheduler reacts by itself and pushes the events.
    srv.clock.set(Timestamp(T0.0 + HOUR));
    let e = next_event(&mut bob).await;
    assert_eq!(
        (
            e.kind.as_str(),
            e.document_id.as_str(),
            e.on_behalf_of.as_str()
        ),
        ("delegated", d.id.as_str(), "alice")
    );
    srv.clock.set(Timestamp(T0.0 + 2 * HOUR));
    let e = loop {
        let e = next_event(&mut boss).await;
        if e.kind == "escalated" {
            break e;
        }
    };
    assert_eq!(e.document_id, d.id);
    assert!(e.detail.contains("boss"), "{}", e.detail);
    let items = inbox_items(&srv, &org, "boss").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].route, "escalation");
}

#[tokio::test]
async fn a_delegate_without_the_certificate_level_is_skipped_and_signatures_record_for_whom() {
    let (srv, org) = start("ville-d4").await;
    trust_and_bind_officers(&srv, &org).await;
    circuit_with_fallback(&srv, &org, "sig", "dave", vec![sign_step(&["alice"], 2)]).await;
    // Carol's certificate is level 1 only: she is skipped, the fallback dave gets the step.
    let a = absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "carol")
        .await
        .unwrap();
    let d = submit(&srv, &org, "sig", &[]).await;
    let route = &d.steps[0].routes[0];
    assert_eq!(route.kind, "escalation");
    assert_eq!(route.to, vec!["dave".to_string()]);
    assert!(route.reason.contains("carol"), "{}", route.reason);
    assert!(inbox(&srv, &org, "carol").await.is_empty());
    assert_eq!(
        prepare(
            &srv,
            &org,
            "carol",
            &d.id,
            "officer-l1-rsa2048",
            &["signing-ca"]
        )
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let done = sign(&srv, &org, "dave", &d.id, "officer-l2-rsa3072")
        .await
        .unwrap();
    assert_eq!(done.signature.as_ref().unwrap().signer, "dave");
    assert_eq!(done.signature.as_ref().unwrap().on_behalf_of, "alice");
    assert_eq!(done.signature.as_ref().unwrap().route, "escalation");
    assert_eq!(done.signature.as_ref().unwrap().absence_id, a.id);

    // With a level-3 delegate, the delegation holds and the CMS is the delegate's own.
    dele(&srv, org.token("alice"))
        .cancel_absence(proto::CancelAbsenceRequest {
            id: a.id,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let a2 = absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "bob")
        .await
        .unwrap();
    let d2 = submit(&srv, &org, "sig", &[]).await;
    assert_eq!(d2.steps[0].routes[0].kind, "delegation");
    let done = sign(&srv, &org, "bob", &d2.id, "officer-l3-p384")
        .await
        .unwrap();
    let s = done.signature.unwrap();
    assert_eq!(
        (
            s.signer.as_str(),
            s.on_behalf_of.as_str(),
            s.absence_id.as_str()
        ),
        ("bob", "alice", a2.id.as_str())
    );
    assert!(s.subject.contains("p384") || s.level == 3, "{}", s.subject);
    let stored = sigs(&srv, org.token("audit"))
        .get_signatures(proto::GetSignaturesRequest {
            document_id: d2.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.signatures[0].on_behalf_of, "alice");
    assert_eq!(stored.signatures[0].certificate_sha256, {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(cert_der("officer-l3-p384")))
    });
}

#[tokio::test]
async fn scoped_absences_cover_only_their_documents() {
    let (srv, org) = start("ville-d5").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    dele(&srv, org.token("alice"))
        .declare_absence(proto::DeclareAbsenceRequest {
            from: at(T0.0),
            to: at(T0.0 + DAY),
            delegate: "bob".into(),
            types: vec![proto::DocumentType::Mandate as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let mandate = submit(&srv, &org, "one", &[]).await;
    let mut h = header("one", "Contrat", &[]);
    h.r#type = proto::DocumentType::Contract as i32;
    let contract = submit_raw(
        &mut srv.docs(org.token("finance"), None),
        h,
        b"contract",
        64,
    )
    .await
    .unwrap();
    assert_eq!(inbox(&srv, &org, "bob").await, vec![mandate.id.clone()]);
    assert!(contract.steps[0].routes.is_empty());
    assert_eq!(
        approve(&srv, &org, "bob", &contract.id, Some(0))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // A second absence for contracts over the same days does not overlap the mandate one.
    dele(&srv, org.token("alice"))
        .declare_absence(proto::DeclareAbsenceRequest {
            from: at(T0.0),
            to: at(T0.0 + DAY),
            delegate: "carol".into(),
            types: vec![proto::DocumentType::Contract as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(inbox(&srv, &org, "carol").await, vec![contract.id.clone()]);
    assert_eq!(inbox(&srv, &org, "bob").await, vec![mandate.id.clone()]);
}

#[tokio::test]
async fn declarations_are_checked_and_only_admins_declare_for_others() {
    let (srv, org) = start("ville-d6").await;
    let other = Org::create(&srv, "ville-d6b").await;
    let code = |r: Result<proto::Absence, tonic::Status>| r.unwrap_err();
    let e = code(absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "alice").await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("delegate"), "{}", e.message());
    let e = code(absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "nobody").await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("unknown user 'nobody'"),
        "{}",
        e.message()
    );
    // A user of another tenant is unknown here.
    let e = code(absent(&srv, &other, "boss", "zed", T0.0, T0.0 + DAY, "bob").await);
    assert_eq!(e.code(), Code::NotFound);
    let e = code(absent(&srv, &org, "alice", "", T0.0 + DAY, T0.0 + DAY, "bob").await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("after"), "{}", e.message());
    let e = code(absent(&srv, &org, "alice", "", T0.0 + DAY, T0.0, "bob").await);
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = code(absent(&srv, &org, "alice", "bob", T0.0, T0.0 + DAY, "carol").await);
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = code(
        dele(&srv, org.token("alice"))
            .declare_absence(proto::DeclareAbsenceRequest {
                from: at(T0.0),
                delegate: "bob".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner()),
    );
    assert!(e.message().contains("to"), "{}", e.message());
    let first = absent(&srv, &org, "boss", "alice", T0.0, T0.0 + DAY, "bob")
        .await
        .unwrap();
    assert_eq!(first.declared_by, "boss");
    let e = code(
        absent(
            &srv,
            &org,
            "alice",
            "",
            T0.0 + HOUR,
            T0.0 + 2 * DAY,
            "carol",
        )
        .await,
    );
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&first.id), "{}", e.message());
    // Listing: alice and bob see it, carol does not, the auditor does.
    let list = |who: &str| {
        let mut c = dele(&srv, org.token(who));
        async move {
            c.list_absences(proto::ListAbsencesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .absences
                .len()
        }
    };
    assert_eq!(list("alice").await, 1);
    assert_eq!(list("bob").await, 1);
    assert_eq!(list("carol").await, 0);
    assert_eq!(list("audit").await, 1);
    // Carol may not cancel it; another tenant does not even see it.
    let cancel = |who: &str, org: &Org| {
        let mut c = dele(&srv, org.token(who));
        let id = first.id.clone();
        async move {
            c.cancel_absence(proto::CancelAbsenceRequest {
                id,
                idempotency_key: String::new(),
            })
            .await
        }
    };
    assert_eq!(
        cancel("carol", &org).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        cancel("boss", &other).await.unwrap_err().code(),
        Code::NotFound
    );
    let e = dele(&srv, org.token("alice"))
        .cancel_absence(proto::CancelAbsenceRequest {
            id: "xyz".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("absence id"), "{}", e.message());
    assert!(cancel("alice", &org)
        .await
        .unwrap()
        .into_inner()
        .cancelled_at
        .is_some());
    assert_eq!(
        cancel("alice", &org).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn the_absent_officer_back_early_and_his_delegate_race_exactly_one_wins() {
    let (srv, org) = start("ville-d7").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"]), visa(&["carol"])]).await;
    let first = absent(&srv, &org, "alice", "", T0.0, T0.0 + DAY, "bob")
        .await
        .unwrap();
    for round in 0..20 {
        let d = submit(&srv, &org, "one", &[]).await;
        let a = approve(&srv, &org, "alice", &d.id, Some(0));
        let b = approve(&srv, &org, "bob", &d.id, Some(0));
        let (a, b) = tokio::join!(a, b);
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(loser.unwrap_err().code(), Code::FailedPrecondition);
        let doc = get(&srv, &org, "audit", &d.id).await.unwrap();
        assert_eq!(doc.steps[0].actions.len(), 1);
        assert_eq!(doc.current_step, 1, "advanced exactly once");
    }
    // Cancelling the absence while the delegate acts: either his act lands, or he is refused.
    dele(&srv, org.token("alice"))
        .cancel_absence(proto::CancelAbsenceRequest {
            id: first.id,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let mut outcomes = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let a = absent(&srv, &org, "boss", "alice", T0.0, T0.0 + DAY, "bob")
            .await
            .unwrap();
        let d = submit(&srv, &org, "one", &[]).await;
        let mut c = dele(&srv, org.token("alice"));
        let cancel = c.cancel_absence(proto::CancelAbsenceRequest {
            id: a.id.clone(),
            idempotency_key: String::new(),
        });
        let (cancelled, acted) = tokio::join!(cancel, approve(&srv, &org, "bob", &d.id, Some(0)));
        cancelled.unwrap();
        let doc = get(&srv, &org, "audit", &d.id).await.unwrap();
        match acted {
            Ok(_) => {
                assert_eq!(doc.steps[0].actions[0].actor, "bob");
                outcomes.insert("delegate acted");
            }
            Err(e) => {
                assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
                assert!(doc.steps[0].actions.is_empty());
                assert_eq!(inbox_items(&srv, &org, "bob").await.len(), 0);
                outcomes.insert("returned first");
            }
        }
    }
    assert!(
        !outcomes.is_empty(),
        "every round ends one way or the other"
    );
}

#[tokio::test]
async fn deadlines_mark_steps_overdue_and_escalate_as_the_circuit_says() {
    let (srv, org) = start("ville-d8").await;
    let mut notify = visa(&["alice"]);
    notify.deadline_seconds = HOUR as u64;
    let mut escalate = visa(&["bob"]);
    escalate.deadline_seconds = 2 * HOUR as u64;
    escalate.escalate = "fallback".into();
    escalate.fallback = "dave".into();
    create_circuit(&srv, &org, "notify", vec![notify]).await;
    create_circuit(&srv, &org, "esc", vec![escalate]).await;
    let n = submit(&srv, &org, "notify", &[]).await;
    let e = submit(&srv, &org, "esc", &[]).await;
    srv.at(Timestamp(T0.0 + HOUR - 1)).await;
    let d = get(&srv, &org, "alice", &n.id).await.unwrap();
    assert!(!d.steps[0].overdue, "not before its deadline");
    srv.at(Timestamp(T0.0 + HOUR)).await;
    let d = get(&srv, &org, "alice", &n.id).await.unwrap();
    assert!(d.steps[0].overdue);
    assert_eq!(events(&d, "overdue").len(), 1);
    assert!(d.steps[0].routes.is_empty(), "notify only");
    // Idempotent: another pass at the same instant changes nothing.
    assert_eq!(srv.at(Timestamp(T0.0 + HOUR)).await.overdue, 0);
    let again = get(&srv, &org, "alice", &n.id).await.unwrap();
    assert_eq!(again.history.len(), d.history.len());
    assert!(inbox(&srv, &org, "dave").await.is_empty());
    srv.at(Timestamp(T0.0 + 3 * HOUR)).await;
    let d = get(&srv, &org, "bob", &e.id).await.unwrap();
    assert!(d.steps[0].overdue);
    assert_eq!(d.steps[0].routes[0].kind, "overdue");
    assert_eq!(events(&d, "escalated").len(), 1);
    assert_eq!(inbox(&srv, &org, "dave").await, vec![e.id.clone()]);
    let done = approve(&srv, &org, "dave", &e.id, Some(0)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
    assert_eq!(done.steps[0].actions[0].on_behalf_of, "bob");
    assert_eq!(done.steps[0].actions[0].route, "overdue");
    // The circuit file key is read back.
    let c = srv
        .circuits(org.token("boss"), None)
        .get_circuit(proto::GetCircuitRequest {
            name: "esc".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.steps[0].escalate, "fallback");
    let mut bad = visa(&["bob"]);
    bad.escalate = "panic".into();
    let err = srv
        .circuits(org.token("boss"), None)
        .create_circuit(proto::CreateCircuitRequest {
            name: "bad".into(),
            steps: vec![bad],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("steps[0].escalate"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn reassignment_by_an_admin_is_recorded_and_refused_to_others() {
    let (srv, org) = start("ville-d9").await;
    create_circuit(
        &srv,
        &org,
        "two",
        vec![
            visa(&["alice"]),
            step(K::Visa, &["bob", "carol"], M::All, 0),
        ],
    )
    .await;
    let d = submit(&srv, &org, "two", &[]).await;
    let req = |step: u32, from: &str, to: &str, reason: &str| proto::ReassignRequest {
        document_id: d.id.clone(),
        step,
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
        idempotency_key: String::new(),
    };
    let e = dele(&srv, org.token("bob"))
        .reassign(req(0, "alice", "dave", "away"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = dele(&srv, org.token("boss"))
        .reassign(req(0, "alice", "dave", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = dele(&srv, org.token("boss"))
        .reassign(req(0, "alice", "finance", "a submitter"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = dele(&srv, org.token("boss"))
        .reassign(req(1, "bob", "carol", "twice"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = dele(&srv, org.token("boss"))
        .reassign(req(0, "alice", "nobody", "unknown"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("unknown user 'nobody'"),
        "{}",
        e.message()
    );
    let moved = dele(&srv, org.token("boss"))
        .reassign(req(0, "alice", "dave", "alice is on long leave"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.steps[0].actors, vec!["dave"]);
    let h = events(&moved, "reassigned");
    assert_eq!(h[0].actor, "boss");
    assert!(h[0].detail.contains("long leave"), "{}", h[0].detail);
    assert!(inbox(&srv, &org, "alice").await.is_empty());
    assert_eq!(inbox(&srv, &org, "dave").await, vec![d.id.clone()]);
    // A pending step can be reassigned ahead of time too.
    dele(&srv, org.token("boss"))
        .reassign(req(1, "carol", "erin", "carol moves"))
        .await
        .unwrap();
    approve(&srv, &org, "dave", &d.id, Some(0)).await.unwrap();
    approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    let done = approve(&srv, &org, "erin", &d.id, Some(1)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
}
