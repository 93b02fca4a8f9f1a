//! Absences, delegation routing, the scheduler's tick and reassignment.
//!
//! Owns where an open share of a step goes when its actor is absent or the step is overdue:
//! it loads the roster (users, signing levels from bound certificates and the trust policy
//! map, absences), asks the pure domain to reroute, and stores the result like any transition
//! (document, inbox and deadline indexes, log, notices). The rules themselves live in
//! `domain::absence` and `domain::document`; this module must not decide them.

use super::documents::record;
use super::trust::{trust_key, TrustSettings};
use super::{append_log, random16, Caller, Idem, Notice, Paraph, Result};
use crate::domain::{
    Absence, AbsenceId, AbsenceRequest, Document, DocumentId, DomainError, Member, Reassignment,
    RgsLevel, Role, Roster, TenantId, Timestamp, Transition, User, UserName,
};
use crate::store::Tx;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn absences_key(tenant: &TenantId) -> String {
    format!("absences/{tenant}")
}

/// `due/{t}/{due:020}/{id}`: the document's active step is due then and not yet overdue.
pub(super) fn due_key(doc: &Document) -> Option<String> {
    let i = doc.active_step()?;
    let st = &doc.steps[i];
    if st.overdue {
        return None;
    }
    let due = st.due_at?;
    Some(format!(
        "due/{}/{:020}/{}",
        doc.tenant,
        due.0.max(0),
        doc.id
    ))
}

/// The tenant's users as delegation candidates: roles, and the highest RGS level among their
/// bound certificates valid at `now` whose policies the trust settings map to a level.
fn members(users: Vec<User>, trust: &TrustSettings, now: Timestamp) -> BTreeMap<UserName, Member> {
    users
        .into_iter()
        .map(|u| {
            let level = u
                .certificates
                .iter()
                .filter(|c| c.not_before <= now && now < c.not_after)
                .flat_map(|c| c.policies.iter())
                .filter_map(|p| trust.policy_levels.get(p).copied())
                .max()
                .and_then(|l| RgsLevel::new(u32::from(l)).ok());
            (
                u.name,
                Member {
                    roles: u.roles,
                    signing_level: level,
                },
            )
        })
        .collect()
}

/// Loads the roster inside a transaction.
pub(super) fn roster(tx: &Tx<'_>, tenant: &TenantId, now: Timestamp) -> Result<Roster> {
    let users: Vec<User> = tx.get(&format!("userlist/{tenant}"))?.unwrap_or_default();
    let trust: TrustSettings = tx.get(&trust_key(tenant))?.unwrap_or_default();
    let absences: Vec<Absence> = tx.get(&absences_key(tenant))?.unwrap_or_default();
    Ok(Roster::new(members(users, &trust, now), absences))
}

/// Routes the active step of a transition's document (new steps go straight to delegates).
/// Cheap when no absence is in force and nothing was routed: no roster is loaded.
pub(super) fn reroute_in(tx: &Tx<'_>, t: Transition, now: Timestamp) -> Result<Transition> {
    let Some(i) = t.document.active_step() else {
        return Ok(t);
    };
    let st = &t.document.steps[i];
    if st.routes.is_empty() && !st.overdue {
        let absences: Vec<Absence> = tx
            .get(&absences_key(&t.document.tenant))?
            .unwrap_or_default();
        if !absences.iter().any(|a| a.is_active(now)) {
            return Ok(t);
        }
    }
    let roster = roster(tx, &t.document.tenant, now)?;
    Ok(match t.document.clone().reroute(&roster, now) {
        Some(next) => t.then(next),
        None => t,
    })
}

/// What the scheduler did in one tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub overdue: usize,
    pub rerouted: usize,
}

/// What a document was checked for.
#[derive(Clone)]
enum Check {
    Routes,
    /// The deadline entry (`due/…` key) that led to the document.
    Deadline(String),
}

