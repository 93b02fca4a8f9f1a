//! Circuit files: the TOML form of a circuit definition, read by `paraph circuit create`.
//!
//! ```toml
//! name = "expense"
//! fallback = "dgs"                  # optional: who gets a step nobody can act on
//!
//! [[steps]]
//! kind = "visa"                     # visa | signature | seal
//! actors = ["alice", "role:officer"]
//! mode = "quorum"                   # all (default) | any | quorum
//! quorum = 2                        # k, for mode = "quorum"
//! condition = "amount >= 10000 and beneficiary != 'X'"
//! level = 2                         # RGS level 1..3, signature and seal steps only
//! deadline = "48h"                  # s, m, h, d, w units, combined: "1d12h"
//! fallback = "bob"                  # optional, per step
//! escalate = "fallback"              # when overdue: "notify" (default) or "fallback"
//!
//! # PDF documents (PAdES), signature and seal steps:
//! visible = false                   # an invisible signature (no stamp)
//! stamp = { page = -1, x = 50, y = 80, width = 200, height = 60 }  # points; page -1 = last
//! certify = true                    # the final seal certifies the PDF (DocMDP P=2)
//! ```
//!
//! Only the shape is checked here (unknown keys are refused with the key named; a deadline must
//! parse); the server validates the meaning (users exist, quorum fits, condition parses) and names
//! the field it refuses.

