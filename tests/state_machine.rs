//! Property tests of the pure workflow state machine (no server, no I/O).

use paraph::domain::Circuit;
use paraph::domain::{
    circuit::{ActorRef, CircuitSpec, Mode, StepDef, StepKind},
    CircuitName, Condition, ContentRef, DocState, Document, DocumentId, DocumentType, NewDocument,
    Role, StepStatus, TenantId, Timestamp, UserName,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn user(i: usize) -> UserName {
    UserName::parse(&format!("u{i}")).unwrap()
}

#[derive(Debug, Clone)]
enum Cmd {
    Approve(usize, Option<u32>),
    Reject(usize, Option<u32>),
    Withdraw(bool),
}

fn step_strategy() -> impl Strategy<Value = StepDef> {
    (
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4),
        0u8..3,
        1u32..=4,
        proptest::option::of(0i64..3000),
    )
        .prop_map(|(actors, mode, k, threshold)| {
            let n = actors.len() as u32;
            StepDef {
                kind: StepKind::Visa,
                actors: actors
                    .into_iter()
                    .map(|i| ActorRef::User(user(i)))
                    .collect(),
                mode: match mode {
                    0 => Mode::All,
                    1 => Mode::Any,
                    _ => Mode::Quorum(k.min(n)),
                },
                condition: threshold.map(|t| Condition::parse(&format!("amount >= {t}")).unwrap()),
                level: None,
                deadline_secs: None,
                fallback: None,
                escalate: Default::default(),
                claimed_role: None,
                pdf: Default::default(),
            }
        })
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        8 => (0usize..4, proptest::option::of(0u32..5)).prop_map(|(u, s)| Cmd::Approve(u, s)),
        1 => (0usize..4, proptest::option::of(0u32..5)).prop_map(|(u, s)| Cmd::Reject(u, s)),
        1 => any::<bool>().prop_map(Cmd::Withdraw),
    ]
}

fn check_invariants(d: &Document) {
    let active: Vec<usize> = d
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status == StepStatus::Active)
        .map(|(i, _)| i)
        .collect();
    assert!(active.len() <= 1, "at most one active step");
    assert_eq!(
        d.state == DocState::InProgress,
        active.len() == 1,
        "in progress iff a step is active"
    );
    if let Some(&a) = active.first() {
        assert!(d.steps[..a]
            .iter()
            .all(|s| matches!(s.status, StepStatus::Done | StepStatus::Skipped)));
        assert!(d.steps[a + 1..]
            .iter()
            .all(|s| s.status == StepStatus::Pending));
        assert!(
            !d.steps[a].mode_met(),
            "an active step has not met its mode"
        );
    }
    if d.state == DocState::Completed {
        for s in &d.steps {
            match s.status {
                StepStatus::Done => assert!(s.mode_met(), "a done step met its mode"),
                StepStatus::Skipped => {}
                other => panic!("completed document with a {other:?} step"),
            }
        }
    }
    for s in &d.steps {
        if s.status == StepStatus::Skipped {
            let c = s
                .condition
                .as_ref()
                .expect("only conditional steps are skipped");
            assert!(
                !c.evaluate(&d.metadata).unwrap(),
                "skipped only when the condition is false"
            );
        }
        // Every action is by an actor of the step, at most once each.
        for (i, a) in s.actions.iter().enumerate() {
            assert!(s.actors.contains(&a.actor));
            assert!(!s.actions[..i].iter().any(|b| b.actor == a.actor));
        }
    }
    if d.state == DocState::Rejected {
        assert_eq!(
            d.steps
                .iter()
                .filter(|s| s.status == StepStatus::Rejected)
                .count(),
            1
        );
    }
    for (i, e) in d.history.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_circuits_and_commands_keep_the_invariants(
        steps in proptest::collection::vec(step_strategy(), 1..5),
        amount in 0i64..3000,
        cmds in proptest::collection::vec(cmd_strategy(), 0..40),
    ) {
        let officer_roles = |u: &UserName| u.as_str().starts_with('u').then(|| vec![Role::Officer]);
        let circuit = Circuit::define(
            CircuitSpec { name: CircuitName::parse("c").unwrap(), fallback: None, steps },
            1,
            &officer_roles,
            UserName::parse("boss").unwrap(),
            Timestamp(0),
        ).unwrap();
        let mut meta = BTreeMap::new();
        meta.insert("amount".to_string(), amount.to_string());
        let submitter = UserName::parse("finance").unwrap();
        let new = NewDocument {
            id: DocumentId::from_random([1; 16]),
            tenant: TenantId::parse("t1").unwrap(),
            doc_type: DocumentType::Mandate,
            title: "t".into(),
            metadata: meta,
            content: ContentRef { sha256: "00".into(), size: 1, file_name: None },
            submitter: submitter.clone(),
        };
        let t = Document::submit(new, &circuit, &|_| Vec::new(), Timestamp(0)).unwrap();
        let mut doc = t.document;
        check_invariants(&doc);
        for (n, cmd) in cmds.into_iter().enumerate() {
            let now = Timestamp(n as i64 + 1);
            let before = doc.clone();
            let r = match &cmd {
                Cmd::Approve(u, s) => doc.clone().approve(&user(*u), *s, None, now),
                Cmd::Reject(u, s) => doc.clone().reject(&user(*u), *s, "motif", now),
                Cmd::Withdraw(own) => {
                    let who = if *own { submitter.clone() } else { user(0) };
                    doc.clone().withdraw(&who, "", now)
                }
            };
            match r {
                Ok(t) => {
                    prop_assert!(!before.state.is_terminal(), "nothing leaves a terminal state");
                    prop_assert!(!t.events.is_empty());
                    prop_assert_eq!(&t.document.history[..before.history.len()], &before.history[..], "history only grows");
                    prop_assert_eq!(&t.document.history[before.history.len()..], &t.events[..]);
                    doc = t.document;
                    check_invariants(&doc);
                }
                Err(_) => prop_assert_eq!(&doc, &before),
            }
        }
    }
}