impl Paraph {
    /// One pass of the scheduler at the clock's current time: marks due steps overdue (and
    /// escalates them as their circuits say), and reroutes the documents of users whose
    /// absences started, ended or were cancelled since the previous pass. Idempotent.
    pub async fn tick(&self) -> Result<TickReport> {
        let _one_at_a_time = self.tick_lock.lock().await;
        let now = self.clock.now();
        let tenants = self
            .blocking(|s| Ok(s.scan_keys("tenant/", None, usize::MAX)?))
            .await?;
        let mut report = TickReport::default();
        for t in tenants {
            let tenant = TenantId::parse(&t)
                .map_err(|_| super::ServiceError::Internal(format!("bad tenant key {t}")))?;
            let (due, absences) = {
                let tenant = tenant.clone();
                self.blocking(move |s| {
                    let prefix = format!("due/{tenant}/");
                    let mut due = Vec::new();
                    for k in s.scan_keys(&prefix, None, usize::MAX)? {
                        let Some((at, id)) = k.split_once('/') else {
                            continue;
                        };
                        if at.parse::<i64>().map_or(true, |a| a > now.0) {
                            break;
                        }
                        if let Ok(doc) = DocumentId::parse(id) {
                            due.push((doc, format!("{prefix}{k}")));
                        }
                    }
                    let absences: Vec<Absence> = s.get(&absences_key(&tenant))?.unwrap_or_default();
                    Ok((due, absences))
                })
                .await?
            };
            for (id, entry) in due {
                if self
                    .check_document(&tenant, id, now, Check::Deadline(entry))
                    .await?
                {
                    report.overdue += 1;
                }
            }
            // The previous pass over this tenant, in memory: after a restart every recent
            // boundary counts as crossed once (rerouting is idempotent).
            let last = self
                .sched_last
                .lock()
                .ok()
                .and_then(|m| m.get(&tenant).copied())
                .unwrap_or(i64::MIN);
            let crossed: Vec<UserName> = absences
                .iter()
                .filter(|a| a.boundaries().iter().any(|b| last < b.0 && b.0 <= now.0))
                .map(|a| a.user.clone())
                .collect();
            if !crossed.is_empty() {
                report.rerouted += self.reroute_absentees(&tenant, &absences, now).await?;
            }
            if let Ok(mut m) = self.sched_last.lock() {
                m.insert(tenant.clone(), now.0);
            }
        }
        Ok(report)
    }

