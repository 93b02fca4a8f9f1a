//! Absences, delegation routing, the scheduler's tick and reassignment.
//!
//! Owns where an open share of a step goes when its actor is absent or the step is overdue:
//! it loads the roster (users, signing levels from bound certificates and the trust policy
//! map, absences), asks the pure domain to reroute, and stores the result like any transition
//! (document, inbox and deadline indexes, log, notices). The rules themselves live in
//! `domain::absence` and `domain::document`; this module must not decide them.

use super::documents::record;
use super::trust::{trust_key, TrustSettings};
use super::{append_log, random16, Caller, Idem, Notice, Paraph, Result, ServiceError};
use crate::domain::{
    Absence, AbsenceId, AbsenceRequest, Document, DocumentId, DomainError, Member, Reassignment,
    RgsLevel, Role, Roster, TenantId, Timestamp, Transition, User, UserName,
};
use crate::store::{Reads, Store, Tx};
use std::collections::{BTreeMap, BTreeSet};

/// `absences/{t}`: the tenant's whole list, as older versions kept it (rewritten at each
/// declaration); moved to the records below when the store is opened.
fn old_list_key(tenant: &TenantId) -> String {
    format!("absences/{tenant}")
}

/// `absence/{t}/`: the tenant's absences, each under its id.
fn absences_prefix(tenant: &TenantId) -> String {
    format!("absence/{tenant}/")
}

/// `absence/{t}/{id}`: the absence itself.
fn absence_key(tenant: &TenantId, id: &AbsenceId) -> String {
    format!("{}{id}", absences_prefix(tenant))
}

/// An instant as it sorts in a key (`due_key` does the same).
fn key_time(t: Timestamp) -> String {
    format!("{:020}", t.0.max(0))
}

/// `abslive/{t}/`: `{to:020}/{id}`, empty, for every absence not cancelled, kept once it is
/// over: a scan from an instant on finds those not over then.
fn live_prefix(tenant: &TenantId) -> String {
    format!("abslive/{tenant}/")
}

/// `absuser/{t}/{user}/`: the same index for one user (his allowance, his overlaps).
fn user_live_prefix(tenant: &TenantId, user: &UserName) -> String {
    format!("absuser/{tenant}/{user}/")
}

/// `abscancel/{t}/`: `{cancelled_at:020}/{id}`, empty, for every cancelled absence.
fn cancelled_prefix(tenant: &TenantId) -> String {
    format!("abscancel/{tenant}/")
}

/// Stores absence `a`, new or changed, with its index entries: a few hundred bytes whatever
/// the number of absences stored before.
fn put_absence(tx: &mut Tx<'_>, a: &Absence) -> Result<()> {
    tx.put(&absence_key(&a.tenant, &a.id), a)?;
    let end = format!("{}/{}", key_time(a.to), a.id);
    let live = format!("{}{end}", live_prefix(&a.tenant));
    let user_live = format!("{}{end}", user_live_prefix(&a.tenant, &a.user));
    match a.cancelled_at {
        None => {
            tx.put_raw(&live, b"")?;
            tx.put_raw(&user_live, b"")?;
        }
        Some(at) => {
            tx.remove(&live)?;
            tx.remove(&user_live)?;
            let cancelled = format!("{}{}/{}", cancelled_prefix(&a.tenant), key_time(at), a.id);
            tx.put_raw(&cancelled, b"")?;
        }
    }
    Ok(())
}

/// The id at the end of an index key (`…/{id}`).
fn id_in(key: &str) -> Option<AbsenceId> {
    key.rsplit('/')
        .next()
        .and_then(|i| AbsenceId::parse(i).ok())
}

