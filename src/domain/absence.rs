//! Absences and delegation resolution.
//!
//! Owns the rules of who may act for an absent officer: declaring an absence (refusals named),
//! and resolving, at a given instant, where an absent actor's step goes — along the chain of
//! delegates (transitive, cycle-safe), skipping a delegate who cannot perform the step, and else
//! escalating to the step's fallback or the tenant's admins. Pure: the roster of users, their
//! signing levels and the absences are given, as is `now`. Must not touch storage or the clock.

use super::{
    document::DocumentType, AbsenceId, CircuitName, DomainError, RgsLevel, Role, StepKind,
    TenantId, Timestamp, UserName,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Longest absence that can be declared at once (two years).
pub const MAX_ABSENCE_SECS: i64 = 2 * 366 * 24 * 3600;
/// Most document types or circuits in one scope.
pub const MAX_SCOPE_ENTRIES: usize = 32;

/// Which documents an absence covers: empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub doc_types: Vec<DocumentType>,
    #[serde(default)]
    pub circuits: Vec<CircuitName>,
}

impl Scope {
    pub fn new(
        mut doc_types: Vec<DocumentType>,
        mut circuits: Vec<CircuitName>,
    ) -> Result<Scope, DomainError> {
        if doc_types.len() > MAX_SCOPE_ENTRIES || circuits.len() > MAX_SCOPE_ENTRIES {
            return Err(DomainError::invalid(
                "scope",
                format!("at most {MAX_SCOPE_ENTRIES} document types and circuits"),
            ));
        }
        doc_types.sort_by_key(|t| *t as u8);
        doc_types.dedup();
        circuits.sort();
        circuits.dedup();
        Ok(Scope {
            doc_types,
            circuits,
        })
    }

    pub fn is_all(&self) -> bool {
        self.doc_types.is_empty() && self.circuits.is_empty()
    }

    /// Whether a document of this type in this circuit falls in the scope.
    pub fn covers(&self, doc_type: DocumentType, circuit: &CircuitName) -> bool {
        (self.doc_types.is_empty() || self.doc_types.contains(&doc_type))
            && (self.circuits.is_empty() || self.circuits.contains(circuit))
    }

