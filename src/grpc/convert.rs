//! Conversions between protobuf messages and domain values. Requests are parsed into checked
//! domain types here (`TryFrom`); replies are rendered from domain values.

use super::invalid;
use crate::domain::{
    self, ActionKind, ActorRef, Circuit, CircuitName, CircuitSpec, Condition, DocState, Document,
    DocumentType, DomainError, Mode, RgsLevel, Role, StepDef, StepKind, StepStatus, Timestamp,
    User, UserName,
};
use crate::proto;
use tonic::Status;

pub fn ts(t: Timestamp) -> Option<proto::Timestamp> {
    Some(proto::Timestamp { seconds: t.0 })
}

pub fn role_from(v: i32) -> Result<Role, DomainError> {
    match proto::Role::try_from(v) {
        Ok(proto::Role::Submitter) => Ok(Role::Submitter),
        Ok(proto::Role::Officer) => Ok(Role::Officer),
        Ok(proto::Role::Admin) => Ok(Role::Admin),
        Ok(proto::Role::Auditor) => Ok(Role::Auditor),
        _ => Err(DomainError::invalid(
            "roles",
            format!("unknown role value {v}"),
        )),
    }
}

pub fn role_to(r: Role) -> proto::Role {
    match r {
        Role::Submitter => proto::Role::Submitter,
        Role::Officer => proto::Role::Officer,
        Role::Admin => proto::Role::Admin,
        Role::Auditor => proto::Role::Auditor,
    }
}

pub fn doc_type_from(v: i32) -> Result<DocumentType, DomainError> {
    match proto::DocumentType::try_from(v) {
        Ok(proto::DocumentType::Mandate) => Ok(DocumentType::Mandate),
        Ok(proto::DocumentType::Contract) => Ok(DocumentType::Contract),
        Ok(proto::DocumentType::Other) => Ok(DocumentType::Other),
        _ => Err(DomainError::invalid(
            "type",
            "must be MANDATE, CONTRACT or OTHER",
        )),
    }
}

pub fn doc_type_to(t: DocumentType) -> proto::DocumentType {
    match t {
        DocumentType::Mandate => proto::DocumentType::Mandate,
        DocumentType::Contract => proto::DocumentType::Contract,
        DocumentType::Other => proto::DocumentType::Other,
    }
}

pub(super) fn kind_to(k: StepKind) -> proto::StepKind {
    match k {
        StepKind::Visa => proto::StepKind::Visa,
        StepKind::Signature => proto::StepKind::Signature,
        StepKind::Seal => proto::StepKind::Seal,
    }
}

fn mode_to(m: Mode) -> (proto::StepMode, u32) {
    match m {
        Mode::All => (proto::StepMode::All, 0),
        Mode::Any => (proto::StepMode::Any, 0),
        Mode::Quorum(k) => (proto::StepMode::Quorum, k),
    }
}

pub fn user_to(u: &User) -> proto::User {
    proto::User {
        name: u.name.to_string(),
        display_name: u.display_name.clone(),
        roles: u.roles.iter().map(|r| role_to(*r) as i32).collect(),
        created_at: ts(u.created_at),
        certificates: u
            .certificates
            .iter()
            .map(|c| proto::CertificateSummary {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                serial: c.serial.clone(),
                sha256: c.sha256.clone(),
                not_before: ts(c.not_before),
                not_after: ts(c.not_after),
            })
            .collect(),
    }
}

pub fn cert_summary_to(c: &crate::crypto::certs::CertSummary) -> proto::CertificateSummary {
    proto::CertificateSummary {
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial.clone(),
        sha256: c.sha256.clone(),
        not_before: ts(Timestamp(c.not_before)),
        not_after: ts(Timestamp(c.not_after)),
    }
}

