//! Circuit templates: ordered steps with actors, modes, conditions, levels and deadlines.
//!
//! A circuit version is immutable once created; "editing" a circuit creates the next version.

use super::{CircuitName, Condition, DomainError, Role, Timestamp, UserName};
use serde::{Deserialize, Serialize};

/// At most this many steps in a circuit, and actors in a step.
pub const MAX_STEPS: usize = 50;
pub const MAX_ACTORS: usize = 100;
/// A deadline longer than a year is certainly a mistake.
pub const MAX_DEADLINE_SECS: u64 = 366 * 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Approval without a certificate signature.
    Visa,
    /// An officer's certificate signature.
    Signature,
    /// The organisation's server seal, applied automatically.
    Seal,
}

impl StepKind {
    /// The kind's name in messages: `visa`, `signature`, `seal`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Visa => "visa",
            StepKind::Signature => "signature",
            StepKind::Seal => "seal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    All,
    Any,
    Quorum(u32),
}

/// RGS certificate level: `*`, `**` or `***`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RgsLevel(u8);

impl RgsLevel {
    pub fn new(level: u32) -> Result<RgsLevel, DomainError> {
        match level {
            1..=3 => Ok(RgsLevel(level as u8)),
            _ => Err(DomainError::invalid(
                "level",
                "must be 1, 2 or 3 (RGS *, **, ***)",
            )),
        }
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Who may act on a step: a named user, or every officer holding a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRef {
    User(UserName),
    Role(Role),
}

impl ActorRef {
    /// `m.durand` or `role:officer`.
    pub fn parse(s: &str) -> Result<ActorRef, DomainError> {
        match s.strip_prefix("role:") {
            Some(role) => Ok(ActorRef::Role(Role::parse(role)?)),
            None => Ok(ActorRef::User(UserName::parse(s).map_err(|_| {
                DomainError::invalid(
                    "actors",
                    format!("'{s}' is neither a user name nor role:NAME"),
                )
            })?)),
        }
    }
}

impl std::fmt::Display for ActorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActorRef::User(u) => write!(f, "{u}"),
            ActorRef::Role(r) => write!(f, "role:{}", r.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    pub kind: StepKind,
    pub actors: Vec<ActorRef>,
    pub mode: Mode,
    pub condition: Option<Condition>,
    pub level: Option<RgsLevel>,
    pub deadline_secs: Option<u64>,
    pub fallback: Option<UserName>,
    /// What happens when the step passes its deadline.
    #[serde(default)]
    pub escalate: Escalate,
    /// The role a PES signature of this step claims (XAdES ClaimedRole); `None`: the
    /// tenant's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_role: Option<String>,
    /// How a signature or seal of the step shows in a PDF (PAdES).
    #[serde(default, skip_serializing_if = "PdfOptions::is_default")]
    pub pdf: PdfOptions,
}

/// How a signature or seal step appears in a PDF document: its stamp's place (else a tag in
/// the text, else the default grid of the last page), no stamp at all, or a certification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfOptions {
    /// An invisible signature: no stamp.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invisible: bool,
    /// Where the stamp goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<StampPlace>,
    /// The seal certifies the document (DocMDP, P=2): only on a seal that ends the circuit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certify: bool,
}

impl PdfOptions {
    pub fn is_default(&self) -> bool {
        *self == PdfOptions::default()
    }
}

/// A stamp's rectangle in points, from the bottom left corner of the page as it is displayed,
/// on page `page` (1 is the first, -1 the last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampPlace {
    pub page: i32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Stamp sizes accepted, in points (a side of 14400 points is the largest PDF page).
pub const STAMP_MIN: u32 = 20;
pub const STAMP_MAX: u32 = 14_400;

/// What an overdue step does: alert the people concerned (always), and with `Fallback` also
/// open the step to the fallback actor (the step's, else the circuit's, else the admins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalate {
    #[default]
    Notify,
    Fallback,
}