    /// Whether some document falls in both scopes.
    pub fn intersects(&self, other: &Scope) -> bool {
        let types = self.doc_types.is_empty()
            || other.doc_types.is_empty()
            || self.doc_types.iter().any(|t| other.doc_types.contains(t));
        let circuits = self.circuits.is_empty()
            || other.circuits.is_empty()
            || self.circuits.iter().any(|c| other.circuits.contains(c));
        types && circuits
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_all() {
            return f.write_str("all documents");
        }
        let mut parts = Vec::new();
        if !self.doc_types.is_empty() {
            parts.push(format!(
                "types {}",
                self.doc_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if !self.circuits.is_empty() {
            parts.push(format!(
                "circuits {}",
                self.circuits
                    .iter()
                    .map(CircuitName::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A declared absence: `user` is away during `[from, to)` and `delegate` acts for him on the
/// documents of `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absence {
    pub id: AbsenceId,
    pub tenant: TenantId,
    pub user: UserName,
    pub from: Timestamp,
    pub to: Timestamp,
    pub delegate: UserName,
    pub scope: Scope,
    pub declared_by: UserName,
    pub declared_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
}

/// What a caller asks for when declaring an absence.
#[derive(Clone, Debug)]
pub struct AbsenceRequest {
    pub user: UserName,
    pub from: Timestamp,
    pub to: Timestamp,
    pub delegate: UserName,
    pub scope: Scope,
}

impl Absence {
    /// Checks a declaration against the tenant's users (`is_user`) and the user's other
    /// absences. Refused: delegate = the user, unknown users, `from >= to`, an end in the past,
    /// longer than two years, or an overlap with another live absence of the user whose scope
    /// intersects this one (so that at any instant at most one absence applies to a document).
    pub fn declare(
        id: AbsenceId,
        tenant: TenantId,
        req: AbsenceRequest,
        by: UserName,
        existing: &[Absence],
        is_user: &dyn Fn(&UserName) -> bool,
        now: Timestamp,
    ) -> Result<Absence, DomainError> {
        if !is_user(&req.user) {
            return Err(DomainError::NotFound(format!("user '{}'", req.user)));
        }
        if !is_user(&req.delegate) {
            return Err(DomainError::invalid(
                "delegate",
                format!("unknown user '{}'", req.delegate),
            ));
        }
        if req.delegate == req.user {
            return Err(DomainError::invalid(
                "delegate",
                "a user cannot delegate to himself",
            ));
        }
        if req.from >= req.to {
            return Err(DomainError::invalid("to", "must be after 'from'"));
        }
        if req.to <= now {
            return Err(DomainError::invalid(
                "to",
                "the absence would already be over",
            ));
        }
        if req.to.0.saturating_sub(req.from.0) > MAX_ABSENCE_SECS {
            return Err(DomainError::invalid(
                "to",
                "an absence lasts at most two years",
            ));
        }
        if let Some(o) = existing.iter().find(|a| {
            a.user == req.user
                && a.is_live(now)
                && a.from < req.to
                && req.from < a.to
                && a.scope.intersects(&req.scope)
        }) {
            return Err(DomainError::AlreadyExists(format!(
                "an overlapping absence of '{}' for {} ({})",
                req.user, o.scope, o.id
            )));
        }
        Ok(Absence {
            id,
            tenant,
            user: req.user,
            from: req.from,
            to: req.to,
            delegate: req.delegate,
            scope: req.scope,
            declared_by: by,
            declared_at: now,
            cancelled_at: None,
        })
    }

    /// Not cancelled and not over at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.cancelled_at.is_none() && now < self.to
    }

    /// In force at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.cancelled_at.is_none() && self.from <= now && now < self.to
    }

    /// Cancels a live absence (it stops applying at once).
    pub fn cancel(mut self, now: Timestamp) -> Result<Absence, DomainError> {
        if self.cancelled_at.is_some() {
            return Err(DomainError::WrongState(format!(
                "absence {} is already cancelled",
                self.id
            )));
        }
        if now >= self.to {
            return Err(DomainError::WrongState(format!(
                "absence {} is already over",
                self.id
            )));
        }
        self.cancelled_at = Some(now);
        Ok(self)
    }

    /// Instants at which this absence starts or stops applying.
    pub fn boundaries(&self) -> Vec<Timestamp> {
        let mut v = vec![self.from, self.to];
        v.extend(self.cancelled_at);
        v
    }
}

/// Why a step went to someone other than its actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// The actor is absent; a present delegate acts for him.
    Delegation,
    /// Nobody present can act for the actor: the fallback (or the admins) was alerted.
    Escalation,
    /// The step is overdue and its circuit escalates to the fallback.
    Overdue,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Delegation => "delegation",
            RouteKind::Escalation => "escalation",
            RouteKind::Overdue => "overdue",
        }
    }
}

/// Where an actor's share of a step goes while he cannot act.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub kind: RouteKind,
    /// Who may act for the actor (one delegate; or the fallback; or the tenant's admins).
    pub to: Vec<UserName>,
    /// The actor's absence this route relies on (none for an overdue escalation).
    pub absence: Option<AbsenceId>,
    /// The delegates walked, in order, for the record (`a -> b -> c`).
    pub chain: Vec<UserName>,
    /// Why the chain ended in an escalation, when it did.
    pub reason: String,
}

/// What resolution needs to know of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub roles: Vec<Role>,
    /// The highest RGS level of the user's bound certificates usable now (none if no usable
    /// certificate).
    pub signing_level: Option<RgsLevel>,
}

/// A tenant's users and absences at the time of a resolution.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    pub members: BTreeMap<UserName, Member>,
    pub absences: Vec<Absence>,
}

/// What a step asks of whoever acts on it.
#[derive(Clone, Copy, Debug)]
pub struct StepNeeds<'a> {
    pub kind: StepKind,
    pub level: Option<RgsLevel>,
    pub doc_type: DocumentType,
    pub circuit: &'a CircuitName,
    pub fallback: Option<&'a UserName>,
}

impl Roster {
    pub fn new(members: BTreeMap<UserName, Member>, absences: Vec<Absence>) -> Roster {
        Roster { members, absences }
    }

    /// Whether the roster holds no absence at all (nothing to resolve).
    pub fn has_absences(&self) -> bool {
        !self.absences.is_empty()
    }

    /// The absence of `user` that applies to a document of this type and circuit at `now`.
    pub fn absence_of(
        &self,
        user: &UserName,
        needs: &StepNeeds<'_>,
        now: Timestamp,
    ) -> Option<&Absence> {
        self.absences.iter().find(|a| {
            &a.user == user && a.is_active(now) && a.scope.covers(needs.doc_type, needs.circuit)
        })
    }