/// Parses one step definition; errors name the step.
fn step_from(i: usize, s: proto::StepDefinition) -> Result<StepDef, DomainError> {
    let field = |f: &str| format!("steps[{i}].{f}");
    let kind = match proto::StepKind::try_from(s.kind) {
        Ok(proto::StepKind::Visa) => StepKind::Visa,
        Ok(proto::StepKind::Signature) => StepKind::Signature,
        Ok(proto::StepKind::Seal) => StepKind::Seal,
        _ => {
            return Err(DomainError::invalid(
                field("kind"),
                "must be visa, signature or seal",
            ))
        }
    };
    let mode = match proto::StepMode::try_from(s.mode) {
        Ok(proto::StepMode::Unspecified | proto::StepMode::All) => Mode::All,
        Ok(proto::StepMode::Any) => Mode::Any,
        Ok(proto::StepMode::Quorum) => Mode::Quorum(s.quorum),
        Err(_) => {
            return Err(DomainError::invalid(
                field("mode"),
                "must be all, any or quorum",
            ))
        }
    };
    if s.quorum != 0 && !matches!(mode, Mode::Quorum(_)) {
        return Err(DomainError::invalid(
            field("quorum"),
            "only a quorum step has a quorum",
        ));
    }
    let actors = s
        .actors
        .iter()
        .map(|a| ActorRef::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            DomainError::InvalidField { reason, .. } => {
                DomainError::invalid(field("actors"), reason)
            }
            other => other,
        })?;
    let condition = match s.condition.trim() {
        "" => None,
        c => Some(
            Condition::parse(c)
                .map_err(|e| DomainError::invalid(field("condition"), e.to_string()))?,
        ),
    };
    let level = match (kind, s.level) {
        (_, 0) if kind == StepKind::Visa => None,
        (StepKind::Visa, _) => {
            return Err(DomainError::invalid(
                field("level"),
                "a visa step has no RGS level",
            ))
        }
        (_, 0) => Some(RgsLevel::new(1)?),
        (_, l) => Some(RgsLevel::new(l).map_err(|e| match e {
            DomainError::InvalidField { reason, .. } => {
                DomainError::invalid(field("level"), reason)
            }
            other => other,
        })?),
    };
    let fallback = match s.fallback.as_str() {
        "" => None,
        f => Some(UserName::parse(f).map_err(|_| {
            DomainError::invalid(field("fallback"), format!("'{f}' is not a user name"))
        })?),
    };
    Ok(StepDef {
        kind,
        actors,
        mode,
        condition,
        level,
        deadline_secs: (s.deadline_seconds > 0).then_some(s.deadline_seconds),
        fallback,
        escalate: crate::domain::Escalate::parse(&s.escalate).map_err(|_| {
            DomainError::invalid(
                field("escalate"),
                format!("'{}' is not one of notify, fallback", s.escalate),
            )
        })?,
        claimed_role: claimed_role(&s.claimed_role, kind)
            .map_err(|reason| DomainError::invalid(field("claimed_role"), reason))?,
        pdf: crate::domain::PdfOptions {
            invisible: s.invisible,
            stamp: s.stamp.map(|p| crate::domain::StampPlace {
                page: p.page,
                x: p.x,
                y: p.y,
                width: p.width,
                height: p.height,
            }),
            certify: s.certify,
        },
    })
}

impl TryFrom<proto::CreateCircuitRequest> for CircuitSpec {
    type Error = Status;
    fn try_from(r: proto::CreateCircuitRequest) -> Result<Self, Status> {
        let name = CircuitName::parse(&r.name).map_err(invalid)?;
        let fallback = match r.fallback.as_str() {
            "" => None,
            f => Some(UserName::parse(f).map_err(|_| {
                invalid(DomainError::invalid(
                    "fallback",
                    format!("'{f}' is not a user name"),
                ))
            })?),
        };
        if r.steps.len() > domain::circuit::MAX_STEPS {
            return Err(invalid(DomainError::invalid(
                "steps",
                format!("at most {} steps", domain::circuit::MAX_STEPS),
            )));
        }
        let steps = r
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| step_from(i, s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        Ok(CircuitSpec {
            name,
            fallback,
            steps,
        })
    }
}

/// A step's claimed role: empty is none; only a signature step claims one; printable text of
/// at most 100 characters.
fn claimed_role(s: &str, kind: crate::domain::StepKind) -> Result<Option<String>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if kind != crate::domain::StepKind::Signature {
        return Err("only a signature step claims a role".into());
    }
    if s.chars().count() > 100 || s.chars().any(char::is_control) {
        return Err("must be printable text of at most 100 characters".into());
    }
    Ok(Some(s.to_owned()))
}

fn step_def_to(s: &StepDef) -> proto::StepDefinition {
    let (mode, quorum) = mode_to(s.mode);
    proto::StepDefinition {
        kind: kind_to(s.kind) as i32,
        actors: s.actors.iter().map(|a| a.to_string()).collect(),
        mode: mode as i32,
        quorum,
        condition: s
            .condition
            .as_ref()
            .map(|c| c.source().to_owned())
            .unwrap_or_default(),
        level: s.level.map(|l| u32::from(l.get())).unwrap_or(0),
        deadline_seconds: s.deadline_secs.unwrap_or(0),
        fallback: s
            .fallback
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default(),
        escalate: s.escalate.as_str().to_owned(),
        claimed_role: s.claimed_role.clone().unwrap_or_default(),
        invisible: s.pdf.invisible,
        stamp: s.pdf.stamp.map(|p| proto::StampPlacement {
            page: p.page,
            x: p.x,
            y: p.y,
            width: p.width,
            height: p.height,
        }),
        certify: s.pdf.certify,
    }
}

pub fn circuit_to(c: &Circuit) -> proto::Circuit {
    proto::Circuit {
        name: c.name.to_string(),
        version: c.version,
        fallback: c
            .fallback
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default(),
        steps: c.steps.iter().map(step_def_to).collect(),
        created_at: ts(c.created_at),
        created_by: c.created_by.to_string(),
        toml: c.to_toml(),
    }
}