/// The live absences under a live index `prefix` (the tenant's or one user's), inside a
/// transaction.
fn live_in(tx: &Tx<'_>, tenant: &TenantId, prefix: &str, now: Timestamp) -> Result<Vec<Absence>> {
    let from = live_from(prefix, now);
    let mut out = Vec::new();
    for k in tx.scan_keys(prefix, &from, usize::MAX)? {
        let Some(id) = id_in(&k) else { continue };
        if let Some(a) = tx.get::<Absence>(&absence_key(tenant, &id))? {
            if a.is_live(now) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Where [`live_in`] starts under `prefix` at `now`.
fn live_from(prefix: &str, now: Timestamp) -> String {
    format!("{prefix}{}", key_time(Timestamp(now.0.saturating_add(1))))
}

/// What routing a step at `now` reads (see [`reroute_in`]): the tenant's live absences, said
/// before a mutation that may route runs (see [`Reads`]).
pub(super) fn routing_reads(reads: Reads, tenant: &TenantId, now: Timestamp) -> Reads {
    let prefix = live_prefix(tenant);
    let from = live_from(&prefix, now);
    reads.range(prefix, from)
}

/// The absences in `store` under index `prefix` whose key instant is at or after `since`.
fn indexed_since(
    s: &Store,
    tenant: &TenantId,
    prefix: &str,
    since: Timestamp,
) -> Result<Vec<Absence>> {
    // Keys after `{since - 1}` and its NUL: every `{t}/…` with `t >= since`.
    let after = key_time(Timestamp(since.0.saturating_sub(1)));
    let keys: Vec<String> = s
        .scan_keys(prefix, Some(&after), usize::MAX)?
        .iter()
        .filter_map(|k| id_in(k))
        .map(|id| absence_key(tenant, &id))
        .collect();
    // Read together: one query for them all on a database.
    Ok(s.get_many::<Absence>(&keys)?
        .into_iter()
        .flatten()
        .collect())
}

/// The absences that may still change where a document goes at `now`: not over a day ago and
/// not cancelled a day ago (see `reroute_absentees`), read outside any transaction.
fn recent_absences(s: &Store, tenant: &TenantId, now: Timestamp) -> Result<Vec<Absence>> {
    let day_ago = Timestamp(now.0.saturating_sub(DAY));
    let mut all = indexed_since(s, tenant, &live_prefix(tenant), day_ago)?;
    for a in indexed_since(s, tenant, &cancelled_prefix(tenant), day_ago)? {
        if !all.iter().any(|b| b.id == a.id) {
            all.push(a);
        }
    }
    Ok(all)
}

/// One day, in seconds: how long after its end an absence still reroutes its user's documents.
const DAY: i64 = 86_400;

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
    let absences = live_in(tx, tenant, &live_prefix(tenant), now)?;
    roster_with(tx, tenant, now, absences)
}

/// The roster with the tenant's live absences already read.
fn roster_with(
    tx: &Tx<'_>,
    tenant: &TenantId,
    now: Timestamp,
    absences: Vec<Absence>,
) -> Result<Roster> {
    let users: Vec<User> = tx.get(&format!("userlist/{tenant}"))?.unwrap_or_default();
    let trust: TrustSettings = tx.get(&trust_key(tenant))?.unwrap_or_default();
    Ok(Roster::new(members(users, &trust, now), absences))
}

/// Routes the active step of a transition's document (new steps go straight to delegates).
/// Cheap when no absence is live and nothing was routed: no roster is loaded.
pub(super) fn reroute_in(tx: &Tx<'_>, t: Transition, now: Timestamp) -> Result<Transition> {
    let Some(i) = t.document.active_step() else {
        return Ok(t);
    };
    let tenant = &t.document.tenant;
    let absences = live_in(tx, tenant, &live_prefix(tenant), now)?;
    let st = &t.document.steps[i];
    if st.routes.is_empty() && !st.overdue && !absences.iter().any(|a| a.is_active(now)) {
        return Ok(t);
    }
    let roster = roster_with(tx, tenant, now, absences)?;
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
                    let absences = recent_absences(s, &tenant, now)?;
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
            .filter(|a| a.cancelled_at.is_none_or(|c| c.0 + DAY >= now.0))
            .filter(|a| a.to.0 + DAY >= now.0)
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
        let cap = self.limits().max_live_absences_per_user;
        let tenant = caller.tenant.clone();
        let by = caller.name.clone();
        let absence = self
            .mutate(
                format!("{tenant}/{by}"),
                "DeclareAbsence",
                idem,
                move |tx| {
                    let users: Vec<User> =
                        tx.get(&format!("userlist/{tenant}"))?.unwrap_or_default();
                    let is_user = |u: &UserName| users.iter().any(|x| &x.name == u);
                    let mine = live_in(tx, &tenant, &user_live_prefix(&tenant, &req.user), now)?;
                    let a = Absence::declare(
                        id.clone(),
                        tenant.clone(),
                        req.clone(),
                        by.clone(),
                        &mine,
                        &is_user,
                        now,
                    )?;
                    if mine.len() >= cap {
                        return Err(ServiceError::TooLarge(format!(
                            "'{}' already has {} live absences, the most a user may have \
                             (setting max_live_absences_per_user = {cap}): cancel one, or wait \
                             for one to end",
                            a.user,
                            mine.len()
                        )));
                    }
                    put_absence(tx, &a)?;
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
                    let a: Absence = tx
                        .get(&absence_key(&tenant, &id))?
                        .ok_or_else(|| DomainError::NotFound(format!("absence '{id}'")))?;
                    if a.user != c.name && a.declared_by != c.name && !c.has(Role::Admin) {
                        return Err(DomainError::Forbidden(
                            "only the absent user, whoever declared the absence or an admin may cancel it"
                                .into(),
                        )
                        .into());
                    }
                    let cancelled = a.cancel(now)?;
                    put_absence(tx, &cancelled)?;
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
        let t = tenant.clone();
        let absences = self.blocking(move |s| recent_absences(s, &t, now)).await?;
        self.reroute_absentees(tenant, &absences, now).await?;
        Ok(())
    }

    /// Moves the absences older versions kept as one list per tenant (`absences/{t}`) to
    /// records of their own, one tenant per transaction; run when the store is opened, before
    /// any request. An absence already stored as a record is left as it is.
    pub fn migrate_absences_blocking(&self) -> Result<usize> {
        let tenants = self.store.scan_keys("absences/", None, usize::MAX)?;
        let mut moved = 0;
        for t in tenants {
            let tenant = TenantId::parse(&t)
                .map_err(|_| ServiceError::Internal(format!("bad absence list key {t}")))?;
            moved += self.store.transact_blocking(move |tx| {
                let key = old_list_key(&tenant);
                let list: Vec<Absence> = tx.get(&key)?.unwrap_or_default();
                let mut n = 0;
                for a in &list {
                    if !tx.exists(&absence_key(&a.tenant, &a.id))? {
                        put_absence(tx, a)?;
                        n += 1;
                    }
                }
                tx.remove(&key)?;
                Ok::<_, ServiceError>(n)
            })?;
        }
        if moved > 0 {
            tracing::info!(
                absences = moved,
                "moved absences from per-tenant lists to records of their own"
            );
        }
        Ok(moved)
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
        let c = caller.clone();
        self.blocking(move |s| {
            let tenant = &c.tenant;
            let mut all: Vec<Absence> = if include_past {
                s.scan::<Absence>(&absences_prefix(tenant), None, usize::MAX)?
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect()
            } else {
                indexed_since(
                    s,
                    tenant,
                    &live_prefix(tenant),
                    Timestamp(now.0.saturating_add(1)),
                )?
            };
            all.sort_by(|a, b| (a.declared_at, &a.id).cmp(&(b.declared_at, &b.id)));
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