    /// Whether `user` can perform the step: an officer, and for a signature a bound certificate
    /// of at least the required level.
    pub fn can_perform(&self, user: &UserName, needs: &StepNeeds<'_>) -> bool {
        let Some(m) = self.members.get(user) else {
            return false;
        };
        if !m.roles.contains(&Role::Officer) {
            return false;
        }
        match needs.kind {
            StepKind::Visa => true,
            StepKind::Signature => match (m.signing_level, needs.level) {
                (Some(have), Some(need)) => have >= need,
                (Some(_), None) => true,
                (None, _) => false,
            },
            StepKind::Seal => false,
        }
    }

    /// Present (not absent for this document) and able to perform the step.
    pub fn eligible(&self, user: &UserName, needs: &StepNeeds<'_>, now: Timestamp) -> bool {
        self.absence_of(user, needs, now).is_none() && self.can_perform(user, needs)
    }

    /// The tenant's admins, present ones first.
    pub fn admins(&self) -> Vec<UserName> {
        self.members
            .iter()
            .filter(|(_, m)| m.roles.contains(&Role::Admin))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Where `actor`'s share of a step goes at `now`: `None` when he is present; an absent
    /// actor always gets a route (a delegate, or an escalation).
    ///
    /// The delegation chain is walked from the actor's absence: an absent delegate hands on to
    /// his own delegate; the first present delegate able to perform the step gets it; a present
    /// delegate who cannot perform it is skipped in favour of the next candidate of his own
    /// chain if he has one, else the chain ends. A user met twice ends the walk (cycle). When
    /// the chain yields nobody, the step escalates: to the step's (or circuit's) fallback when
    /// he is eligible, else to the tenant's admins.
    pub fn route(&self, actor: &UserName, needs: &StepNeeds<'_>, now: Timestamp) -> Option<Route> {
        let first = self.absence_of(actor, needs, now)?;
        let mut visited: BTreeSet<&UserName> = BTreeSet::new();
        visited.insert(actor);
        let mut chain = Vec::new();
        let mut next = &first.delegate;
        let reason = loop {
            if !visited.insert(next) {
                break format!("delegation cycle at '{next}'");
            }
            chain.push(next.clone());
            let absent = self.absence_of(next, needs, now);
            if absent.is_none() && self.can_perform(next, needs) {
                return Some(Route {
                    kind: RouteKind::Delegation,
                    to: vec![next.clone()],
                    absence: Some(first.id.clone()),
                    chain,
                    reason: String::new(),
                });
            }
            // Absent, or present but unable: try his own delegate if he names one.
            match absent {
                Some(a) => next = &a.delegate,
                None => {
                    break format!("delegate '{next}' cannot perform this step");
                }
            }
        };
        Some(self.escalation(
            actor,
            needs,
            now,
            RouteKind::Escalation,
            Some(first),
            chain,
            reason,
        ))
    }

    /// The escalation target for `actor`'s share: the fallback if eligible, else the admins.
    #[allow(clippy::too_many_arguments)]
    pub fn escalation(
        &self,
        actor: &UserName,
        needs: &StepNeeds<'_>,
        now: Timestamp,
        kind: RouteKind,
        absence: Option<&Absence>,
        chain: Vec<UserName>,
        reason: String,
    ) -> Route {
        let to = match needs.fallback {
            Some(f) if f != actor && self.eligible(f, needs, now) => vec![f.clone()],
            _ => self.admins(),
        };
        Route {
            kind,
            to,
            absence: absence.map(|a| a.id.clone()),
            chain,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    fn member(level: Option<u32>) -> Member {
        Member {
            roles: vec![Role::Officer],
            signing_level: level.map(|l| RgsLevel::new(l).unwrap()),
        }
    }

    fn absence(user: &str, delegate: &str, from: i64, to: i64) -> Absence {
        Absence {
            id: AbsenceId::from_random([user.len() as u8 + delegate.len() as u8; 16]),
            tenant: TenantId::parse("t1").unwrap(),
            user: u(user),
            from: Timestamp(from),
            to: Timestamp(to),
            delegate: u(delegate),
            scope: Scope::default(),
            declared_by: u(user),
            declared_at: Timestamp(0),
            cancelled_at: None,
        }
    }

    fn roster(absences: Vec<Absence>) -> Roster {
        let mut members = BTreeMap::new();
        for n in ["a", "b", "c"] {
            members.insert(u(n), member(Some(3)));
        }
        members.insert(u("low"), member(Some(1)));
        members.insert(
            u("boss"),
            Member {
                roles: vec![Role::Admin],
                signing_level: None,
            },
        );
        members.insert(u("fb"), member(Some(3)));
        Roster::new(members, absences)
    }

    fn needs<'a>(c: &'a CircuitName, fb: Option<&'a UserName>, level: u32) -> StepNeeds<'a> {
        StepNeeds {
            kind: StepKind::Signature,
            level: Some(RgsLevel::new(level).unwrap()),
            doc_type: DocumentType::Mandate,
            circuit: c,
            fallback: fb,
        }
    }

    #[test]
    fn present_actor_has_no_route_and_chain_is_transitive() {
        let c = CircuitName::parse("c").unwrap();
        let r = roster(vec![absence("a", "b", 10, 20), absence("b", "c", 0, 15)]);
        let n = needs(&c, None, 2);
        assert_eq!(r.route(&u("a"), &n, Timestamp(5)), None);
        let at12 = r.route(&u("a"), &n, Timestamp(12)).unwrap();
        assert_eq!(
            (at12.kind, at12.to.clone()),
            (RouteKind::Delegation, vec![u("c")])
        );
        assert_eq!(at12.chain, vec![u("b"), u("c")]);
        let at16 = r.route(&u("a"), &n, Timestamp(16)).unwrap();
        assert_eq!(at16.to, vec![u("b")]);
        assert_eq!(r.route(&u("a"), &n, Timestamp(20)), None);
    }

    #[test]
    fn cycle_and_unable_delegate_escalate() {
        let c = CircuitName::parse("c").unwrap();
        let fb = u("fb");
        let r = roster(vec![absence("a", "b", 0, 20), absence("b", "a", 0, 20)]);
        let cyc = r
            .route(&u("a"), &needs(&c, Some(&fb), 2), Timestamp(1))
            .unwrap();
        assert_eq!(cyc.kind, RouteKind::Escalation);
        assert_eq!(cyc.to, vec![fb.clone()]);
        assert!(cyc.reason.contains("cycle"), "{}", cyc.reason);
        // Without a fallback the admins are alerted.
        let adm = r.route(&u("a"), &needs(&c, None, 2), Timestamp(1)).unwrap();
        assert_eq!(adm.to, vec![u("boss")]);
        // A delegate whose certificate is below the level is skipped.
        let r = roster(vec![absence("a", "low", 0, 20)]);
        let low = r
            .route(&u("a"), &needs(&c, Some(&fb), 2), Timestamp(1))
            .unwrap();
        assert_eq!((low.kind, low.to), (RouteKind::Escalation, vec![fb]));
        let ok = r.route(&u("a"), &needs(&c, None, 1), Timestamp(1)).unwrap();
        assert_eq!((ok.kind, ok.to), (RouteKind::Delegation, vec![u("low")]));
    }

    #[test]
    fn declaration_refusals_are_named() {
        let t = TenantId::parse("t1").unwrap();
        let is_user = |n: &UserName| ["a", "b", "c"].contains(&n.as_str());
        let req = |user: &str, del: &str, from: i64, to: i64| AbsenceRequest {
            user: u(user),
            from: Timestamp(from),
            to: Timestamp(to),
            delegate: if del.is_empty() { u("zz") } else { u(del) },
            scope: Scope::default(),
        };
        let id = AbsenceId::from_random([1; 16]);
        let d = |r, ex: &[Absence]| {
            Absence::declare(id.clone(), t.clone(), r, u("a"), ex, &is_user, Timestamp(0))
        };
        assert!(
            matches!(d(req("a", "a", 1, 2), &[]), Err(DomainError::InvalidField { field, .. }) if field == "delegate")
        );
        assert!(
            matches!(d(req("a", "", 1, 2), &[]), Err(DomainError::InvalidField { field, .. }) if field == "delegate")
        );
        assert!(matches!(
            d(req("q", "b", 1, 2), &[]),
            Err(DomainError::NotFound(_))
        ));
        assert!(
            matches!(d(req("a", "b", 2, 2), &[]), Err(DomainError::InvalidField { field, .. }) if field == "to")
        );
        let first = d(req("a", "b", 10, 20), &[]).unwrap();
        assert!(matches!(
            d(req("a", "c", 15, 30), std::slice::from_ref(&first)),
            Err(DomainError::AlreadyExists(_))
        ));
        assert!(d(req("a", "c", 20, 30), std::slice::from_ref(&first)).is_ok());
        // A scoped absence does not overlap one of a disjoint scope.
        let mut mandates = first.clone();
        mandates.scope = Scope::new(vec![DocumentType::Mandate], vec![]).unwrap();
        let mut r = req("a", "c", 15, 30);
        r.scope = Scope::new(vec![DocumentType::Contract], vec![]).unwrap();
        assert!(d(r, &[mandates]).is_ok());
        // A cancelled one no longer counts.
        let cancelled = first.cancel(Timestamp(1)).unwrap();
        assert!(d(req("a", "c", 15, 30), &[cancelled]).is_ok());
    }
}