impl Escalate {
    pub fn parse(s: &str) -> Result<Escalate, DomainError> {
        match s {
            "" | "notify" => Ok(Escalate::Notify),
            "fallback" => Ok(Escalate::Fallback),
            other => Err(DomainError::invalid(
                "escalate",
                format!("'{other}' is not one of notify, fallback"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Escalate::Notify => "notify",
            Escalate::Fallback => "fallback",
        }
    }
}

/// An unchecked circuit definition, as parsed from the wire or a TOML file.
#[derive(Clone, Debug)]
pub struct CircuitSpec {
    pub name: CircuitName,
    pub fallback: Option<UserName>,
    pub steps: Vec<StepDef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Circuit {
    pub name: CircuitName,
    pub version: u32,
    pub fallback: Option<UserName>,
    pub steps: Vec<StepDef>,
    pub created_at: Timestamp,
    pub created_by: UserName,
}

impl Circuit {
    /// Checks a definition and makes it version `version`. `user_roles` answers the roles of a
    /// user of the tenant (`None` when no such user exists).
    pub fn define(
        spec: CircuitSpec,
        version: u32,
        user_roles: &dyn Fn(&UserName) -> Option<Vec<Role>>,
        created_by: UserName,
        now: Timestamp,
    ) -> Result<Circuit, DomainError> {
        if spec.steps.is_empty() || spec.steps.len() > MAX_STEPS {
            return Err(DomainError::invalid(
                "steps",
                format!("a circuit has 1 to {MAX_STEPS} steps"),
            ));
        }
        let known = |u: &UserName, what: &str| -> Result<Vec<Role>, DomainError> {
            user_roles(u).ok_or_else(|| DomainError::invalid(what, format!("unknown user '{u}'")))
        };
        if let Some(f) = &spec.fallback {
            known(f, "fallback")?;
        }
        for (i, step) in spec.steps.iter().enumerate() {
            let field = |f: &str| format!("steps[{i}].{f}");
            if let Some(f) = &step.fallback {
                known(f, &field("fallback"))?;
            }
            if let Some(d) = step.deadline_secs {
                if d == 0 || d > MAX_DEADLINE_SECS {
                    return Err(DomainError::invalid(
                        field("deadline"),
                        "must be between 1 second and 366 days",
                    ));
                }
            }
            let signed_before = spec.steps[..i].iter().any(|s| s.kind != StepKind::Visa);
            check_pdf_options(step, i == spec.steps.len() - 1, signed_before, &field)?;
            match step.kind {
                StepKind::Seal => {
                    if !step.actors.is_empty() {
                        return Err(DomainError::invalid(
                            field("actors"),
                            "a seal step is applied by the server and has no actors",
                        ));
                    }
                    continue;
                }
                StepKind::Visa => {
                    if step.level.is_some() {
                        return Err(DomainError::invalid(
                            field("level"),
                            "only signature and seal steps have an RGS level",
                        ));
                    }
                }
                StepKind::Signature => {}
            }
            if step.actors.is_empty() || step.actors.len() > MAX_ACTORS {
                return Err(DomainError::invalid(
                    field("actors"),
                    format!("a step has 1 to {MAX_ACTORS} actors"),
                ));
            }
            for (j, a) in step.actors.iter().enumerate() {
                if step.actors[..j].contains(a) {
                    return Err(DomainError::invalid(
                        field("actors"),
                        format!("'{a}' is listed twice"),
                    ));
                }
                if let ActorRef::User(u) = a {
                    if !known(u, &field("actors"))?.contains(&Role::Officer) {
                        return Err(DomainError::invalid(
                            field("actors"),
                            format!("'{u}' is not an officer"),
                        ));
                    }
                }
            }
            if let Mode::Quorum(k) = step.mode {
                let only_users = step.actors.iter().all(|a| matches!(a, ActorRef::User(_)));
                if k == 0 || (only_users && k as usize > step.actors.len()) {
                    return Err(DomainError::invalid(
                        field("quorum"),
                        format!(
                            "quorum {k} must be between 1 and the number of actors ({})",
                            step.actors.len()
                        ),
                    ));
                }
            }
        }
        Ok(Circuit {
            name: spec.name,
            version,
            fallback: spec.fallback,
            steps: spec.steps,
            created_at: now,
            created_by,
        })
    }
}

/// PDF options: a stamp only on steps that sign, of a sane size, not on an invisible
/// signature; a certification only by the seal that ends the circuit, after visas only (a
/// certification is the PDF's first signature, ISO 32000-2 12.8.2.2).
fn check_pdf_options(
    step: &StepDef,
    last: bool,
    signed_before: bool,
    field: &dyn Fn(&str) -> String,
) -> Result<(), DomainError> {
    let pdf = &step.pdf;
    if step.kind == StepKind::Visa && (pdf.invisible || pdf.stamp.is_some()) {
        return Err(DomainError::invalid(
            field(if pdf.invisible { "visible" } else { "stamp" }),
            "a visa step adds no signature to a PDF, hence no stamp",
        ));
    }
    if let Some(s) = pdf.stamp {
        if pdf.invisible {
            return Err(DomainError::invalid(
                field("stamp"),
                "an invisible signature has no stamp to place",
            ));
        }
        if s.page == 0 {
            return Err(DomainError::invalid(
                field("stamp.page"),
                "pages count from 1 (the first) or from -1 (the last)",
            ));
        }
        for (name, v) in [("stamp.width", s.width), ("stamp.height", s.height)] {
            if !(STAMP_MIN..=STAMP_MAX).contains(&v) {
                return Err(DomainError::invalid(
                    field(name),
                    format!("must be between {STAMP_MIN} and {STAMP_MAX} points"),
                ));
            }
        }
        if s.x > STAMP_MAX || s.y > STAMP_MAX {
            return Err(DomainError::invalid(
                field("stamp"),
                format!("x and y must be at most {STAMP_MAX} points"),
            ));
        }
    }
    if pdf.certify {
        if step.kind != StepKind::Seal {
            return Err(DomainError::invalid(
                field("certify"),
                "only a seal step certifies a PDF",
            ));
        }
        if !last {
            return Err(DomainError::invalid(
                field("certify"),
                "only the last step may certify (nothing may be signed after a certification)",
            ));
        }
        if signed_before {
            return Err(DomainError::invalid(
                field("certify"),
                "a certification is the PDF's first signature: only visas may come before a \
                 certifying seal",
            ));
        }
    }
    Ok(())
}

/// Parses a deadline such as `48h`, `30m`, `2d`, `90s` or `1d12h` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, DomainError> {
    let bad = || {
        DomainError::invalid(
            "deadline",
            format!("'{s}' is not a duration like 48h, 2d or 1d12h"),
        )
    };
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.trim().chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(bad()),
        };
        let n = num.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if num.is_some() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

impl Circuit {
    /// The version as a circuit file (the TOML `paraph circuit create` reads), in a canonical
    /// form: keys in a fixed order, defaults left out, a header comment naming the version.
    /// Reading it back gives the same definition.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# circuit {} version {}, created by {}",
            self.name, self.version, self.created_by
        );
        let _ = writeln!(out, "name = {}", toml_string(&self.name.to_string()));
        if let Some(f) = &self.fallback {
            let _ = writeln!(out, "fallback = {}", toml_string(&f.to_string()));
        }
        for s in &self.steps {
            let _ = writeln!(out, "\n[[steps]]");
            let _ = writeln!(out, "kind = {}", toml_string(s.kind.as_str()));
            if !s.actors.is_empty() {
                let actors: Vec<String> = s
                    .actors
                    .iter()
                    .map(|a| toml_string(&a.to_string()))
                    .collect();
                let _ = writeln!(out, "actors = [{}]", actors.join(", "));
            }
            match s.mode {
                Mode::All => {}
                Mode::Any => {
                    let _ = writeln!(out, "mode = \"any\"");
                }
                Mode::Quorum(k) => {
                    let _ = writeln!(out, "mode = \"quorum\"\nquorum = {k}");
                }
            }
            if let Some(c) = &s.condition {
                let _ = writeln!(out, "condition = {}", toml_string(c.source()));
            }
            if let Some(l) = s.level {
                let _ = writeln!(out, "level = {}", l.get());
            }
            if let Some(d) = s.deadline_secs {
                let _ = writeln!(out, "deadline = {}", toml_string(&format_duration(d)));
            }
            if let Some(f) = &s.fallback {
                let _ = writeln!(out, "fallback = {}", toml_string(&f.to_string()));
            }
            if s.escalate != Escalate::Notify {
                let _ = writeln!(out, "escalate = {}", toml_string(s.escalate.as_str()));
            }
            if let Some(r) = &s.claimed_role {
                let _ = writeln!(out, "claimed_role = {}", toml_string(r));
            }
            if s.pdf.invisible {
                let _ = writeln!(out, "visible = false");
            }
            if let Some(p) = &s.pdf.stamp {
                let _ = writeln!(
                    out,
                    "stamp = {{ page = {}, x = {}, y = {}, width = {}, height = {} }}",
                    p.page, p.x, p.y, p.width, p.height
                );
            }
            if s.pdf.certify {
                let _ = writeln!(out, "certify = true");
            }
        }
        out
    }
}

/// `s` as a TOML basic string: quoted, with `"`, `\\` and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders seconds the way [`parse_duration`] reads them.
pub fn format_duration(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, name) in [(86400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{}", secs / unit, name));
            secs %= unit;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("48h").unwrap(), 48 * 3600);
        assert_eq!(parse_duration("1d12h").unwrap(), 36 * 3600);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("0h").is_err());
        assert_eq!(format_duration(36 * 3600), "1d12h");
        assert_eq!(parse_duration(&format_duration(93784)).unwrap(), 93784);
    }

    #[test]
    fn actor_refs() {
        assert_eq!(
            ActorRef::parse("role:officer").unwrap(),
            ActorRef::Role(Role::Officer)
        );
        assert!(ActorRef::parse("role:boss").is_err());
        assert!(ActorRef::parse("Bad Name").is_err());
    }
}
