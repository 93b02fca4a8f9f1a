//! Roles, tenant isolation, tokens, idempotent retries, races and bad inputs.

mod common;
use common::*;
use paraph::proto::{self, StepKind as K, StepMode as M};
use tonic::Code;

fn user(name: &str, roles: &[proto::Role]) -> proto::CreateUserRequest {
    proto::CreateUserRequest {
        name: name.into(),
        display_name: String::new(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        idempotency_key: String::new(),
    }
}

#[tokio::test]
async fn permission_matrix_and_tenant_isolation() {
    let srv = TestServer::start().await;
    let a = Org::create(&srv, "ville-a").await;
    let b = Org::create(&srv, "ville-b").await;
    create_circuit(&srv, &a, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &a, "one", &[]).await;

    // Unauthenticated: no token, unknown token.
    let anon = paraph::proto::document_service_client::DocumentServiceClient::new(srv.channel())
        .get_document(proto::GetDocumentRequest { id: d.id.clone() })
        .await;
    assert_code(anon, Code::Unauthenticated, "authorization");
    assert_code(
        srv.docs("pph_0000", None)
            .get_document(proto::GetDocumentRequest { id: d.id.clone() })
            .await,
        Code::Unauthenticated,
        "token",
    );

    // Admin-only operations.
    for who in ["alice", "finance", "audit"] {
        assert_code(
            srv.admin(a.token(who), None)
                .create_user(user("x", &[proto::Role::Officer]))
                .await,
            Code::PermissionDenied,
            "admin",
        );
        assert_code(
            srv.circuits(a.token(who), None)
                .create_circuit(proto::CreateCircuitRequest {
                    name: "c".into(),
                    steps: vec![visa(&["alice"])],
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            "admin",
        );
    }
    // Only the operator creates tenants.
    assert_code(
        srv.admin(a.token("boss"), None)
            .create_tenant(proto::CreateTenantRequest {
                id: "ville-z".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "operator",
    );
    // Submitting needs the submitter role; acting needs the officer role and the step.
    let mut alice_docs = srv.docs(a.token("alice"), None);
    assert_code(
        submit_raw(&mut alice_docs, header("one", "t", &[]), b"x", 8).await,
        Code::PermissionDenied,
        "submitter",
    );
    assert_code(
        approve(&srv, &a, "finance", &d.id, None).await,
        Code::PermissionDenied,
        "officer",
    );
    assert_code(
        approve(&srv, &a, "audit", &d.id, None).await,
        Code::PermissionDenied,
        "officer",
    );
    assert_code(
        approve(&srv, &a, "bob", &d.id, None).await,
        Code::PermissionDenied,
        "not an actor",
    );
    // Readers: the concerned, admins and auditors; not an unconcerned officer.
    for who in ["alice", "finance", "audit", "boss"] {
        get(&srv, &a, who, &d.id).await.unwrap();
    }
    assert_code(
        get(&srv, &a, "bob", &d.id).await,
        Code::PermissionDenied,
        "not concerned",
    );
    // Auditors list users; officers do not.
    srv.admin(a.token("audit"), None)
        .list_users(proto::ListUsersRequest {})
        .await
        .unwrap();
    assert_code(
        srv.admin(a.token("bob"), None)
            .list_users(proto::ListUsersRequest {})
            .await,
        Code::PermissionDenied,
        "admin",
    );

    // Tenant isolation: B's people see nothing of A, indistinguishable from absence.
    let missing = "0".repeat(32);
    for who in ["boss", "audit", "alice"] {
        let other = get(&srv, &b, who, &d.id).await.unwrap_err();
        let absent = get(&srv, &b, who, &missing).await.unwrap_err();
        assert_eq!(other.code(), Code::NotFound);
        assert_eq!(absent.code(), Code::NotFound);
        assert_eq!(
            other.message().replace(&d.id, "ID"),
            absent.message().replace(&missing, "ID")
        );
    }
    assert_code(
        approve(&srv, &b, "alice", &d.id, None).await,
        Code::NotFound,
        "not found",
    );
    assert_code(
        srv.circuits(b.token("boss"), None)
            .get_circuit(proto::GetCircuitRequest {
                name: "one".into(),
                version: 0,
            })
            .await,
        Code::NotFound,
        "circuit",
    );
    let mut b_fin = srv.docs(b.token("finance"), None);
    assert_code(
        submit_raw(&mut b_fin, header("one", "t", &[]), b"x", 8).await,
        Code::NotFound,
        "circuit",
    );
    // B's admin cannot reach into A with the tenant header, nor see A's users.
    assert_code(
        srv.admin(b.token("boss"), Some("ville-a"))
            .create_user(user("mole", &[proto::Role::Officer]))
            .await,
        Code::NotFound,
        "tenant",
    );
    let b_users = srv
        .admin(b.token("boss"), None)
        .list_users(proto::ListUsersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b_users.users.len(), 8);
    // A circuit of B cannot name A's users… (they are unknown in B)
    assert_code(
        srv.circuits(b.token("boss"), None)
            .create_circuit(proto::CreateCircuitRequest {
                name: "x".into(),
                steps: vec![visa(&["zoe"])],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "unknown user 'zoe'",
    );
    // The operator acts in any tenant when he names it, and must name it.
    get(
        &srv,
        &Org {
            tenant: "ville-a".into(),
            tokens: [("op".to_string(), srv.operator.clone())].into(),
        },
        "op",
        &d.id,
    )
    .await
    .unwrap_err(); // no tenant header: refused
    srv.docs(&srv.operator, Some("ville-a"))
        .get_document(proto::GetDocumentRequest { id: d.id.clone() })
        .await
        .unwrap();
    assert_code(
        srv.docs(&srv.operator, Some("ville-b"))
            .get_document(proto::GetDocumentRequest { id: d.id.clone() })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_code(
        srv.docs(&srv.operator, Some("nowhere"))
            .get_document(proto::GetDocumentRequest { id: d.id.clone() })
            .await,
        Code::NotFound,
        "tenant",
    );
    srv.stop().await;
}

#[tokio::test]
async fn tokens_are_revocable_and_tokens_of_other_tenants_are_not_found() {
    let srv = TestServer::start().await;
    let a = Org::create(&srv, "ville-a").await;
    let b = Org::create(&srv, "ville-b").await;
    let mut admin = srv.admin(a.token("boss"), None);
    let t = admin
        .issue_token(proto::IssueTokenRequest {
            user: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert!(t.token.starts_with("pph_") && t.token.len() == 68);
    let mut with_new = srv.admin(&t.token, None);
    assert_code(
        with_new.list_users(proto::ListUsersRequest {}).await,
        Code::PermissionDenied,
        "admin",
    );
    assert_code(
        srv.admin(b.token("boss"), None)
            .revoke_token(proto::RevokeTokenRequest {
                token_id: t.token_id.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "token",
    );
    admin
        .revoke_token(proto::RevokeTokenRequest {
            token_id: t.token_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_code(
        with_new.list_users(proto::ListUsersRequest {}).await,
        Code::Unauthenticated,
        "token",
    );
    // alice's other token still works.
    srv.docs(a.token("alice"), None)
        .list_inbox(proto::ListInboxRequest::default())
        .await
        .unwrap();
    // The secret is not in the database files.
    let (dir, _) = srv.stop().await;
    let mut found = false;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        if bytes
            .windows(t.token.len())
            .any(|w| w == t.token.as_bytes())
        {
            found = true;
        }
    }
    assert!(!found, "a token secret was written to disk");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

/// A mandate's metadata is a protobuf map, which arrives in any order: a retried submission
/// with several entries is the same request (it once looked like another one, at random).
#[tokio::test]
async fn a_retried_submission_with_several_metadata_entries_returns_the_first_document() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-m").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let mut fin = srv.docs(org.token("finance"), None);
    let meta: Vec<(String, String)> = (0..12)
        .map(|i| (format!("field{i:02}"), format!("value {i}")))
        .collect();
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut h = header("one", "Mandat", &meta);
    h.idempotency_key = "0190f0e3a1b2c3d4e5f6a7b8c9d0e1f2".into();
    let first = submit_raw(&mut fin, h.clone(), b"content", 4)
        .await
        .unwrap();
    for _ in 0..10 {
        let again = submit_raw(&mut fin, h.clone(), b"content", 4)
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
    }
    assert_eq!(inbox(&srv, &org, "alice").await, vec![first.id.clone()]);
    srv.stop().await;
}

#[tokio::test]
async fn idempotent_retries_return_the_first_answer_and_change_nothing() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-i").await;
    create_circuit(
        &srv,
        &org,
        "two",
        vec![
            step(K::Visa, &["alice", "bob"], M::All, 0),
            visa(&["carol"]),
        ],
    )
    .await;
    let mut fin = srv.docs(org.token("finance"), None);
    let mut h = header("two", "Mandat", &[("amount", "10")]);
    h.idempotency_key = "submit-1".into();
    let first = submit_raw(&mut fin, h.clone(), b"content", 3)
        .await
        .unwrap();
    let again = submit_raw(&mut fin, h.clone(), b"content", 7)
        .await
        .unwrap();
    assert_eq!(first, again);
    // Same key, other content: refused, nothing created.
    assert_code(
        submit_raw(&mut fin, h.clone(), b"other", 7).await,
        Code::InvalidArgument,
        "idempotency key",
    );
    assert_eq!(inbox(&srv, &org, "alice").await, vec![first.id.clone()]);

    let mut alice = srv.docs(org.token("alice"), None);
    let req = proto::ApproveRequest {
        id: first.id.clone(),
        step: Some(0),
        comment: String::new(),
        idempotency_key: "a-1".into(),
    };
    let r1 = alice.approve(req.clone()).await.unwrap().into_inner();
    let r2 = alice.approve(req.clone()).await.unwrap().into_inner();
    assert_eq!(r1, r2);
    assert_eq!(r1.steps[0].actions.len(), 1);
    // The same key on another method is independent; without a key a second approval fails.
    let mut no_key = req.clone();
    no_key.idempotency_key.clear();
    assert_code(
        alice.approve(no_key).await,
        Code::FailedPrecondition,
        "already acted",
    );
    let now = get(&srv, &org, "alice", &first.id).await.unwrap();
    assert_eq!(
        now.history.len(),
        r1.history.len(),
        "the retry changed nothing"
    );
    // A retried call whose first answer was an error is not cached: it is re-evaluated.
    let mut bad = req.clone();
    bad.idempotency_key = "a-2".into();
    bad.step = Some(1);
    assert_code(
        alice.approve(bad.clone()).await,
        Code::FailedPrecondition,
        "not active",
    );
    // Malformed keys are refused.
    let mut k = req.clone();
    k.idempotency_key = "has space".into();
    assert_code(
        alice.approve(k).await,
        Code::InvalidArgument,
        "idempotency_key",
    );

    // Token issuance: a retry returns the same token id but never the secret again.
    let mut admin = srv.admin(org.token("boss"), None);
    let ireq = proto::IssueTokenRequest {
        user: "bob".into(),
        idempotency_key: "tok-1".into(),
    };
    let t1 = admin
        .issue_token(ireq.clone())
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    let t2 = admin
        .issue_token(ireq.clone())
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert_eq!(t1.token_id, t2.token_id);
    assert!(!t1.token.is_empty());
    assert!(t2.token.is_empty());
    // User creation retried: one user.
    let ureq = proto::CreateUserRequest {
        name: "zed".into(),
        roles: vec![proto::Role::Officer as i32],
        idempotency_key: "u-1".into(),
        ..Default::default()
    };
    admin.create_user(ureq.clone()).await.unwrap();
    admin.create_user(ureq.clone()).await.unwrap();
    let mut dup = ureq.clone();
    dup.idempotency_key.clear();
    assert_code(admin.create_user(dup).await, Code::AlreadyExists, "zed");
    srv.stop().await;
}

#[tokio::test]
async fn two_officers_racing_on_an_any_step_never_double_advance() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-race").await;
    create_circuit(
        &srv,
        &org,
        "any",
        vec![
            step(K::Visa, &["alice", "bob"], M::Any, 0),
            visa(&["carol"]),
        ],
    )
    .await;
    for _ in 0..40 {
        let d = submit(&srv, &org, "any", &[]).await;
        let (ra, rb) = tokio::join!(
            approve(&srv, &org, "alice", &d.id, Some(0)),
            approve(&srv, &org, "bob", &d.id, Some(0))
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one wins: {ra:?} {rb:?}");
        for r in [ra, rb] {
            if let Err(s) = r {
                assert!(
                    matches!(s.code(), Code::FailedPrecondition | Code::Aborted),
                    "{s:?}"
                );
            }
        }
        let now = get(&srv, &org, "carol", &d.id).await.unwrap();
        assert_eq!(now.current_step, 1);
        assert_eq!(now.steps[0].actions.len(), 1);
        assert_eq!(
            now.history.iter().filter(|h| h.kind == "approved").count(),
            1
        );
        assert_eq!(
            now.history
                .iter()
                .filter(|h| h.kind == "step_completed")
                .count(),
            1
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_precise_errors() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_document_bytes = 1000
    })
    .await;
    let org = Org::create(&srv, "ville-x").await;
    let mut c = srv.circuits(org.token("boss"), None);
    let circuit = |name: &str, steps| proto::CreateCircuitRequest {
        name: name.into(),
        steps,
        ..Default::default()
    };
    let mut bad_cond = visa(&["alice"]);
    bad_cond.condition = "amount >= ".into();
    assert_code(
        c.create_circuit(circuit("c", vec![bad_cond])).await,
        Code::InvalidArgument,
        "steps[0].condition",
    );
    let mut bad_cond = visa(&["alice"]);
    bad_cond.condition = "amount > 'x'".into();
    assert_code(
        c.create_circuit(circuit("c", vec![bad_cond])).await,
        Code::InvalidArgument,
        "number",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![])).await,
        Code::InvalidArgument,
        "steps",
    );
    assert_code(
        c.create_circuit(circuit("Bad Name", vec![visa(&["alice"])]))
            .await,
        Code::InvalidArgument,
        "circuit",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![visa(&[])])).await,
        Code::InvalidArgument,
        "steps[0].actors",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![visa(&["alice", "alice"])]))
            .await,
        Code::InvalidArgument,
        "twice",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![visa(&["finance"])]))
            .await,
        Code::InvalidArgument,
        "not an officer",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![visa(&["role:boss"])]))
            .await,
        Code::InvalidArgument,
        "unknown role",
    );
    assert_code(
        c.create_circuit(circuit(
            "c",
            vec![step(K::Visa, &["alice", "bob"], M::Quorum, 3)],
        ))
        .await,
        Code::InvalidArgument,
        "steps[0].quorum",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![step(K::Visa, &["alice"], M::Any, 1)]))
            .await,
        Code::InvalidArgument,
        "only a quorum step",
    );
    let mut lvl = visa(&["alice"]);
    lvl.level = 2;
    assert_code(
        c.create_circuit(circuit("c", vec![lvl])).await,
        Code::InvalidArgument,
        "steps[0].level",
    );
    let mut lvl = step(K::Signature, &["alice"], M::All, 0);
    lvl.level = 4; // refused while parsing, before the configuration check
    assert_code(
        c.create_circuit(circuit("c", vec![lvl])).await,
        Code::InvalidArgument,
        "steps[0].level",
    );
    let mut unknown_kind = visa(&["alice"]);
    unknown_kind.kind = 42;
    assert_code(
        c.create_circuit(circuit("c", vec![unknown_kind])).await,
        Code::InvalidArgument,
        "steps[0].kind",
    );
    let mut dl = visa(&["alice"]);
    dl.deadline_seconds = 400 * 86400;
    assert_code(
        c.create_circuit(circuit("c", vec![dl])).await,
        Code::InvalidArgument,
        "steps[0].deadline",
    );
    assert_code(
        c.get_circuit(proto::GetCircuitRequest {
            name: "nope".into(),
            version: 0,
        })
        .await,
        Code::NotFound,
        "circuit 'nope'",
    );
    // Steps that could never complete are refused (no trust settings or seal key yet).
    let mut sig = step(K::Signature, &["alice"], M::All, 0);
    sig.level = 2;
    assert_code(
        c.create_circuit(circuit("c", vec![visa(&["bob"]), sig]))
            .await,
        Code::FailedPrecondition,
        "step 1: signature",
    );
    assert_code(
        c.create_circuit(circuit("c", vec![step(K::Seal, &[], M::All, 0)]))
            .await,
        Code::FailedPrecondition,
        "seal key",
    );
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;

    let mut fin = srv.docs(org.token("finance"), None);
    assert_code(
        submit_raw(&mut fin, header("one", "   ", &[]), b"x", 8).await,
        Code::InvalidArgument,
        "title",
    );
    assert_code(
        submit_raw(&mut fin, header("one", &"t".repeat(301), &[]), b"x", 8).await,
        Code::InvalidArgument,
        "title",
    );
    assert_code(
        submit_raw(&mut fin, header("missing", "t", &[]), b"x", 8).await,
        Code::NotFound,
        "circuit 'missing'",
    );
    assert_code(
        submit_raw(&mut fin, header("one", "t", &[]), b"", 8).await,
        Code::InvalidArgument,
        "empty",
    );
    assert_code(
        submit_raw(&mut fin, header("one", "t", &[]), &[7u8; 1001], 100).await,
        Code::ResourceExhausted,
        "1000 bytes",
    );
    submit_raw(&mut fin, header("one", "t", &[]), &[7u8; 1000], 100)
        .await
        .unwrap();
    let mut h = header("one", "t", &[]);
    h.r#type = 0;
    assert_code(
        submit_raw(&mut fin, h, b"x", 8).await,
        Code::InvalidArgument,
        "type",
    );
    let big_value = "v".repeat(1025);
    assert_code(
        submit_raw(&mut fin, header("one", "t", &[("k", &big_value)]), b"x", 8).await,
        Code::InvalidArgument,
        "metadata",
    );
    let many: Vec<(String, String)> = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_code(
        submit_raw(&mut fin, header("one", "t", &many), b"x", 8).await,
        Code::InvalidArgument,
        "64 entries",
    );
    assert_code(
        submit_raw(&mut fin, header("one", "t", &[("bad key", "v")]), b"x", 8).await,
        Code::InvalidArgument,
        "metadata",
    );
    let mut h = header("one", "t", &[]);
    h.file_name = "../../etc/passwd".into();
    assert_code(
        submit_raw(&mut fin, h, b"x", 8).await,
        Code::InvalidArgument,
        "file_name",
    );
    // A stream that does not start with a header, or sends a second header.
    use proto::submit_document_request::Part;
    let only_chunk = vec![proto::SubmitDocumentRequest {
        part: Some(Part::Chunk(b"x".to_vec())),
    }];
    assert_code(
        fin.submit_document(tokio_stream::iter(only_chunk)).await,
        Code::InvalidArgument,
        "header",
    );
    let two_headers = vec![
        proto::SubmitDocumentRequest {
            part: Some(Part::Header(header("one", "t", &[]))),
        },
        proto::SubmitDocumentRequest {
            part: Some(Part::Header(header("one", "t", &[]))),
        },
    ];
    assert_code(
        fin.submit_document(tokio_stream::iter(two_headers)).await,
        Code::InvalidArgument,
        "chunk",
    );
    // Invalid identifiers.
    for id in ["", "xyz", "../doc", &"G".repeat(32)] {
        assert_code(
            get(&srv, &org, "alice", id).await,
            Code::InvalidArgument,
            "document id",
        );
    }
    assert_code(
        srv.admin(org.token("boss"), None)
            .create_user(user("Bad Name", &[proto::Role::Officer]))
            .await,
        Code::InvalidArgument,
        "user",
    );
    assert_code(
        srv.admin(org.token("boss"), None)
            .create_user(user("norole", &[]))
            .await,
        Code::InvalidArgument,
        "role",
    );
    assert_code(
        srv.admin(org.token("boss"), None)
            .create_user(proto::CreateUserRequest {
                name: "x".into(),
                roles: vec![99],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "role",
    );
    assert_code(
        srv.admin(org.token("boss"), None)
            .revoke_token(proto::RevokeTokenRequest {
                token_id: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "token id",
    );
    assert_code(
        srv.docs(org.token("alice"), None)
            .list_inbox(proto::ListInboxRequest {
                page_size: 501,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    srv.stop().await;
}

#[tokio::test]
async fn only_the_platform_operator_reads_the_server_statistics() {
    let srv = TestServer::start().await;
    let a = Org::create(&srv, "ville-a").await;
    let stats = |who: &str, tenant: Option<&str>| {
        let mut admin = srv.admin(who, tenant);
        async move {
            admin
                .get_server_stats(proto::GetServerStatsRequest {})
                .await
                .map(|r| r.into_inner())
        }
    };
    for who in ["boss", "audit", "alice", "finance"] {
        assert_code(
            stats(a.token(who), None).await,
            Code::PermissionDenied,
            "platform operator",
        );
    }
    assert_code(
        stats("pph_0000", None).await,
        Code::Unauthenticated,
        "token",
    );
    // The operator, outside any tenant or acting in one.
    for tenant in [None, Some("ville-a")] {
        let s = stats(&srv.operator, tenant).await.unwrap();
        // The store the server keeps its records in: the engine, or PostgreSQL.
        let engine = if common::on_postgres() {
            "postgresql".to_string()
        } else {
            common::test_engine().map_or("sled".to_string(), |e| e.to_string())
        };
        assert_eq!(s.storage_engine, engine);
        assert!(s.store_bytes > 0, "{s:?}");
        if cfg!(target_os = "linux") {
            assert!(s.rss_bytes > 0, "{s:?}");
            assert!(s.peak_rss_bytes >= s.rss_bytes, "{s:?}");
        }
    }
}
