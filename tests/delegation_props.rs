//! Property test of delegation resolution (pure domain, no server): over random absence
//! calendars, circuits and acts, at every instant each open share of the active step has an
//! eligible present actor — the actor himself, or the delegate it is routed to — or an open
//! escalation alert; and whoever may act is one of those.

use paraph::domain::{
    circuit::{ActorRef, CircuitSpec, Mode, StepDef, StepKind},
    Absence, AbsenceId, AbsenceRequest, Circuit, CircuitName, ContentRef, DocState, Document,
    DocumentId, DocumentType, EventKind, Member, NewDocument, RgsLevel, Role, Roster, RouteKind,
    Scope, StepNeeds, TenantId, Timestamp, UserName,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const USERS: usize = 5;

fn user(i: usize) -> UserName {
    UserName::parse(&format!("u{i}")).unwrap()
}

#[derive(Debug, Clone)]
struct Calendar {
    levels: Vec<Option<u32>>,
    absences: Vec<(usize, usize, i64, i64, bool)>,
}

fn calendar() -> impl Strategy<Value = Calendar> {
    (
        proptest::collection::vec(proptest::option::of(1u32..=3), USERS),
        proptest::collection::vec(
            (0..USERS, 0..USERS, 0i64..90, 1i64..60, any::<bool>()),
            0..8,
        ),
    )
        .prop_map(|(levels, absences)| Calendar {
            levels,
            absences: absences
                .into_iter()
                .map(|(u, d, from, len, mandates_only)| (u, d, from, from + len, mandates_only))
                .collect(),
        })
}

fn roster(cal: &Calendar) -> Roster {
    let mut members = BTreeMap::new();
    for (i, l) in cal.levels.iter().enumerate() {
        members.insert(
            user(i),
            Member {
                roles: vec![Role::Officer],
                signing_level: l.map(|l| RgsLevel::new(l).unwrap()),
            },
        );
    }
    members.insert(
        UserName::parse("boss").unwrap(),
        Member {
            roles: vec![Role::Admin],
            signing_level: None,
        },
    );
    let tenant = TenantId::parse("t1").unwrap();
    let mut absences: Vec<Absence> = Vec::new();
    for (n, (u, d, from, to, mandates_only)) in cal.absences.iter().enumerate() {
        let scope = if *mandates_only {
            Scope::new(vec![DocumentType::Mandate], vec![]).unwrap()
        } else {
            Scope::default()
        };
        let req = AbsenceRequest {
            user: user(*u),
            from: Timestamp(*from),
            to: Timestamp(*to),
            delegate: user(*d),
            scope,
        };
        let is_user = |x: &UserName| members.contains_key(x);
        // Refused declarations (self-delegation, overlaps) are simply not part of the calendar.
        if let Ok(a) = Absence::declare(
            AbsenceId::from_random([n as u8; 16]),
            tenant.clone(),
            req,
            user(*u),
            &absences,
            &is_user,
            Timestamp(0),
        ) {
            absences.push(a);
        }
    }
    Roster::new(members, absences)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_open_share_has_a_present_eligible_actor_or_an_open_alert(
        cal in calendar(),
        actors in proptest::sample::subsequence((0..USERS).collect::<Vec<_>>(), 1..=3),
        signature in any::<bool>(),
        level in 1u32..=3,
        any_mode in any::<bool>(),
        fallback in proptest::option::of(0..USERS),
        contract in any::<bool>(),
        acts in proptest::collection::vec(proptest::option::of(0usize..8), 20),
    ) {
        let roster = roster(&cal);
        let step = StepDef {
            kind: if signature { StepKind::Signature } else { StepKind::Visa },
            actors: actors.iter().map(|i| ActorRef::User(user(*i))).collect(),
            mode: if any_mode { Mode::Any } else { Mode::All },
            condition: None,
            level: signature.then(|| RgsLevel::new(level).unwrap()),
            deadline_secs: None,
            fallback: fallback.map(user),
            escalate: Default::default(),
            claimed_role: None,
            pdf: Default::default(),
        };
        let circuit = Circuit::define(
            CircuitSpec { name: CircuitName::parse("c").unwrap(), fallback: None, steps: vec![step] },
            1,
            &|u: &UserName| u.as_str().starts_with('u').then(|| vec![Role::Officer]),
            UserName::parse("boss").unwrap(),
            Timestamp(0),
        ).unwrap();
        let new = NewDocument {
            id: DocumentId::from_random([1; 16]),
            tenant: TenantId::parse("t1").unwrap(),
            doc_type: if contract { DocumentType::Contract } else { DocumentType::Mandate },
            title: "t".into(),
            metadata: BTreeMap::new(),
            content: ContentRef { sha256: "00".into(), size: 1, file_name: None },
            submitter: UserName::parse("finance").unwrap(),
        };
        let mut doc = Document::submit(new, &circuit, &|_| Vec::new(), Timestamp(0)).unwrap().document;
        for (n, act) in acts.iter().enumerate() {
            let now = Timestamp(n as i64 * 5);
            if let Some(t) = doc.clone().reroute(&roster, now) {
                doc = t.document;
            }
            if doc.state != DocState::InProgress {
                break;
            }
            let i = doc.active_step().unwrap();
            let st = &doc.steps[i];
            let needs = StepNeeds {
                kind: st.kind,
                level: st.level,
                doc_type: doc.doc_type,
                circuit: &doc.circuit.0,
                fallback: st.fallback.as_ref(),
            };
            // Routing is a fixed point: a second pass at the same instant changes nothing.
            prop_assert!(doc.clone().reroute(&roster, now).is_none());
            for a in st.open_shares() {
                let present = roster.absence_of(&a, &needs, now).is_none();
                match st.routes.get(&a) {
                    None => prop_assert!(present, "absent {a} at {now:?} has no route"),
                    Some(r) => {
                        prop_assert!(!present, "present {a} still routed at {now:?}");
                        match r.kind {
                            RouteKind::Delegation => {
                                prop_assert_eq!(r.to.len(), 1);
                                prop_assert!(roster.eligible(&r.to[0], &needs, now),
                                    "delegate {} of {a} is not eligible at {now:?}", r.to[0]);
                            }
                            RouteKind::Escalation | RouteKind::Overdue => {
                                prop_assert!(!r.to.is_empty());
                                // The alert is open: its event is in the history.
                                prop_assert!(doc.history.iter().any(|e| e.kind == EventKind::Escalated
                                    && e.on_behalf_of.as_ref() == Some(&a)));
                            }
                        }
                    }
                }
            }
            // Whoever may act, acts for an open share; anyone else is refused.
            if let Some(who) = act {
                let who = user(*who % USERS);
                let allowed = st.open_shares().contains(&who)
                    || st.open_shares().iter().any(|a| st.routes.get(a).is_some_and(|r| r.to.contains(&who)));
                let r = doc.clone().approve(&who, None, None, now);
                if st.kind == StepKind::Visa {
                    prop_assert_eq!(r.is_ok(), allowed, "{} acting at {:?}", who, now);
                    if let Ok(t) = r {
                        doc = t.document;
                    }
                }
            }
        }
    }
}