/// A state a request names (UNSPECIFIED is the caller's "any", handled before).
pub fn state_from(s: proto::DocumentState) -> DocState {
    match s {
        proto::DocumentState::Completed => DocState::Completed,
        proto::DocumentState::Rejected => DocState::Rejected,
        proto::DocumentState::Withdrawn => DocState::Withdrawn,
        proto::DocumentState::InProgress | proto::DocumentState::Unspecified => {
            DocState::InProgress
        }
    }
}

pub fn state_to(s: DocState) -> proto::DocumentState {
    match s {
        DocState::InProgress => proto::DocumentState::InProgress,
        DocState::Completed => proto::DocumentState::Completed,
        DocState::Rejected => proto::DocumentState::Rejected,
        DocState::Withdrawn => proto::DocumentState::Withdrawn,
    }
}

fn status_to(s: StepStatus) -> proto::StepStatus {
    match s {
        StepStatus::Pending => proto::StepStatus::Pending,
        StepStatus::Active => proto::StepStatus::Active,
        StepStatus::Done => proto::StepStatus::Done,
        StepStatus::Skipped => proto::StepStatus::Skipped,
        StepStatus::Rejected => proto::StepStatus::Rejected,
        StepStatus::Cancelled => proto::StepStatus::Cancelled,
    }
}

fn action_kind_to(k: ActionKind) -> proto::ActionKind {
    match k {
        ActionKind::Approved => proto::ActionKind::Approved,
        ActionKind::Rejected => proto::ActionKind::Rejected,
        ActionKind::Signed => proto::ActionKind::Signed,
        ActionKind::Sealed => proto::ActionKind::Sealed,
    }
}

pub fn event_to(e: &domain::Event) -> proto::HistoryEntry {
    proto::HistoryEntry {
        seq: e.seq,
        at: ts(e.at),
        kind: e.kind.as_str().to_owned(),
        actor: e.actor.as_ref().map(|a| a.to_string()).unwrap_or_default(),
        step: e.step.map(|s| s as i32).unwrap_or(-1),
        detail: e.detail.clone(),
        on_behalf_of: opt_name(&e.on_behalf_of),
    }
}

/// A user name or the empty string.
pub fn opt_name(u: &Option<domain::UserName>) -> String {
    u.as_ref().map(|u| u.to_string()).unwrap_or_default()
}

pub fn route_to(actor: &domain::UserName, r: &domain::Route) -> proto::StepRoute {
    proto::StepRoute {
        actor: actor.to_string(),
        kind: r.kind.as_str().to_owned(),
        to: r.to.iter().map(|u| u.to_string()).collect(),
        absence_id: r
            .absence
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        chain: r.chain.iter().map(|u| u.to_string()).collect(),
        reason: r.reason.clone(),
    }
}

pub fn document_to(d: &Document) -> proto::Document {
    proto::Document {
        id: d.id.to_string(),
        r#type: doc_type_to(d.doc_type) as i32,
        title: d.title.clone(),
        metadata: d.metadata.clone().into_iter().collect(),
        content_sha256: d.content.sha256.clone(),
        content_size: d.content.size,
        file_name: d.content.file_name.clone().unwrap_or_default(),
        submitter: d.submitter.to_string(),
        circuit: d.circuit.0.to_string(),
        circuit_version: d.circuit.1,
        state: state_to(d.state) as i32,
        current_step: d.active_step().map(|s| s as i32).unwrap_or(-1),
        signature_format: d.format.as_str().to_owned(),
        revision_sha256: d.revisions.iter().map(|r| r.sha256.clone()).collect(),
        steps: d
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (mode, quorum) = mode_to(s.mode);
                proto::Step {
                    index: i as u32,
                    kind: kind_to(s.kind) as i32,
                    mode: mode as i32,
                    quorum,
                    actors: s.actors.iter().map(|a| a.to_string()).collect(),
                    status: status_to(s.status) as i32,
                    condition: s
                        .condition
                        .as_ref()
                        .map(|c| c.source().to_owned())
                        .unwrap_or_default(),
                    level: s.level.map(|l| u32::from(l.get())).unwrap_or(0),
                    deadline_seconds: s.deadline_secs.unwrap_or(0),
                    activated_at: s.activated_at.and_then(ts),
                    due_at: s.due_at.and_then(ts),
                    actions: s
                        .actions
                        .iter()
                        .map(|a| proto::Action {
                            actor: a.actor.to_string(),
                            kind: action_kind_to(a.kind) as i32,
                            reason: a.reason.clone().unwrap_or_default(),
                            at: ts(a.at),
                            on_behalf_of: opt_name(&a.on_behalf_of),
                            absence_id: a
                                .absence
                                .as_ref()
                                .map(|x| x.to_string())
                                .unwrap_or_default(),
                            route: a.route.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                        })
                        .collect(),
                    overdue: s.overdue,
                    escalate: s.escalate.as_str().to_owned(),
                    routes: s.routes.iter().map(|(a, r)| route_to(a, r)).collect(),
                    fallback: opt_name(&s.fallback),
                }
            })
            .collect(),
        history: d.history.iter().map(event_to).collect(),
        created_at: ts(d.created_at),
        updated_at: ts(d.updated_at),
    }
}