    /// Reroutes every in-progress document waiting on a user who has (or had, recently) an
    /// absence: any route starts from such a user, who keeps the step in his own inbox.
    async fn reroute_absentees(
        &self,
        tenant: &TenantId,
        absences: &[Absence],
        now: Timestamp,
    ) -> Result<usize> {
        let users: BTreeSet<UserName> = absences
            .iter()
            .filter(|a| a.cancelled_at.is_none_or(|c| c.0 + 86_400 >= now.0))
            .filter(|a| a.to.0 + 86_400 >= now.0)
            .map(|a| a.user.clone())
            .collect();
        let docs = {
            let tenant = tenant.clone();
            self.blocking(move |s| {
                let mut docs = BTreeSet::new();
                for u in users {
                    for k in s.scan_keys(&format!("inbox/{tenant}/{u}/"), None, usize::MAX)? {
                        if let Some(id) =
                            k.rsplit('/').next().and_then(|i| DocumentId::parse(i).ok())
                        {
                            docs.insert(id);
                        }
                    }
                }
                Ok(docs)
            })
            .await?
        };
        let mut n = 0;
        for id in docs {
            if self.check_document(tenant, id, now, Check::Routes).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reroutes (or marks overdue) one document in its own transaction; `true` if it changed.
    async fn check_document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        now: Timestamp,
        check: Check,
    ) -> Result<bool> {
        let tenant = tenant.clone();
        self.mutate(format!("{tenant}/_scheduler"), "Reroute", None, move |tx| {
            let Some(doc) = tx.get::<Document>(&format!("doc/{tenant}/{id}"))? else {
                return Ok((false, Vec::new()));
            };
            let roster = roster(tx, &tenant, now)?;
            let next = match &check {
                Check::Routes => doc.clone().reroute(&roster, now),
                Check::Deadline(entry) => match doc.clone().mark_overdue(&roster, now) {
                    Some(t) => Some(t),
                    None => {
                        // Not due: an entry that no longer matches the document is dropped.
                        if due_key(&doc).as_ref() != Some(entry) {
                            tx.remove(entry)?;
                        }
                        return Ok((false, Vec::new()));
                    }
                },
            };
            match next {
                Some(t) => {
                    let notices = record(tx, Some(&doc), &t)?;
                    Ok((true, notices))
                }
                None => Ok((false, Vec::new())),
            }
        })
        .await
    }

    /// Declares an absence: a user for himself, an admin (or the operator) for anyone.
    pub async fn declare_absence(
        &self,
        caller: &Caller,
        req: AbsenceRequest,
        idem: Option<Idem>,
    ) -> Result<Absence> {
        if req.user != caller.name && !caller.has(Role::Admin) {
            return Err(DomainError::Forbidden(
                "only an admin may declare another user's absence".into(),
            )
            .into());
        }
        let now = self.clock.now();
        let id = AbsenceId::from_random(random16()?);
        let tenant = caller.tenant.clone();
        let by = caller.name.clone();
        let absence = self
            .mutate(
                format!("{tenant}/{by}"),
                "DeclareAbsence",
                idem,
                move |tx| {
                    let key = absences_key(&tenant);
                    let mut all: Vec<Absence> = tx.get(&key)?.unwrap_or_default();
                    let users: Vec<User> =
                        tx.get(&format!("userlist/{tenant}"))?.unwrap_or_default();
                    let is_user = |u: &UserName| users.iter().any(|x| &x.name == u);
                    let a = Absence::declare(
                        id.clone(),
                        tenant.clone(),
                        req.clone(),
                        by.clone(),
                        &all,
                        &is_user,
                        now,
                    )?;
                    all.push(a.clone());
                    tx.put(&key, &all)?;
                    append_log(
                        tx,
                        &tenant,
                        now,
                        by.as_str(),
                        format!("absence/{}", a.id),
                        "absence_declared",
                        format!(
                            "{} absent from {} to {}, delegate {}, {}",
                            a.user, a.from.0, a.to.0, a.delegate, a.scope
                        ),
                    )?;
                    Ok((a, Vec::<Notice>::new()))
                },
            )
            .await?;
        self.after_absence_change(&absence.tenant, now).await?;
        Ok(absence)
    }

    /// Cancels an absence: the absent user, whoever declared it, or an admin.
    pub async fn cancel_absence(
        &self,
        caller: &Caller,
        id: AbsenceId,
        idem: Option<Idem>,
    ) -> Result<Absence> {
        let now = self.clock.now();
        let tenant = caller.tenant.clone();
        let c = caller.clone();
        let absence = self
            .mutate(
                format!("{tenant}/{}", caller.name),
                "CancelAbsence",
                idem,
                move |tx| {
                    let key = absences_key(&tenant);
                    let mut all: Vec<Absence> = tx.get(&key)?.unwrap_or_default();
                    let pos = all
                        .iter()
                        .position(|a| a.id == id)
                        .ok_or_else(|| DomainError::NotFound(format!("absence '{id}'")))?;
                    let a = &all[pos];
                    if a.user != c.name && a.declared_by != c.name && !c.has(Role::Admin) {
                        return Err(DomainError::Forbidden(
                            "only the absent user, whoever declared the absence or an admin may cancel it"
                                .into(),
                        )
                        .into());
                    }
                    let cancelled = a.clone().cancel(now)?;
                    all[pos] = cancelled.clone();
                    tx.put(&key, &all)?;
                    append_log(
                        tx,
                        &tenant,
                        now,
                        c.name.as_str(),
                        format!("absence/{id}"),
                        "absence_cancelled",
                        format!("{} is back", cancelled.user),
                    )?;
                    Ok((cancelled, Vec::<Notice>::new()))
                },
            )
            .await?;
        self.after_absence_change(&absence.tenant, now).await?;
        Ok(absence)
    }

    async fn after_absence_change(&self, tenant: &TenantId, now: Timestamp) -> Result<()> {
        let key = absences_key(tenant);
        let absences: Vec<Absence> = self
            .blocking(move |s| Ok(s.get(&key)?.unwrap_or_default()))
            .await?;
        self.reroute_absentees(tenant, &absences, now).await?;
        Ok(())
    }

    /// Absences the caller may see: his own and those he is the delegate of; admins and
    /// auditors see every one. Live ones only unless `include_past`.
    pub async fn list_absences(
        &self,
        caller: &Caller,
        user: Option<UserName>,
        include_past: bool,
    ) -> Result<Vec<Absence>> {
        let now = self.clock.now();
        let key = absences_key(&caller.tenant);
        let c = caller.clone();
        self.blocking(move |s| {
            let all: Vec<Absence> = s.get(&key)?.unwrap_or_default();
            Ok(all
                .into_iter()
                .filter(|a| c.oversees() || a.user == c.name || a.delegate == c.name)
                .filter(|a| user.as_ref().is_none_or(|u| &a.user == u))
                .filter(|a| include_past || a.is_live(now))
                .collect())
        })
        .await
    }

    /// An admin moves step `step` of a document from one actor to another, with a reason.
    pub async fn reassign(
        &self,
        caller: &Caller,
        id: DocumentId,
        r: Reassignment,
        idem: Option<Idem>,
    ) -> Result<Document> {
        caller.require(Role::Admin)?;
        let now = self.clock.now();
        let c = caller.clone();
        self.mutate(
            format!("{}/{}", caller.tenant, caller.name),
            "Reassign",
            idem,
            move |tx| {
                let before: Document = tx
                    .get(&format!("doc/{}/{id}", c.tenant))?
                    .ok_or_else(|| DomainError::NotFound(format!("document '{id}'")))?;
                let roster = roster(tx, &c.tenant, now)?;
                if !roster.members.contains_key(&r.to) {
                    return Err(
                        DomainError::invalid("to", format!("unknown user '{}'", r.to)).into(),
                    );
                }
                let t = before.clone().reassign(&r, &c.name, &roster, now)?;
                let notices = record(tx, Some(&before), &t)?;
                Ok((t.document, notices))
            },
        )
        .await
    }
}
