//! Documents (dossiers) and the workflow state machine.
//!
//! A document is created by [`Document::submit`] and changed only by the transitions below, each
//! of which consumes the document and returns the next one with the events it produced. Nothing
//! leaves a terminal state (COMPLETED, REJECTED, WITHDRAWN).

use super::{
    absence::{Roster, Route, RouteKind, StepNeeds},
    circuit::{ActorRef, Circuit, Escalate, Mode, PdfOptions, RgsLevel, StepDef, StepKind},
    AbsenceId, Condition, DocumentId, DomainError, Role, TenantId, Timestamp, UserName,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Limits on what a submitter may attach.
pub const MAX_TITLE_CHARS: usize = 300;
pub const MAX_METADATA_ENTRIES: usize = 64;
pub const MAX_METADATA_KEY_BYTES: usize = 64;
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
pub const MAX_REASON_CHARS: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    Mandate,
    Contract,
    Other,
}

impl DocumentType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::Mandate => "mandate",
            DocumentType::Contract => "contract",
            DocumentType::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocState {
    InProgress,
    Completed,
    Rejected,
    Withdrawn,
}

impl DocState {
    pub fn is_terminal(self) -> bool {
        self != DocState::InProgress
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DocState::InProgress => "in_progress",
            DocState::Completed => "completed",
            DocState::Rejected => "rejected",
            DocState::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Active,
    Done,
    Skipped,
    Rejected,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Approved,
    Rejected,
    Signed,
    Sealed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub actor: UserName,
    pub kind: ActionKind,
    pub reason: Option<String>,
    pub at: Timestamp,
    pub on_behalf_of: Option<UserName>,
    /// The absence of `on_behalf_of` this action relied on, when it was a delegation.
    #[serde(default)]
    pub absence: Option<AbsenceId>,
    /// How the actor came to act for someone else (delegation, escalation, overdue).
    #[serde(default)]
    pub route: Option<RouteKind>,
}

/// An admin's move of one step from one actor to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    pub step: u32,
    pub from: UserName,
    pub to: UserName,
    pub reason: String,
}

/// Who acts on a step, and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acting {
    pub step: usize,
    pub actor: UserName,
    /// The step's actor whose share is being done, when it is not `actor` himself.
    pub on_behalf_of: Option<UserName>,
    pub absence: Option<AbsenceId>,
    pub route: Option<RouteKind>,
}

impl Acting {
    fn action(&self, kind: ActionKind, reason: Option<String>, at: Timestamp) -> Action {
        Action {
            actor: self.actor.clone(),
            kind,
            reason,
            at,
            on_behalf_of: self.on_behalf_of.clone(),
            absence: self.absence.clone(),
            route: self.route,
        }
    }

    /// `" on behalf of X (delegation, absence ID)"`, or empty.
    pub fn describe(&self) -> String {
        match &self.on_behalf_of {
            None => String::new(),
            Some(o) => {
                let how = self.route.map(RouteKind::as_str).unwrap_or("delegation");
                match &self.absence {
                    Some(a) => format!("on behalf of {o} ({how}, absence {a})"),
                    None => format!("on behalf of {o} ({how})"),
                }
            }
        }
    }
}

/// One step of one document: the circuit's step definition with its resolved actors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInstance {
    pub kind: StepKind,
    pub mode: Mode,
    pub condition: Option<Condition>,
    pub level: Option<RgsLevel>,
    pub deadline_secs: Option<u64>,
    pub fallback: Option<UserName>,
    pub actors: Vec<UserName>,
    pub status: StepStatus,
    pub activated_at: Option<Timestamp>,
    pub due_at: Option<Timestamp>,
    pub actions: Vec<Action>,
    /// What happens when the step is overdue.
    #[serde(default)]
    pub escalate: Escalate,
    /// Set once the step has passed its deadline.
    #[serde(default)]
    pub overdue: bool,
    /// Where the shares of actors who cannot act now go (absences, escalations), by actor.
    #[serde(default)]
    pub routes: BTreeMap<UserName, Route>,
    /// The role a PES signature of this step claims; `None`: the tenant's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_role: Option<String>,
    /// How the step's signatures show in a PDF.
    #[serde(default, skip_serializing_if = "PdfOptions::is_default")]
    pub pdf: PdfOptions,
}