use crate::domain::circuit::parse_duration;
use crate::domain::DomainError;
use crate::proto;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitFile {
    name: String,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    kind: Kind,
    #[serde(default)]
    actors: Vec<String>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    quorum: Option<u32>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    level: Option<u32>,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    escalate: Option<Escalate>,
    /// PES signature steps: the claimed role (XAdES ClaimedRole).
    #[serde(default)]
    claimed_role: Option<String>,
    #[serde(default)]
    visible: Option<bool>,
    #[serde(default)]
    stamp: Option<StampFile>,
    #[serde(default)]
    certify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampFile {
    page: i32,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Escalate {
    Notify,
    Fallback,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Visa,
    Signature,
    Seal,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    All,
    Any,
    Quorum,
}

/// Parses circuit TOML text into a creation request. Errors are plain text, without the path.
pub fn parse(text: &str) -> Result<proto::CreateCircuitRequest, String> {
    let file: CircuitFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    let mut steps = Vec::with_capacity(file.steps.len());
    for (i, s) in file.steps.into_iter().enumerate() {
        let deadline_seconds = match &s.deadline {
            None => 0,
            Some(d) => parse_duration(d).map_err(|e| match e {
                DomainError::InvalidField { reason, .. } => {
                    format!("steps[{i}].deadline: {reason}")
                }
                other => format!("steps[{i}].deadline: {other}"),
            })?,
        };
        steps.push(proto::StepDefinition {
            kind: match s.kind {
                Kind::Visa => proto::StepKind::Visa,
                Kind::Signature => proto::StepKind::Signature,
                Kind::Seal => proto::StepKind::Seal,
            } as i32,
            actors: s.actors,
            mode: match s.mode.unwrap_or(Mode::All) {
                Mode::All => proto::StepMode::All,
                Mode::Any => proto::StepMode::Any,
                Mode::Quorum => proto::StepMode::Quorum,
            } as i32,
            quorum: s.quorum.unwrap_or(0),
            condition: s.condition.unwrap_or_default(),
            level: s.level.unwrap_or(0),
            deadline_seconds,
            fallback: s.fallback.unwrap_or_default(),
            escalate: match s.escalate {
                None => String::new(),
                Some(Escalate::Notify) => "notify".into(),
                Some(Escalate::Fallback) => "fallback".into(),
            },
            claimed_role: s.claimed_role.unwrap_or_default(),
            invisible: s.visible == Some(false),
            stamp: s.stamp.map(|p| proto::StampPlacement {
                page: p.page,
                x: p.x,
                y: p.y,
                width: p.width,
                height: p.height,
            }),
            certify: s.certify,
        });
    }
    Ok(proto::CreateCircuitRequest {
        name: file.name,
        fallback: file.fallback.unwrap_or_default(),
        steps,
        idempotency_key: String::new(),
    })
}

/// Reads and parses a circuit file; errors name the file.
pub fn load(path: &Path) -> Result<proto::CreateCircuitRequest, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read circuit file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("circuit file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_circuit_maps_to_the_request() {
        let r = parse(
            r#"
name = "expense"
fallback = "dgs"

[[steps]]
kind = "visa"
actors = ["alice"]

[[steps]]
kind = "visa"
actors = ["bob", "carol", "role:officer"]
mode = "quorum"
quorum = 2
deadline = "1d12h"
fallback = "alice"

[[steps]]
kind = "signature"
actors = ["carol"]
mode = "any"
condition = "amount >= 10000 and beneficiary != 'X'"
level = 2

[[steps]]
kind = "seal"
level = 1
visible = false
certify = true
"#,
        )
        .unwrap();
        assert_eq!(r.name, "expense");
        assert_eq!(r.fallback, "dgs");
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.steps[0].kind, proto::StepKind::Visa as i32);
        assert_eq!(r.steps[0].mode, proto::StepMode::All as i32);
        assert_eq!(r.steps[1].mode, proto::StepMode::Quorum as i32);
        assert_eq!(r.steps[1].quorum, 2);
        assert_eq!(r.steps[1].deadline_seconds, 36 * 3600);
        assert_eq!(r.steps[1].fallback, "alice");
        assert_eq!(r.steps[1].actors, ["bob", "carol", "role:officer"]);
        assert_eq!(r.steps[2].kind, proto::StepKind::Signature as i32);
        assert_eq!(r.steps[2].mode, proto::StepMode::Any as i32);
        assert_eq!(
            r.steps[2].condition,
            "amount >= 10000 and beneficiary != 'X'"
        );
        assert_eq!(r.steps[2].level, 2);
        assert_eq!(r.steps[3].kind, proto::StepKind::Seal as i32);
        assert!(r.steps[3].actors.is_empty());
        assert!(r.steps[3].invisible && r.steps[3].certify);
        assert!(!r.steps[2].invisible && !r.steps[2].certify);
        let r = parse(
            "name = \"x\"\n[[steps]]\nkind = \"signature\"\nactors = [\"a\"]\n\
             stamp = { page = -1, x = 50, y = 80, width = 200, height = 60 }\n",
        )
        .unwrap();
        let p = r.steps[0].stamp.unwrap();
        assert_eq!((p.page, p.x, p.y, p.width, p.height), (-1, 50, 80, 200, 60));
        let e = parse(
            "name = \"x\"\n[[steps]]\nkind = \"signature\"\nactors = [\"a\"]\n\
             stamp = { page = 1, x = 50, y = 80 }\n",
        )
        .unwrap_err();
        assert!(e.contains("width"), "{e}");
    }

    #[test]
    fn a_signature_step_claims_its_pes_role() {
        let r = parse(
            "name = \"mandats\"\n[[steps]]\nkind = \"signature\"\nactors = [\"maire\"]\nlevel = 2\nclaimed_role = \"Maire\"\n",
        )
        .unwrap();
        assert_eq!(r.steps[0].claimed_role, "Maire");
        let r = parse("name = \"m\"\n[[steps]]\nkind = \"signature\"\nactors = [\"a\"]\n").unwrap();
        assert_eq!(r.steps[0].claimed_role, "", "none: the tenant's setting");
    }

    /// What the server renders of a stored version (`Circuit.toml`) reads back as the same
    /// definition, whatever the step options.
    #[test]
    fn a_rendered_circuit_reads_back_as_the_same_definition() {
        let full = r#"
name = "expense"
fallback = "dgs"

[[steps]]
kind = "visa"
actors = ["alice"]

[[steps]]
kind = "visa"
actors = ["bob", "carol", "role:officer"]
mode = "quorum"
quorum = 2
deadline = "1d12h"
fallback = "alice"
escalate = "fallback"

[[steps]]
kind = "signature"
actors = ["carol"]
mode = "any"
condition = "amount >= 10000 and beneficiary != 'X \"quoted\" \\\\ back'"
level = 2
claimed_role = "Maire"
stamp = { page = -1, x = 50, y = 80, width = 200, height = 60 }

[[steps]]
kind = "seal"
level = 1
visible = false
"#;
        let certifying = "name = \"contrats\"\n[[steps]]\nkind = \"visa\"\nactors = [\"bob\"]\n\
             [[steps]]\nkind = \"seal\"\nlevel = 2\ncertify = true\n";
        for (version, text) in [(3, full), (1, certifying)] {
            round_trip(text, version);
        }
    }

    fn round_trip(text: &str, version: u32) {
        use crate::domain::{Circuit, CircuitSpec, Role, Timestamp, UserName};
        let first = parse(text).unwrap();
        let spec = CircuitSpec::try_from(first.clone()).unwrap();
        let officer = |_: &UserName| Some(vec![Role::Officer]);
        let circuit = Circuit::define(
            spec,
            version,
            &officer,
            UserName::parse("admin").unwrap(),
            Timestamp(0),
        )
        .unwrap();
        let rendered = circuit.to_toml();
        assert!(rendered.starts_with("# circuit "), "{rendered}");
        assert!(
            rendered
                .lines()
                .next()
                .is_some_and(|l| l.ends_with(&format!("version {version}, created by admin"))),
            "{rendered}"
        );
        let again = parse(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(again, first, "{rendered}");
        // Canonical: rendering the definition read back gives the same text.
        let spec = CircuitSpec::try_from(again).unwrap();
        let circuit2 = Circuit::define(
            spec,
            version,
            &officer,
            UserName::parse("admin").unwrap(),
            Timestamp(0),
        )
        .unwrap();
        assert_eq!(circuit2.to_toml(), rendered);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("name = \"x\"\ncolour = \"red\"\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e =
            parse("name = \"x\"\n[[steps]]\nkind = \"visa\"\nactors = [\"a\"]\nactor = \"b\"\n")
                .unwrap_err();
        assert!(e.contains("actor`"), "{e}");
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("name = \"x\"\n[[steps]]\nkind = \"stamp\"\n").unwrap_err();
        assert!(e.contains("stamp"), "{e}");
        let e = parse("name = \"x\"\n[[steps]]\nkind = \"visa\"\nmode = \"most\"\n").unwrap_err();
        assert!(e.contains("most"), "{e}");
        let e =
            parse("name = \"x\"\n[[steps]]\nkind = \"visa\"\ndeadline = \"soon\"\n").unwrap_err();
        assert!(e.starts_with("steps[0].deadline:"), "{e}");
        let e = parse("fallback = \"x\"\n").unwrap_err();
        assert!(e.contains("name"), "{e}");
    }
}
