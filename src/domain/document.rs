//! Documents (dossiers) and the workflow state machine.
//!
//! A document is created by [`Document::submit`] and changed only by the transitions below, each
//! of which consumes the document and returns the next one with the events it produced. Nothing
//! leaves a terminal state (COMPLETED, REJECTED, WITHDRAWN).

use super::{
    circuit::{ActorRef, Circuit, Mode, RgsLevel, StepDef, StepKind},
    Condition, DocumentId, DomainError, Role, TenantId, Timestamp, UserName,
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

    pub fn has_acted(&self, user: &UserName) -> bool {
        self.actions.iter().any(|a| &a.actor == user)
    }

    /// Actors still expected to act while the step is active.
    pub fn waiting_for(&self) -> Vec<UserName> {
        if self.status != StepStatus::Active {
            return Vec::new();
        }
        self.actors
            .iter()
            .filter(|u| !self.has_acted(u))
            .cloned()
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
}

impl EventKind {
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
            steps.push(instantiate(i, def, members)?);
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

    /// Everyone a change of this document concerns: the submitter and every actor of a step
    /// that has been reached.
    pub fn concerned(&self) -> Vec<UserName> {
        let mut v = vec![self.submitter.clone()];
        for s in &self.steps {
            if s.status != StepStatus::Pending {
                v.extend(s.actors.iter().cloned());
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Checks that `actor` may act on `step` (or the active step) now, and returns its index.
    fn actionable_step(&self, actor: &UserName, step: Option<u32>) -> Result<usize, DomainError> {
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
        if !st.actors.contains(actor) {
            return Err(DomainError::Forbidden(format!(
                "'{actor}' is not an actor of step {active}"
            )));
        }
        if st.has_acted(actor) {
            return Err(DomainError::WrongState(format!(
                "'{actor}' has already acted on step {active}"
            )));
        }
        Ok(active)
    }

    /// A visa: `actor` approves the active step.
    pub fn approve(
        self,
        actor: &UserName,
        step: Option<u32>,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let i = self.actionable_step(actor, step)?;
        if self.steps[i].kind != StepKind::Visa {
            return Err(DomainError::WrongState(format!(
                "step {i} is a {} step, not a visa",
                match self.steps[i].kind {
                    StepKind::Signature => "signature",
                    _ => "seal",
                }
            )));
        }
        let comment = match comment.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => Some(check_reason(c).map_err(|_| {
                DomainError::invalid("comment", format!("at most {MAX_REASON_CHARS} characters"))
            })?),
            _ => None,
        };
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i].actions.push(Action {
            actor: actor.clone(),
            kind: ActionKind::Approved,
            reason: comment.clone(),
            at: now,
            on_behalf_of: None,
        });
        tx.event(
            EventKind::Approved,
            Some(actor.clone()),
            Some(i),
            comment.unwrap_or_default(),
        );
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// `actor` signs the active SIGNATURE step (his certificate signature was verified and
    /// stored by the caller). `on_behalf_of` is set when he acts as a delegate.
    pub fn sign(
        self,
        actor: &UserName,
        step: Option<u32>,
        on_behalf_of: Option<UserName>,
        detail: String,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let i = self.actionable_step(actor, step)?;
        if self.steps[i].kind != StepKind::Signature {
            return Err(DomainError::WrongState(format!(
                "step {i} is not a signature step"
            )));
        }
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i].actions.push(Action {
            actor: actor.clone(),
            kind: ActionKind::Signed,
            reason: None,
            at: now,
            on_behalf_of,
        });
        tx.event(EventKind::Signed, Some(actor.clone()), Some(i), detail);
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// Whether the active step is a SEAL step, which the server applies itself.
    pub fn awaits_seal(&self) -> Option<usize> {
        self.active_step()
            .filter(|i| self.steps[*i].kind == StepKind::Seal)
    }

    /// The server applies the organisation's seal on the active SEAL step.
    pub fn seal(self, detail: String, now: Timestamp) -> Result<Transition, DomainError> {
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
        });
        tx.event(EventKind::Sealed, None, Some(i), detail);
        tx.close_step_if_met(i)?;
        Ok(tx.finish())
    }

    /// Checks that `actor` may sign `step` now; returns the step index and its required level.
    pub fn signable_step(
        &self,
        actor: &UserName,
        step: Option<u32>,
    ) -> Result<(usize, Option<super::RgsLevel>), DomainError> {
        let i = self.actionable_step(actor, step)?;
        if self.steps[i].kind != StepKind::Signature {
            return Err(DomainError::WrongState(format!(
                "step {i} is not a signature step"
            )));
        }
        Ok((i, self.steps[i].level))
    }

    /// `actor` rejects the document at the active step: the circuit ends.
    pub fn reject(
        self,
        actor: &UserName,
        step: Option<u32>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Transition, DomainError> {
        let i = self.actionable_step(actor, step)?;
        let reason = check_reason(reason)?;
        let mut tx = Builder::new(self, now);
        tx.doc.steps[i].actions.push(Action {
            actor: actor.clone(),
            kind: ActionKind::Rejected,
            reason: Some(reason.clone()),
            at: now,
            on_behalf_of: None,
        });
        tx.doc.steps[i].status = StepStatus::Rejected;
        tx.cancel_pending();
        tx.doc.state = DocState::Rejected;
        tx.event(EventKind::Rejected, Some(actor.clone()), Some(i), reason);
        Ok(tx.finish())
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

fn instantiate(
    i: usize,
    def: &StepDef,
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
        fallback: def.fallback.clone(),
        actors,
        status: StepStatus::Pending,
        activated_at: None,
        due_at: None,
        actions: Vec::new(),
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
        let ev = Event {
            seq: self.doc.history.len() as u64,
            at: self.now,
            kind,
            actor,
            step: step.map(|s| s as u32),
            detail,
        };
        self.doc.history.push(ev.clone());
        self.events.push(ev);
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