impl StepInstance {
    /// Actors who approved or signed.
    fn agreements(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| {
                matches!(
                    a.kind,
                    ActionKind::Approved | ActionKind::Signed | ActionKind::Sealed
                )
            })
            .count()
    }

    /// Whether the step's mode is met by its actions.
    pub fn mode_met(&self) -> bool {
        let n = self.agreements();
        match self.mode {
            Mode::All => n >= self.actors.len().max(1),
            Mode::Any => n >= 1,
            Mode::Quorum(k) => n >= k as usize,
        }
    }

    /// Whether `actor`'s share of the step is done (by him or by someone on his behalf).
    pub fn has_acted(&self, actor: &UserName) -> bool {
        self.actions
            .iter()
            .any(|a| a.on_behalf_of.as_ref().unwrap_or(&a.actor) == actor)
    }

    /// Actors whose share is still expected while the step is active.
    pub fn open_shares(&self) -> Vec<UserName> {
        if self.status != StepStatus::Active {
            return Vec::new();
        }
        self.actors
            .iter()
            .filter(|u| !self.has_acted(u))
            .cloned()
            .collect()
    }

    /// Everyone who may act now: the actors with an open share (an absent actor may still act
    /// himself) and whoever their shares are routed to.
    pub fn waiting_for(&self) -> Vec<UserName> {
        let mut v = Vec::new();
        for a in self.open_shares() {
            if let Some(r) = self.routes.get(&a) {
                v.extend(r.to.iter().cloned());
            }
            v.push(a);
        }
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|u| seen.insert(u.clone()));
        v
    }

    /// The open share `user` would act for, if he may act at all: his own first, then the
    /// first one routed to him.
    pub fn share_of(&self, user: &UserName) -> Option<(UserName, Option<&Route>)> {
        let open = self.open_shares();
        if open.contains(user) {
            return Some((user.clone(), None));
        }
        open.into_iter().find_map(|a| {
            let r = self.routes.get(&a)?;
            r.to.contains(user).then_some((a.clone(), Some(r)))
        })
    }

    /// The open shares routed to `user` (for his inbox).
    pub fn routed_to(&self, user: &UserName) -> Vec<UserName> {
        self.open_shares()
            .into_iter()
            .filter(|a| self.routes.get(a).is_some_and(|r| r.to.contains(user)))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef {
    /// Lowercase hex SHA-256 of the content, which is stored once under this digest.
    pub sha256: String,
    pub size: u64,
    pub file_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Submitted,
    StepActivated,
    StepSkipped,
    Approved,
    Signed,
    Sealed,
    StepCompleted,
    Rejected,
    Withdrawn,
    Completed,
    /// An absent actor's share went to a delegate.
    Delegated,
    /// A share came back to its actor (absence over or cancelled).
    Returned,
    /// Nobody present can act (or the step is overdue and escalates): an alert to the fallback
    /// or the admins.
    Escalated,
    /// The step passed its deadline.
    Overdue,
    /// An admin moved a step from one actor to another.
    Reassigned,
}

impl EventKind {
    /// The state a document is left in by an event of this kind.
    pub fn state_after(self) -> DocState {
        match self {
            EventKind::Completed => DocState::Completed,
            EventKind::Rejected => DocState::Rejected,
            EventKind::Withdrawn => DocState::Withdrawn,
            _ => DocState::InProgress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::StepActivated => "step_activated",
            EventKind::StepSkipped => "step_skipped",
            EventKind::Approved => "approved",
            EventKind::Signed => "signed",
            EventKind::Sealed => "sealed",
            EventKind::StepCompleted => "step_completed",
            EventKind::Rejected => "rejected",
            EventKind::Withdrawn => "withdrawn",
            EventKind::Completed => "completed",
            EventKind::Delegated => "delegated",
            EventKind::Returned => "returned",
            EventKind::Escalated => "escalated",
            EventKind::Overdue => "overdue",
            EventKind::Reassigned => "reassigned",
        }
    }
}

/// A change to a document, kept in its history and published to the people it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the document's history, from 0.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub actor: Option<UserName>,
    pub step: Option<u32>,
    pub detail: String,
    /// The actor whose share `actor` acted for, or whose share was routed.
    #[serde(default)]
    pub on_behalf_of: Option<UserName>,
    /// For `signed` and `sealed`: the index of the stored signature.
    #[serde(default)]
    pub signature: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocumentId,
    pub tenant: TenantId,
    pub doc_type: DocumentType,
    pub title: String,
    pub metadata: BTreeMap<String, String>,
    pub content: ContentRef,
    pub submitter: UserName,
    pub circuit: (super::CircuitName, u32),
    pub state: DocState,
    pub steps: Vec<StepInstance>,
    pub history: Vec<Event>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How it is signed (resolved at submission: never `Auto`; CAdES for older documents).
    #[serde(default = "SignatureFormat::stored_default")]
    pub format: SignatureFormat,
    /// The signed revisions of the content, oldest first (enveloped formats); the latest is
    /// what the document reads as now. `content` stays the submitted one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<ContentRef>,
}

/// How a document's certificate signatures are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureFormat {
    /// Chosen from the content at submission.
    #[default]
    Auto,
    /// Detached CMS (`.p7s`).
    Cades,
    /// Signatures inside the PDF (reserved).
    Pades,
    /// Enveloped XAdES-EPES on each bordereau of a PES V2 flow.
    XadesPes,
}

impl SignatureFormat {
    fn stored_default() -> Self {
        SignatureFormat::Cades
    }

    pub fn parse(s: &str) -> Result<SignatureFormat, DomainError> {
        match s {
            "" | "auto" => Ok(SignatureFormat::Auto),
            "cades" => Ok(SignatureFormat::Cades),
            "pades" => Ok(SignatureFormat::Pades),
            "xades-pes" => Ok(SignatureFormat::XadesPes),
            other => Err(DomainError::invalid(
                "signature_format",
                format!("'{other}' is not one of auto, cades, pades, xades-pes"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::Auto => "auto",
            SignatureFormat::Cades => "cades",
            SignatureFormat::Pades => "pades",
            SignatureFormat::XadesPes => "xades-pes",
        }
    }

    /// Whether its signatures go inside the content, each making a new content revision
    /// (PES, PAdES), rather than beside it (CAdES).
    pub fn signs_inside(self) -> bool {
        matches!(self, SignatureFormat::Pades | SignatureFormat::XadesPes)
    }

    /// Checks that a circuit fits the format: an enveloped PES signature is made once, by one
    /// ordonnateur, so a PES circuit has exactly one signature step and no seal step.
    pub fn check_circuit(self, circuit: &super::Circuit) -> Result<(), DomainError> {
        if self != SignatureFormat::XadesPes {
            return Ok(());
        }
        if let Some(i) = circuit
            .steps
            .iter()
            .position(|s| s.kind == super::StepKind::Seal)
        {
            return Err(DomainError::invalid(
                "circuit",
                format!(
                    "step {i} of circuit '{}' is a seal step: a PES flow is signed by one ordonnateur only",
                    circuit.name
                ),
            ));
        }
        let signing: Vec<usize> = circuit
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == super::StepKind::Signature)
            .map(|(i, _)| i)
            .collect();
        match signing.as_slice() {
            [_] => Ok(()),
            [] => Err(DomainError::invalid(
                "circuit",
                format!(
                    "circuit '{}' has no signature step: a PES flow needs the ordonnateur's",
                    circuit.name
                ),
            )),
            [_, second, ..] => Err(DomainError::invalid(
                "circuit",
                format!(
                    "step {second} of circuit '{}' is a second signature step: a PES flow has exactly one (the ordonnateur's)",
                    circuit.name
                ),
            )),
        }
    }
}

impl ContentRef {
    /// The storage digest of a revision.
    pub fn digest(&self) -> &str {
        &self.sha256
    }
}

/// A document as submitted, before it enters its circuit.
#[derive(Clone, Debug)]
pub struct NewDocument {
    pub id: DocumentId,
    pub tenant: TenantId,
    pub doc_type: DocumentType,
    pub title: String,
    pub metadata: BTreeMap<String, String>,
    pub content: ContentRef,
    pub submitter: UserName,
}

/// The result of a transition: the next document and the events appended to its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub document: Document,
    pub events: Vec<Event>,
}

/// Checks a title: trimmed, 1..=300 characters, no control characters.
pub fn check_title(title: &str) -> Result<String, DomainError> {
    let t = title.trim();
    if t.is_empty() {
        return Err(DomainError::invalid("title", "must not be empty"));
    }
    if t.chars().count() > MAX_TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "title",
            format!("at most {MAX_TITLE_CHARS} characters, no control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// Checks metadata: at most 64 entries, keys like identifiers, values at most 1 KiB.
pub fn check_metadata(meta: &BTreeMap<String, String>) -> Result<(), DomainError> {
    if meta.len() > MAX_METADATA_ENTRIES {
        return Err(DomainError::invalid(
            "metadata",
            format!("at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (k, v) in meta {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_METADATA_KEY_BYTES
            && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !key_ok {
            return Err(DomainError::invalid(
                "metadata",
                format!("key '{}' must be 1 to {MAX_METADATA_KEY_BYTES} characters of A-Z a-z 0-9 _ . - starting with a letter", k.chars().take(80).collect::<String>()),
            ));
        }
        if v.len() > MAX_METADATA_VALUE_BYTES || v.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "metadata",
                format!("value of '{k}' must be at most {MAX_METADATA_VALUE_BYTES} bytes without control characters"),
            ));
        }
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<String, DomainError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(DomainError::invalid("reason", "a reason is required"));
    }
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(DomainError::invalid(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(r.to_owned())
}

impl Document {
    /// Submits a document into `circuit` (the version pinned from now on). Role actors are
    /// resolved with `members` (the officers holding a role). Every step condition is evaluated
    /// against the metadata now, so that a submission whose metadata cannot decide a condition is
    /// refused instead of being skipped silently (fail closed).
    pub fn submit(
        new: NewDocument,
        circuit: &Circuit,
        members: &dyn Fn(Role) -> Vec<UserName>,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let title = check_title(&new.title)?;
        check_metadata(&new.metadata)?;
        let mut steps = Vec::with_capacity(circuit.steps.len());
        for (i, def) in circuit.steps.iter().enumerate() {
            if let Some(c) = &def.condition {
                c.evaluate(&new.metadata).map_err(|e| {
                    DomainError::invalid("metadata", format!("step {i} condition '{c}': {e}"))
                })?;
            }
            steps.push(instantiate(i, def, circuit.fallback.as_ref(), members)?);
        }
        let doc = Document {
            id: new.id,
            tenant: new.tenant,
            doc_type: new.doc_type,
            title,
            metadata: new.metadata,
            content: new.content,
            submitter: new.submitter.clone(),
            circuit: (circuit.name.clone(), circuit.version),
            state: DocState::InProgress,
            steps,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
            format: SignatureFormat::Cades,
            revisions: Vec::new(),
        };
        let mut tx = Builder::new(doc, now);
        tx.event(
            EventKind::Submitted,
            Some(new.submitter),
            None,
            format!("circuit {} v{}", circuit.name, circuit.version),
        );
        tx.advance()?;
        Ok(tx.finish())
    }

    /// [`Document::submit`] in a resolved signature format, which the circuit must fit.
    pub fn submit_as(
        new: NewDocument,
        format: SignatureFormat,
        circuit: &Circuit,
        members: &dyn Fn(Role) -> Vec<UserName>,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        format.check_circuit(circuit)?;
        let mut t = Document::submit(new, circuit, members, now)?;
        t.document.format = format;
        Ok(t)
    }

    /// The content as it reads now: the latest signed revision, else the submitted one.
    pub fn current_content(&self) -> &ContentRef {
        self.revisions.last().unwrap_or(&self.content)
    }

    /// The index of the active step, if any.
    pub fn active_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.status == StepStatus::Active)
    }

    /// Who is expected to act now.
    pub fn waiting_for(&self) -> Vec<UserName> {
        self.active_step()
            .map(|i| self.steps[i].waiting_for())
            .unwrap_or_default()
    }

    /// Everyone a change of this document concerns: the submitter, every actor of a step that
    /// has been reached, and whoever their shares were routed to.
    pub fn concerned(&self) -> Vec<UserName> {
        let mut v = vec![self.submitter.clone()];
        for s in &self.steps {
            if s.status != StepStatus::Pending {
                v.extend(s.actors.iter().cloned());
                for r in s.routes.values() {
                    v.extend(r.to.iter().cloned());
                }
                v.extend(s.actions.iter().map(|a| a.actor.clone()));
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Checks that `actor` may act on `step` (or the active step) now: as one of its actors
    /// with an open share, or for an actor whose share is routed to him (delegation,
    /// escalation). Returns who acts for whom.
    pub fn acting(&self, actor: &UserName, step: Option<u32>) -> Result<Acting, DomainError> {
        if self.state.is_terminal() {
            return Err(DomainError::WrongState(format!(
                "document is {}",
                self.state.as_str()
            )));
        }
        let active = self
            .active_step()
            .ok_or_else(|| DomainError::WrongState("no step is active".into()))?;
        if let Some(s) = step {
            if s as usize >= self.steps.len() {
                return Err(DomainError::invalid(
                    "step",
                    format!("document has {} steps", self.steps.len()),
                ));
            }
            if s as usize != active {
                return Err(DomainError::WrongState(format!(
                    "step {s} is not active (step {active} is)"
                )));
            }
        }
        let st = &self.steps[active];
        if let Some((share, route)) = st.share_of(actor) {
            return Ok(match route {
                None => Acting {
                    step: active,
                    actor: actor.clone(),
                    on_behalf_of: None,
                    absence: None,
                    route: None,
                },
                Some(r) => Acting {
                    step: active,
                    actor: actor.clone(),
                    on_behalf_of: Some(share),
                    absence: r.absence.clone(),
                    route: Some(r.kind),
                },
            });
        }
        if st.actors.contains(actor) {
            return Err(DomainError::WrongState(format!(
                "'{actor}' has already acted on step {active}"
            )));
        }
        if st.actions.iter().any(|a| &a.actor == actor) {
            return Err(DomainError::WrongState(format!(
                "the share '{actor}' acted for on step {active} is done"
            )));
        }
        if let Some(early) = self.not_yet_active_for(actor) {
            return Err(early);
        }
        Err(DomainError::Forbidden(format!(
            "'{actor}' is not an actor of step {active}"
        )))
    }

    /// For an actor of a step not reached yet (and of no step reached so far): the refusal
    /// that says his step is not active yet. `None` for anyone else.
    pub fn not_yet_active_for(&self, actor: &UserName) -> Option<DomainError> {
        if self.state.is_terminal() {
            return None;
        }
        let (i, st) = self
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.status == StepStatus::Pending && s.actors.contains(actor))?;
        let now = match self.active_step() {
            Some(a) => format!(" (step {a}, {}, is active)", self.steps[a].kind.as_str()),
            None => String::new(),
        };
        Some(DomainError::WrongState(format!(
            "your step ({i}, {}) is not active yet{now}",
            st.kind.as_str()
        )))
    }

    /// A visa: `actor` approves the active step.
    pub fn approve(
        self,
        actor: &UserName,
        step: Option<u32>,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let who = self.acting(actor, step)?;
        let i = who.step;
        if self.steps[i].kind != StepKind::Visa {
            return Err(DomainError::WrongState(match self.steps[i].kind {
                StepKind::Signature => {
                    format!("step {i} is a signature step, not a visa: sign it with `paraph sign`")
                }
                _ => format!("step {i} is a seal step, not a visa: the server applies it"),
            }));
        }
        let comment = match comment.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => Some(check_reason(c).map_err(|_| {
                DomainError::invalid("comment", format!("at most {MAX_REASON_CHARS} characters"))
            })?),
            _ => None,
        };
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i]
            .actions
            .push(who.action(ActionKind::Approved, comment.clone(), now));
        let detail = join_detail(comment.unwrap_or_default(), who.describe());
        tx.event_for(
            EventKind::Approved,
            Some(actor.clone()),
            Some(i),
            detail,
            who.on_behalf_of.clone(),
        );
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// The signer signs the active SIGNATURE step (his certificate signature was verified and
    /// stored by the caller); `who` comes from [`Document::signable_step`].
    pub fn sign(
        self,
        who: &Acting,
        detail: String,
        signature: u32,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        // Re-check against the current state: the share may have been done meanwhile.
        let again = self.acting(&who.actor, Some(who.step as u32))?;
        if &again != who {
            return Err(DomainError::WrongState(format!(
                "step {} changed since the signature was prepared",
                who.step
            )));
        }
        let i = who.step;
        if self.steps[i].kind != StepKind::Signature {
            return Err(DomainError::WrongState(format!(
                "step {i} is not a signature step"
            )));
        }
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i]
            .actions
            .push(who.action(ActionKind::Signed, None, now));
        tx.event_for(
            EventKind::Signed,
            Some(who.actor.clone()),
            Some(i),
            join_detail(detail, who.describe()),
            who.on_behalf_of.clone(),
        );
        tx.tag_signature(signature);
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// Whether the active step is a SEAL step, which the server applies itself.
    pub fn awaits_seal(&self) -> Option<usize> {
        self.active_step()
            .filter(|i| self.steps[*i].kind == StepKind::Seal)
    }

    /// The server applies the organisation's seal on the active SEAL step.
    pub fn seal(
        self,
        detail: String,
        signature: u32,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let i = self
            .awaits_seal()
            .ok_or_else(|| DomainError::WrongState("no seal step is active".into()))?;
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i].actions.push(Action {
            actor: UserName::seal(),
            kind: ActionKind::Sealed,
            reason: None,
            at: now,
            on_behalf_of: None,
            absence: None,
            route: None,
        });
        tx.event(EventKind::Sealed, None, Some(i), detail);
        tx.tag_signature(signature);
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// Checks that `actor` may sign `step` now; returns who signs for whom and the step's
    /// required level.
    pub fn signable_step(
        &self,
        actor: &UserName,
        step: Option<u32>,
    ) -> Result<(Acting, Option<super::RgsLevel>), DomainError> {
        let who = self.acting(actor, step)?;
        let i = who.step;
        if self.steps[i].kind != StepKind::Signature {
            return Err(DomainError::WrongState(format!(
                "step {i} is not a signature step"
            )));
        }
        let level = self.steps[i].level;
        Ok((who, level))
    }

    /// `actor` rejects the document at the active step: the circuit ends.
    pub fn reject(
        self,
        actor: &UserName,
        step: Option<u32>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let who = self.acting(actor, step)?;
        let i = who.step;
        let reason = check_reason(reason)?;
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i]
            .actions
            .push(who.action(ActionKind::Rejected, Some(reason.clone()), now));
        tx.doc.steps[i].status = StepStatus::Rejected;
        tx.cancel_pending();
        tx.doc.state = DocState::Rejected;
        tx.event_for(
            EventKind::Rejected,
            Some(actor.clone()),
            Some(i),
            join_detail(reason, who.describe()),
            who.on_behalf_of.clone(),
        );
        Ok(tx.finish())
    }

    /// What the active step needs of whoever acts on it.
    fn needs(&self, i: usize) -> StepNeeds<'_> {
        let st = &self.steps[i];
        StepNeeds {
            kind: st.kind,
            level: st.level,
            doc_type: self.doc_type,
            circuit: &self.circuit.0,
            fallback: st.fallback.as_ref(),
        }
    }

    /// Recomputes where the open shares of the active step go at `now` (absences starting or
    /// ending, delegates leaving, an overdue step escalating) and records each change as an
    /// event: delegated, escalated (an alert), returned. `None` when nothing changes.
    pub fn reroute(self, roster: &Roster, now: Timestamp) -> Option<Transition> {
        let i = self.active_step()?;
        if self.steps[i].kind == StepKind::Seal {
            return None;
        }
        let mut changes: Vec<(UserName, Option<Route>)> = Vec::new();
        {
            let st = &self.steps[i];
            let needs = self.needs(i);
            let open = st.open_shares();
            for a in &open {
                let mut route = roster.route(a, &needs, now);
                if route.is_none() && st.overdue && st.escalate == Escalate::Fallback {
                    route = Some(roster.escalation(
                        a,
                        &needs,
                        now,
                        RouteKind::Overdue,
                        None,
                        Vec::new(),
                        "the step is overdue".into(),
                    ));
                }
                if st.routes.get(a) != route.as_ref() {
                    changes.push((a.clone(), route));
                }
            }
            for a in st.routes.keys() {
                if !open.contains(a) && !st.has_acted(a) {
                    changes.push((a.clone(), None));
                }
            }
        }
        if changes.is_empty() {
            return None;
        }
        let mut tx = Builder::new(self, now);
        for (actor, route) in changes {
            match route {
                Some(r) => {
                    let (kind, detail) = match r.kind {
                        RouteKind::Delegation => (
                            EventKind::Delegated,
                            format!(
                                "to {} (absence {}, chain {})",
                                names(&r.to),
                                r.absence.as_ref().map(AbsenceId::as_str).unwrap_or("-"),
                                names(&r.chain)
                            ),
                        ),
                        RouteKind::Escalation => (
                            EventKind::Escalated,
                            format!(
                                "alert: nobody present can act ({}); to {}",
                                r.reason,
                                names(&r.to)
                            ),
                        ),
                        RouteKind::Overdue => (
                            EventKind::Escalated,
                            format!("alert: the step is overdue; to {}", names(&r.to)),
                        ),
                    };
                    tx.doc.steps[i].routes.insert(actor.clone(), r);
                    tx.event_for(kind, None, Some(i), detail, Some(actor));
                }
                None => {
                    tx.doc.steps[i].routes.remove(&actor);
                    tx.event_for(
                        EventKind::Returned,
                        None,
                        Some(i),
                        format!("back to {actor}"),
                        Some(actor),
                    );
                }
            }
        }
        Some(tx.finish())
    }

    /// Marks the active step overdue once `now` reaches its due time, then reroutes it (a step
    /// whose circuit says `escalate = "fallback"` goes to the fallback too). `None` when the
    /// step is not due or already overdue.
    pub fn mark_overdue(self, roster: &Roster, now: Timestamp) -> Option<Transition> {
        let i = self.active_step()?;
        let st = &self.steps[i];
        let due = st.due_at?;
        if st.overdue || now < due || st.kind == StepKind::Seal {
            return None;
        }
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i].overdue = true;
        let waiting = names(&tx.doc.steps[i].waiting_for());
        tx.event(
            EventKind::Overdue,
            None,
            Some(i),
            format!("deadline passed; waiting for {waiting}"),
        );
        let t = tx.finish();
        Some(match t.document.clone().reroute(roster, now) {
            Some(more) => t.then(more),
            None => t,
        })
    }

    /// An admin moves step `step` from actor `from` (who has not acted) to `to` (who must be
    /// able to perform it; checked by the caller with the roster).
    pub fn reassign(
        self,
        r: &Reassignment,
        by: &UserName,
        roster: &Roster,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let (step, from, to, reason) = (r.step, &r.from, &r.to, r.reason.as_str());
        if self.state.is_terminal() {
            return Err(DomainError::WrongState(format!(
                "document is {}",
                self.state.as_str()
            )));
        }
        let i = step as usize;
        let st = self.steps.get(i).ok_or_else(|| {
            DomainError::invalid("step", format!("document has {} steps", self.steps.len()))
        })?;
        if !matches!(st.status, StepStatus::Active | StepStatus::Pending) {
            return Err(DomainError::WrongState(format!("step {i} is over")));
        }
        if st.kind == StepKind::Seal {
            return Err(DomainError::WrongState(format!(
                "step {i} is a seal step, applied by the server"
            )));
        }
        if !st.actors.contains(from) {
            return Err(DomainError::invalid(
                "from",
                format!("'{from}' is not an actor of step {i}"),
            ));
        }
        if st.has_acted(from) {
            return Err(DomainError::WrongState(format!(
                "'{from}' has already acted on step {i}"
            )));
        }
        if st.actors.contains(to) {
            return Err(DomainError::invalid(
                "to",
                format!("'{to}' is already an actor of step {i}"),
            ));
        }
        if !roster.can_perform(to, &self.needs(i)) {
            return Err(DomainError::WrongState(format!(
                "'{to}' cannot perform step {i} (an officer{} is needed)",
                match st.level {
                    Some(l) if st.kind == StepKind::Signature =>
                        format!(" with a bound certificate of level {}", l.get()),
                    _ => String::new(),
                }
            )));
        }
        let reason = check_reason(reason)?;
        let mut tx = Builder::new(self, now);
        let st = &mut tx.doc.steps[i];
        for a in st.actors.iter_mut() {
            if a == from {
                *a = to.clone();
            }
        }
        st.routes.remove(from);
        tx.event_for(
            EventKind::Reassigned,
            Some(by.clone()),
            Some(i),
            format!("from {from} to {to}: {reason}"),
            Some(from.clone()),
        );
        let t = tx.finish();
        Ok(match t.document.clone().reroute(roster, now) {
            Some(more) => t.then(more),
            None => t,
        })
    }

    /// The submitter withdraws his document while it is in progress.
    pub fn withdraw(
        self,
        actor: &UserName,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        if &self.submitter != actor {
            return Err(DomainError::Forbidden(
                "only the submitter may withdraw a document".into(),
            ));
        }
        if self.state.is_terminal() {
            return Err(DomainError::WrongState(format!(
                "document is {}",
                self.state.as_str()
            )));
        }
        let reason = match reason.trim() {
            "" => String::new(),
            r => check_reason(r)?,
        };
        let mut tx = Builder::new(self, now);
        if let Some(i) = tx.doc.active_step() {
            tx.doc.steps[i].status = StepStatus::Cancelled;
        }
        tx.cancel_pending();
        tx.doc.state = DocState::Withdrawn;
        tx.event(EventKind::Withdrawn, Some(actor.clone()), None, reason);
        Ok(tx.finish())
    }
}

impl Transition {
    /// This transition followed by `next` (which must start from this one's document).
    pub fn then(mut self, next: Transition) -> Transition {
        self.events.extend(next.events);
        self.document = next.document;
        self
    }
}

fn names(v: &[UserName]) -> String {
    if v.is_empty() {
        return "nobody".into();
    }
    v.iter()
        .map(UserName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_detail(a: String, b: String) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a,
        (true, false) => b,
        (false, false) => format!("{a}; {b}"),
    }
}

fn instantiate(
    i: usize,
    def: &StepDef,
    circuit_fallback: Option<&UserName>,
    members: &dyn Fn(Role) -> Vec<UserName>,
) -> Result<StepInstance, DomainError> {
    let mut actors: Vec<UserName> = Vec::new();
    for a in &def.actors {
        match a {
            ActorRef::User(u) => actors.push(u.clone()),
            ActorRef::Role(r) => actors.extend(members(*r)),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    actors.retain(|u| seen.insert(u.clone()));
    if def.kind != StepKind::Seal {
        if actors.is_empty() {
            return Err(DomainError::WrongState(format!(
                "step {i} has no actor: its roles have no officers"
            )));
        }
        if let Mode::Quorum(k) = def.mode {
            if k as usize > actors.len() {
                return Err(DomainError::WrongState(format!(
                    "step {i} needs a quorum of {k} but has {} actors",
                    actors.len()
                )));
            }
        }
    }
    Ok(StepInstance {
        kind: def.kind,
        mode: def.mode,
        condition: def.condition.clone(),
        level: def.level,
        deadline_secs: def.deadline_secs,
        fallback: def.fallback.clone().or_else(|| circuit_fallback.cloned()),
        actors,
        status: StepStatus::Pending,
        activated_at: None,
        due_at: None,
        actions: Vec::new(),
        escalate: def.escalate,
        overdue: false,
        routes: BTreeMap::new(),
        claimed_role: def.claimed_role.clone(),
        pdf: def.pdf.clone(),
    })
}

/// Accumulates one transition's changes and events.
struct Builder {
    doc: Document,
    events: Vec<Event>,
    now: Timestamp,
}

impl Builder {
    fn new(doc: Document, now: Timestamp) -> Builder {
        Builder {
            doc,
            events: Vec::new(),
            now,
        }
    }

    fn event(
        &mut self,
        kind: EventKind,
        actor: Option<UserName>,
        step: Option<usize>,
        detail: String,
    ) {
        self.event_for(kind, actor, step, detail, None)
    }

    fn event_for(
        &mut self,
        kind: EventKind,
        actor: Option<UserName>,
        step: Option<usize>,
        detail: String,
        on_behalf_of: Option<UserName>,
    ) {
        let ev = Event {
            seq: self.doc.history.len() as u64,
            at: self.now,
            kind,
            actor,
            step: step.map(|s| s as u32),
            detail,
            on_behalf_of,
            signature: None,
        };
        self.doc.history.push(ev.clone());
        self.events.push(ev);
    }

    /// Marks the last event as the one that stored signature `index`.
    fn tag_signature(&mut self, index: u32) {
        if let (Some(h), Some(e)) = (self.doc.history.last_mut(), self.events.last_mut()) {
            h.signature = Some(index);
            e.signature = Some(index);
        }
    }

    fn cancel_pending(&mut self) {
        for s in &mut self.doc.steps {
            if s.status == StepStatus::Pending {
                s.status = StepStatus::Cancelled;
            }
        }
    }

    fn close_step_if_met(&mut self, i: usize) -> Result<(), DomainError> {
        if self.doc.steps[i].mode_met() {
            self.doc.steps[i].status = StepStatus::Done;
            self.event(EventKind::StepCompleted, None, Some(i), String::new());
            self.advance()?;
        }
        Ok(())
    }

    /// Activates the next step whose condition holds, skipping the others; completes the
    /// document when no step is left.
    fn advance(&mut self) -> Result<(), DomainError> {
        while let Some(i) = self
            .doc
            .steps
            .iter()
            .position(|s| s.status == StepStatus::Pending)
        {
            let holds = match &self.doc.steps[i].condition {
                Some(c) => c.evaluate(&self.doc.metadata)?,
                None => true,
            };
            if !holds {
                let detail = self.doc.steps[i]
                    .condition
                    .as_ref()
                    .map(|c| format!("condition '{c}' is false"))
                    .unwrap_or_default();
                self.doc.steps[i].status = StepStatus::Skipped;
                self.event(EventKind::StepSkipped, None, Some(i), detail);
                continue;
            }
            let now = self.now;
            let st = &mut self.doc.steps[i];
            st.status = StepStatus::Active;
            st.activated_at = Some(now);
            st.due_at = st.deadline_secs.map(|d| now.plus_seconds(d));
            let detail = st
                .actors
                .iter()
                .map(UserName::as_str)
                .collect::<Vec<_>>()
                .join(",");
            self.event(EventKind::StepActivated, None, Some(i), detail);
            return Ok(());
        }
        self.doc.state = DocState::Completed;
        self.event(EventKind::Completed, None, None, String::new());
        Ok(())
    }

    fn finish(mut self) -> Transition {
        self.doc.updated_at = self.now;
        Transition {
            document: self.doc,
            events: self.events,
        }
    }
}
