//! Output of the command line: JSON values with stable snake_case field names for scripts, and
//! compact human-readable text. Enum values are lower-case words (`in_progress`, `visa`), times
//! are RFC 3339 UTC strings, and a missing time or step is `null`.
//!
//! Text from the server never reaches the terminal raw: [`escape_for_terminal`] replaces the
//! characters that drive a terminal or reorder what it shows. Free text of one field goes
//! through [`shown`] (line feeds escaped too: a comment cannot start a line of its own), and
//! every block of human output through [`for_terminal`], by the `print_text!` family of macros
//! the commands print with. JSON output is exact JSON (serde_json escapes control characters).

use crate::domain::circuit::format_duration;
use crate::proto;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character must not reach a terminal as it is: control characters (C0, DEL, C1:
/// escape sequences, carriage returns, backspaces…) and the invisible ones that reorder or
/// break text (bidirectional embeddings, overrides, isolates and marks; line and paragraph
/// separators).
fn drives_the_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every character that [drives the terminal](drives_the_terminal) written as its
/// escape (`\r`, `\t`, `\u{1b}`, `\u{202e}`), except line feeds when `keep_line_feeds`.
/// Text without such characters is returned as it is.
pub fn escape_for_terminal(s: &str, keep_line_feeds: bool) -> Cow<'_, str> {
    let escaped = |c: char| drives_the_terminal(c) && !(keep_line_feeds && c == '\n');
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field of text from the server, for a line of human output.
pub fn shown(s: &str) -> Cow<'_, str> {
    escape_for_terminal(s, false)
}

/// A block of human output (its line feeds kept), as the `print_text!` macros print it.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    escape_for_terminal(s, true)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-29T04:48:14Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn time(t: &Option<proto::Timestamp>) -> Value {
    match t {
        Some(t) => Value::String(rfc3339(t.seconds)),
        None => Value::Null,
    }
}

fn time_text(t: &Option<proto::Timestamp>) -> String {
    t.as_ref()
        .map(|t| rfc3339(t.seconds))
        .unwrap_or_else(|| "-".to_owned())
}

fn lower(name: Option<&str>, prefix: &str) -> String {
    match name {
        Some(n) => n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase(),
        None => "unknown".to_owned(),
    }
}

pub fn doc_type(v: i32) -> String {
    lower(
        proto::DocumentType::try_from(v)
            .ok()
            .map(|e| e.as_str_name()),
        "DOCUMENT_TYPE_",
    )
}

pub fn state(v: i32) -> String {
    lower(
        proto::DocumentState::try_from(v)
            .ok()
            .map(|e| e.as_str_name()),
        "DOCUMENT_STATE_",
    )
}

pub fn step_kind(v: i32) -> String {
    lower(
        proto::StepKind::try_from(v).ok().map(|e| e.as_str_name()),
        "STEP_KIND_",
    )
}

pub fn step_mode(v: i32) -> String {
    match proto::StepMode::try_from(v) {
        // Unspecified is treated as ALL by the server.
        Ok(proto::StepMode::Unspecified) => "all".to_owned(),
        r => lower(r.ok().map(|e| e.as_str_name()), "STEP_MODE_"),
    }
}

pub fn step_status(v: i32) -> String {
    lower(
        proto::StepStatus::try_from(v).ok().map(|e| e.as_str_name()),
        "STEP_STATUS_",
    )
}

pub fn action_kind(v: i32) -> String {
    lower(
        proto::ActionKind::try_from(v).ok().map(|e| e.as_str_name()),
        "ACTION_KIND_",
    )
}

pub fn role(v: i32) -> String {
    lower(
        proto::Role::try_from(v).ok().map(|e| e.as_str_name()),
        "ROLE_",
    )
}

fn opt_step(i: i32) -> Value {
    if i < 0 {
        Value::Null
    } else {
        json!(i)
    }
}

fn mode_text(mode: i32, quorum: u32) -> String {
    let m = step_mode(mode);
    if m == "quorum" {
        format!("quorum {quorum}")
    } else {
        m
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

pub fn document_json(d: &proto::Document) -> Value {
    let steps: Vec<Value> = d
        .steps
        .iter()
        .map(|s| {
            json!({
                "index": s.index,
                "kind": step_kind(s.kind),
                "mode": step_mode(s.mode),
                "quorum": s.quorum,
                "actors": s.actors,
                "status": step_status(s.status),
                "condition": s.condition,
                "level": s.level,
                "deadline_seconds": s.deadline_seconds,
                "activated_at": time(&s.activated_at),
                "due_at": time(&s.due_at),
                "actions": s.actions.iter().map(|a| json!({
                    "actor": a.actor,
                    "kind": action_kind(a.kind),
                    "reason": a.reason,
                    "at": time(&a.at),
                    "on_behalf_of": a.on_behalf_of,
                    "absence_id": a.absence_id,
                    "route": a.route,
                })).collect::<Vec<_>>(),
                "fallback": s.fallback,
                "escalate": s.escalate,
                "overdue": s.overdue,
                "routes": s.routes.iter().map(|r| json!({
                    "actor": r.actor,
                    "kind": r.kind,
                    "to": r.to,
                    "absence_id": r.absence_id,
                    "chain": r.chain,
                    "reason": r.reason,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let history: Vec<Value> = d
        .history
        .iter()
        .map(|h| {
            json!({
                "seq": h.seq,
                "at": time(&h.at),
                "kind": h.kind,
                "actor": h.actor,
                "step": opt_step(h.step),
                "detail": h.detail,
                "on_behalf_of": h.on_behalf_of,
            })
        })
        .collect();
    let metadata: serde_json::Map<String, Value> = d
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": d.id,
        "type": doc_type(d.r#type),
        "title": d.title,
        "state": state(d.state),
        "circuit": d.circuit,
        "circuit_version": d.circuit_version,
        "submitter": d.submitter,
        "metadata": metadata,
        "file_name": d.file_name,
        "content_sha256": d.content_sha256,
        "content_size": d.content_size,
        "signature_format": d.signature_format,
        "revision_sha256": d.revision_sha256,
        "current_step": opt_step(d.current_step),
        "steps": steps,
        "history": history,
        "created_at": time(&d.created_at),
        "updated_at": time(&d.updated_at),
    })
}

pub fn inbox_item_json(i: &proto::InboxItem) -> Value {
    json!({
        "id": i.id,
        "type": doc_type(i.r#type),
        "title": i.title,
        "circuit": i.circuit,
        "step": i.step,
        "step_kind": step_kind(i.step_kind),
        "waiting_since": time(&i.waiting_since),
        "due_at": time(&i.due_at),
        "on_behalf_of": i.on_behalf_of,
        "route": i.route,
        "submitter": i.submitter,
    })
}

/// `{"id", "user", "from", "to", "delegate", "types", "circuits", "declared_by",
/// "declared_at", "cancelled_at", "active"}`
pub fn absence_json(a: &proto::Absence) -> Value {
    json!({
        "id": a.id,
        "user": a.user,
        "from": time(&a.from),
        "to": time(&a.to),
        "delegate": a.delegate,
        "types": a.types.iter().map(|t| doc_type(*t)).collect::<Vec<_>>(),
        "circuits": a.circuits,
        "declared_by": a.declared_by,
        "declared_at": time(&a.declared_at),
        "cancelled_at": time(&a.cancelled_at),
        "active": a.active,
    })
}

pub fn absence_line(a: &proto::Absence) -> String {
    let mut scope = Vec::new();
    if !a.types.is_empty() {
        scope.push(
            a.types
                .iter()
                .map(|t| doc_type(*t))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if !a.circuits.is_empty() {
        scope.push(format!("circuits {}", a.circuits.join(",")));
    }
    let scope = if scope.is_empty() {
        "all documents".to_owned()
    } else {
        scope.join(", ")
    };
    let state = if a.cancelled_at.is_some() {
        "cancelled"
    } else if a.active {
        "ACTIVE"
    } else {
        "planned/ended"
    };
    format!(
        "{}  {} absent {} -> {}, delegate {} ({scope}) [{state}]",
        a.id,
        a.user,
        time_text(&a.from),
        time_text(&a.to),
        a.delegate
    )
}

pub fn event_json(e: &proto::DocumentEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": time(&e.at),
        "document_id": e.document_id,
        "kind": e.kind,
        "actor": e.actor,
        "step": opt_step(e.step),
        "detail": e.detail,
        "state": state(e.state),
        "title": e.title,
        "on_behalf_of": e.on_behalf_of,
    })
}

pub fn user_json(u: &proto::User) -> Value {
    json!({
        "name": u.name,
        "display_name": u.display_name,
        "roles": u.roles.iter().map(|r| role(*r)).collect::<Vec<_>>(),
        "created_at": time(&u.created_at),
        "certificates": u.certificates.iter().map(cert_json).collect::<Vec<_>>(),
    })
}

/// A certificate summary: `{"subject", "issuer", "serial", "sha256", "not_before", "not_after"}`.
pub fn cert_json(c: &proto::CertificateSummary) -> Value {
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": c.serial,
        "sha256": c.sha256,
        "not_before": time(&c.not_before),
        "not_after": time(&c.not_after),
    })
}

/// RGS level as digits and stars, e.g. `2 (**)`; `-` for none.
pub fn level_text(level: u32) -> String {
    match level {
        0 => "-".to_owned(),
        l => format!("{l} ({})", "*".repeat(l.min(3) as usize)),
    }
}

/// `{"index", "step", "signer", "on_behalf_of", "subject", "certificate_sha256", "level",
/// "signing_time", "seal"}` (the CMS itself is written to files, never printed).
pub fn signature_json(s: &proto::SignatureInfo) -> Value {
    json!({
        "index": s.index,
        "step": s.step,
        "signer": s.signer,
        "on_behalf_of": s.on_behalf_of,
        "absence_id": s.absence_id,
        "route": s.route,
        "subject": s.subject,
        "certificate_sha256": s.certificate_sha256,
        "level": s.level,
        "signing_time": time(&s.signing_time),
        "seal": s.seal,
    })
}

pub fn indication(v: i32) -> String {
    match proto::Indication::try_from(v) {
        Ok(proto::Indication::Unspecified) | Err(_) => "UNKNOWN".to_owned(),
        Ok(i) => i.as_str_name().to_owned(),
    }
}

fn opt_string(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// A validation report: `{"indication", "sub_indication", "signers": [{"indication",
/// "sub_indication", "message", "signer", "level", "signing_time", "chain", "policy_oid"}]}`.
pub fn report_json(r: &proto::ValidationReport) -> Value {
    json!({
        "indication": indication(r.indication),
        "sub_indication": r.sub_indication,
        "signers": r.signers.iter().map(|s| json!({
            "indication": indication(s.indication),
            "sub_indication": s.sub_indication,
            "message": s.message,
            "signer": s.signer,
            "level": s.level,
            "signing_time": time(&s.signing_time),
            "chain": s.chain,
            "policy_oid": opt_string(&s.policy_oid),
            "validation_time": time(&s.validation_time),
            "proof_of_existence": time(&s.proof_of_existence),
            "reference": opt_string(&s.reference),
            "claimed_role": opt_string(&s.claimed_role),
        })).collect::<Vec<_>>(),
    })
}

/// Trust settings: `{"anchors": [cert], "intermediates": [cert], "crls": [{"issuer",
/// "this_update", "next_update", "revoked"}], "policy_levels": [{"oid", "level"}],
/// "signature_policy": {"oid", "sha256", "uri"} or null, "seal_configured", "seal": cert or null}`.
pub fn trust_json(t: &proto::TrustSettings) -> Value {
    json!({
        "anchors": t.anchors.iter().map(cert_json).collect::<Vec<_>>(),
        "intermediates": t.intermediates.iter().map(cert_json).collect::<Vec<_>>(),
        "crls": t.crls.iter().map(|c| json!({
            "issuer": c.issuer,
            "this_update": time(&c.this_update),
            "next_update": time(&c.next_update),
            "revoked": c.revoked,
        })).collect::<Vec<_>>(),
        "policy_levels": t.policy_levels.iter().map(|p| json!({
            "oid": p.oid,
            "level": p.level,
        })).collect::<Vec<_>>(),
        "signature_policy": match &t.signature_policy {
            Some(p) => json!({ "oid": p.oid, "sha256": hex::encode(&p.sha256), "uri": p.uri }),
            None => Value::Null,
        },
        "seal_configured": t.seal_configured,
        "seal": t.seal.as_ref().map(cert_json).unwrap_or(Value::Null),
    })
}

pub fn token_info_json(t: &proto::TokenInfo) -> Value {
    json!({
        "token_id": t.token_id,
        "user": opt_string(&t.user),
        "created_at": time(&t.created_at),
        "revoked_at": time(&t.revoked_at),
        "current": t.current,
        "last_used_at": time(&t.last_used_at),
    })
}

/// Tokens, one line each: id, user (`operator` for the platform's), dates. Never a secret.
pub fn tokens_table(ts: &[proto::TokenInfo]) -> String {
    if ts.is_empty() {
        return "no tokens\n".to_owned();
    }
    let mut out = format!(
        "{:<32}  {:<20} {:<20} {:<20} {}\n",
        "ID", "USER", "CREATED", "LAST USED", "REVOKED"
    );
    for t in ts {
        let user = if t.user.is_empty() {
            "operator".to_owned()
        } else {
            shown(&t.user).into_owned()
        };
        let mut line = format!(
            "{:<32}  {:<20} {:<20} {:<20} {}",
            shown(&t.token_id),
            user,
            time_text(&t.created_at),
            time_text(&t.last_used_at),
            time_text(&t.revoked_at)
        );
        if t.current {
            line.push_str("  (this token)");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub fn token_json(t: &proto::IssuedToken) -> Value {
    json!({ "token_id": t.token_id, "token": t.token, "user": t.user })
}

pub fn circuit_json(c: &proto::Circuit) -> Value {
    let steps: Vec<Value> = c
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "index": i,
                "kind": step_kind(s.kind),
                "actors": s.actors,
                "mode": step_mode(s.mode),
                "quorum": s.quorum,
                "condition": s.condition,
                "level": s.level,
                "deadline_seconds": s.deadline_seconds,
                "fallback": s.fallback,
                "visible": !s.invisible,
                "stamp": s.stamp.map(|p| json!({
                    "page": p.page, "x": p.x, "y": p.y, "width": p.width, "height": p.height,
                })),
                "certify": s.certify,
            })
        })
        .collect();
    json!({
        "name": c.name,
        "version": c.version,
        "fallback": c.fallback,
        "steps": steps,
        "created_at": time(&c.created_at),
        "created_by": c.created_by,
    })
}

// ---------------------------------------------------------------------------------------------
// Human-readable text

/// One line per step of a circuit definition.
fn step_definition_text(i: usize, s: &proto::StepDefinition) -> String {
    let mut line = format!(
        "  {i}. {:<9} {}",
        step_kind(s.kind),
        mode_text(s.mode, s.quorum)
    );
    if !s.actors.is_empty() {
        let _ = write!(line, " of {}", s.actors.join(", "));
    }
    if !s.condition.is_empty() {
        let _ = write!(line, "  if {}", s.condition);
    }
    if s.level > 0 {
        let _ = write!(line, "  level {}", s.level);
    }
    if s.deadline_seconds > 0 {
        let _ = write!(line, "  deadline {}", format_duration(s.deadline_seconds));
    }
    if !s.fallback.is_empty() {
        let _ = write!(line, "  fallback {}", s.fallback);
    }
    if s.invisible {
        line.push_str("  invisible in PDFs");
    }
    if let Some(p) = s.stamp {
        let _ = write!(
            line,
            "  stamp page {} at {},{} {}x{}",
            p.page, p.x, p.y, p.width, p.height
        );
    }
    if s.certify {
        line.push_str("  certifies PDFs");
    }
    line
}

pub fn circuit_text(c: &proto::Circuit) -> String {
    let mut out = format!("circuit {} version {}", c.name, c.version);
    if !c.created_by.is_empty() {
        let _ = write!(
            out,
            " (created by {} at {})",
            c.created_by,
            time_text(&c.created_at)
        );
    }
    out.push('\n');
    if !c.fallback.is_empty() {
        let _ = writeln!(out, "fallback {}", c.fallback);
    }
    for (i, s) in c.steps.iter().enumerate() {
        out.push_str(&step_definition_text(i, s));
        out.push('\n');
    }
    out
}

pub fn circuits_table(cs: &[proto::Circuit]) -> String {
    if cs.is_empty() {
        return "no circuits\n".to_owned();
    }
    let mut out = format!(
        "{:<24} {:>7} {:>5}  {}\n",
        "NAME", "VERSION", "STEPS", "KINDS"
    );
    for c in cs {
        let kinds: Vec<String> = c.steps.iter().map(|s| step_kind(s.kind)).collect();
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>5}  {}",
            c.name,
            c.version,
            c.steps.len(),
            kinds.join(" > ")
        );
    }
    out
}

pub fn users_table(us: &[proto::User]) -> String {
    let mut out = format!("{:<20} {:<28} {}\n", "NAME", "DISPLAY NAME", "ROLES");
    for u in us {
        let roles: Vec<String> = u.roles.iter().map(|r| role(*r)).collect();
        let _ = writeln!(
            out,
            "{:<20} {:<28} {}",
            u.name,
            shown(&u.display_name),
            roles.join(",")
        );
        for c in &u.certificates {
            let _ = writeln!(out, "{}", bound_cert_line(c));
        }
    }
    out
}

/// An indented line naming a bound certificate.
fn bound_cert_line(c: &proto::CertificateSummary) -> String {
    format!("    certificate {}  sha256 {}", shown(&c.subject), c.sha256)
}

/// A certificate on one line: subject, validity, SHA-256.
pub fn cert_text(c: &proto::CertificateSummary) -> String {
    format!(
        "{}\n      valid {} .. {}  sha256 {}",
        shown(&c.subject),
        time_text(&c.not_before),
        time_text(&c.not_after),
        c.sha256
    )
}

/// The signatures of a document, one line each.
pub fn signatures_table(sigs: &[proto::SignatureInfo]) -> String {
    if sigs.is_empty() {
        return "no signatures\n".to_owned();
    }
    let mut out = format!(
        "{:<5} {:<4} {:<16} {:<7} {:<20} {:<4}  {}\n",
        "INDEX", "STEP", "SIGNER", "LEVEL", "TIME", "SEAL", "SUBJECT"
    );
    for s in sigs {
        let mut signer = s.signer.clone();
        if !s.on_behalf_of.is_empty() {
            let _ = write!(signer, " for {}", s.on_behalf_of);
        }
        let _ = writeln!(
            out,
            "{:<5} {:<4} {:<16} {:<7} {:<20} {:<4}  {}",
            s.index,
            s.step,
            signer,
            level_text(s.level),
            time_text(&s.signing_time),
            if s.seal { "yes" } else { "no" },
            shown(&s.subject)
        );
    }
    out
}

/// The `signatures` section of `paraph show`: one line per signature.
pub fn signature_lines(sigs: &[proto::SignatureInfo]) -> String {
    let mut out = String::from("signatures\n");
    for s in sigs {
        let who = if s.seal {
            "the tenant seal".to_owned()
        } else if s.on_behalf_of.is_empty() {
            s.signer.clone()
        } else {
            format!("{} on behalf of {}", s.signer, s.on_behalf_of)
        };
        let _ = writeln!(
            out,
            "  #{:<3} step {} {} by {who} at {}, level {}\n       {}  sha256 {}",
            s.index,
            s.step,
            if s.seal { "sealed" } else { "signed" },
            time_text(&s.signing_time),
            level_text(s.level),
            shown(&s.subject),
            s.certificate_sha256
        );
    }
    out
}

/// A validation report: the overall indication, then one block per signer.
pub fn report_text(r: &proto::ValidationReport) -> String {
    let mut out = indication(r.indication);
    if !r.sub_indication.is_empty() {
        let _ = write!(out, " / {}", r.sub_indication);
    }
    out.push('\n');
    for (i, s) in r.signers.iter().enumerate() {
        let _ = write!(out, "signer {i}: {}", indication(s.indication));
        if !s.sub_indication.is_empty() {
            let _ = write!(out, " / {}", s.sub_indication);
        }
        if !s.message.is_empty() && s.message != "valid" {
            let _ = write!(out, ": {}", shown(&s.message));
        }
        out.push('\n');
        let mut field = |name: &str, value: &str| {
            let _ = writeln!(out, "  {name:<17}{value}");
        };
        if !s.reference.is_empty() {
            field("signs", &shown(&s.reference));
        }
        if !s.signer.is_empty() {
            field("subject", &shown(&s.signer));
        }
        if !s.claimed_role.is_empty() {
            field("claimed role", &shown(&s.claimed_role));
        }
        if s.level > 0 {
            field("level", &level_text(s.level));
        }
        if !s.policy_oid.is_empty() {
            field("signature policy", &s.policy_oid);
        }
        if s.signing_time.is_some() {
            field(
                "signing time",
                &format!("{} (claimed by the signer)", time_text(&s.signing_time)),
            );
        }
        if s.proof_of_existence.is_some() {
            field(
                "judged at",
                &format!(
                    "{} (proof of existence: the audit log)",
                    time_text(&s.proof_of_existence)
                ),
            );
        } else if s.validation_time.is_some() {
            field("judged at", &time_text(&s.validation_time));
        }
        if !s.chain.is_empty() {
            let chain: Vec<Cow<'_, str>> = s.chain.iter().map(|c| shown(c)).collect();
            field("chain", &chain.join(&format!("\n{:19}-> ", "")));
        }
    }
    out
}

/// The tenant's trust settings; `now` flags CRLs past their nextUpdate.
pub fn trust_text(t: &proto::TrustSettings, now: i64) -> String {
    let mut out = String::new();
    let certs = |out: &mut String, title: &str, cs: &[proto::CertificateSummary]| {
        let _ = writeln!(out, "{title}");
        if cs.is_empty() {
            out.push_str("  none\n");
        }
        for c in cs {
            let _ = writeln!(out, "  {}", cert_text(c));
        }
    };
    certs(&mut out, "trust anchors", &t.anchors);
    certs(&mut out, "intermediates", &t.intermediates);
    out.push_str("crls\n");
    if t.crls.is_empty() {
        out.push_str(
            "  none (certificates cannot be checked for revocation: signatures are refused)\n",
        );
    }
    for c in &t.crls {
        let _ = write!(
            out,
            "  {}\n      this update {}  next update {}  {} revoked",
            shown(&c.issuer),
            time_text(&c.this_update),
            time_text(&c.next_update),
            c.revoked
        );
        if c.next_update.as_ref().is_some_and(|n| n.seconds < now) {
            out.push_str("  PAST ITS NEXT UPDATE: set a fresh CRL");
        }
        out.push('\n');
    }
    out.push_str("policy levels\n");
    if t.policy_levels.is_empty() {
        out.push_str("  none (no certificate policy is accepted)\n");
    }
    for p in &t.policy_levels {
        let _ = writeln!(out, "  {:<32} {}", p.oid, level_text(p.level));
    }
    match &t.signature_policy {
        Some(p) => {
            let _ = writeln!(
                out,
                "signature policy\n  {}  sha256 {}  {}",
                p.oid,
                hex::encode(&p.sha256),
                p.uri
            );
        }
        None => out.push_str("signature policy\n  none\n"),
    }
    match &t.seal {
        Some(c) => {
            let _ = writeln!(out, "seal\n  {}", cert_text(c));
        }
        None if t.seal_configured => out.push_str("seal\n  configured\n"),
        None => out.push_str("seal\n  not configured (seal steps are refused)\n"),
    }
    out
}

pub fn user_text(u: &proto::User) -> String {
    let roles: Vec<String> = u.roles.iter().map(|r| role(*r)).collect();
    let display = if u.display_name.is_empty() {
        String::new()
    } else {
        format!(" ({})", shown(&u.display_name))
    };
    let mut out = format!("user {}{display}: {}\n", u.name, roles.join(", "));
    for c in &u.certificates {
        out.push_str(&bound_cert_line(c));
        out.push('\n');
    }
    out
}

pub fn inbox_table(items: &[proto::InboxItem]) -> String {
    if items.is_empty() {
        return "inbox is empty\n".to_owned();
    }
    let mut out = format!(
        "{:<32}  {:<8} {:<16} {:<9} {:<20} {:<20} {}\n",
        "ID", "TYPE", "CIRCUIT", "STEP", "WAITING SINCE", "DUE", "TITLE"
    );
    for i in items {
        let mut title = shown(&i.title).into_owned();
        if !i.on_behalf_of.is_empty() {
            let how = match i.route.as_str() {
                "escalation" => "escalated",
                "overdue" => "overdue, escalated",
                _ => "delegated",
            };
            let _ = write!(title, " ({how}: on behalf of {})", i.on_behalf_of);
        }
        let _ = writeln!(
            out,
            "{:<32}  {:<8} {:<16} {:<9} {:<20} {:<20} {}",
            i.id,
            doc_type(i.r#type),
            i.circuit,
            format!("{} {}", i.step, step_kind(i.step_kind)),
            time_text(&i.waiting_since),
            time_text(&i.due_at),
            title
        );
    }
    out
}

pub fn event_text(e: &proto::DocumentEvent) -> String {
    let mut line = format!("{}  {}  {:<14}", time_text(&e.at), e.document_id, e.kind);
    if e.step >= 0 {
        let _ = write!(line, " step {}", e.step);
    }
    if !e.actor.is_empty() {
        let _ = write!(line, " by {}", e.actor);
    }
    let _ = write!(line, "  [{}] {:?}", state(e.state), e.title);
    if !e.detail.is_empty() {
        let _ = write!(line, "  {}", shown(&e.detail));
    }
    line
}

/// A one-line summary of where a document stands.
pub fn document_summary(d: &proto::Document) -> String {
    let st = state(d.state);
    match d
        .steps
        .iter()
        .find(|s| s.index as i64 == i64::from(d.current_step))
    {
        Some(s) if d.current_step >= 0 => format!(
            "{} {st}: step {} ({} {}) waiting for {}",
            d.id,
            s.index,
            step_kind(s.kind),
            mode_text(s.mode, s.quorum),
            s.actors.join(", ")
        ),
        _ => format!("{} {st}", d.id),
    }
}

/// The bordereaux of a PES flow, one line each (what the officer signs).
pub fn bordereaux_text(b: &[crate::formats::xades_pes::BordereauSummary]) -> String {
    let mut out = String::from("bordereaux\n");
    for s in b {
        let _ = writeln!(
            out,
            "  {}  {} {}  {} piece(s)  {}.{:02} EUR{}  {}",
            shown(&s.id),
            if s.kind == "PES_RecetteAller" {
                "titles"
            } else {
                "mandates"
            },
            shown(&s.exercise),
            s.pieces,
            s.total_cents / 100,
            (s.total_cents % 100).abs(),
            if s.signed { "  signed" } else { "" },
            s.beneficiaries
                .iter()
                .map(|n| shown(n).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

pub fn document_text(d: &proto::Document) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "document   {}", d.id);
    let _ = writeln!(out, "title      {}", shown(&d.title));
    let _ = writeln!(out, "type       {}", doc_type(d.r#type));
    let _ = write!(out, "state      {}", state(d.state));
    if d.current_step >= 0 {
        let _ = write!(
            out,
            " (step {} of {} active)",
            d.current_step,
            d.steps.len()
        );
    }
    out.push('\n');
    let _ = writeln!(out, "circuit    {} v{}", d.circuit, d.circuit_version);
    let _ = writeln!(out, "submitter  {}", shown(&d.submitter));
    let name = if d.file_name.is_empty() {
        Cow::Borrowed("content")
    } else {
        shown(&d.file_name)
    };
    let _ = writeln!(
        out,
        "file       {name} ({} bytes, sha256 {})",
        d.content_size, d.content_sha256
    );
    if !d.signature_format.is_empty() {
        let _ = writeln!(out, "format     {}", d.signature_format);
    }
    for r in &d.revision_sha256 {
        let _ = writeln!(out, "signed     revision sha256 {r}");
    }
    if !d.metadata.is_empty() {
        let mut meta: Vec<String> = d
            .metadata
            .iter()
            .map(|(k, v)| format!("{}={}", shown(k), shown(v)))
            .collect();
        meta.sort();
        let _ = writeln!(out, "metadata   {}", meta.join(" "));
    }
    let _ = writeln!(out, "created    {}", time_text(&d.created_at));
    let _ = writeln!(out, "updated    {}", time_text(&d.updated_at));
    out.push_str("steps\n");
    for s in &d.steps {
        // A seal step has no actors: the server applies the tenant's seal.
        let (mode, actors) = if s.kind == proto::StepKind::Seal as i32 && s.actors.is_empty() {
            ("server".to_owned(), "tenant seal".to_owned())
        } else {
            (mode_text(s.mode, s.quorum), s.actors.join(", "))
        };
        let mut line = format!(
            "  {}. {:<9} {:<9} {:<10} {actors}",
            s.index,
            step_kind(s.kind),
            step_status(s.status),
            mode,
        );
        if !s.condition.is_empty() {
            let _ = write!(line, "  if {}", s.condition);
        }
        if s.level > 0 {
            let _ = write!(line, "  level {}", s.level);
        }
        if s.due_at.is_some() {
            let _ = write!(line, "  due {}", time_text(&s.due_at));
        } else if s.deadline_seconds > 0 {
            let _ = write!(line, "  deadline {}", format_duration(s.deadline_seconds));
        }
        if s.overdue {
            line.push_str("  OVERDUE");
        }
        out.push_str(&line);
        out.push('\n');
        for r in &s.routes {
            let _ = write!(out, "       {} -> {} ({}", r.actor, r.to.join(", "), r.kind);
            if !r.absence_id.is_empty() {
                let _ = write!(out, ", absence {}", r.absence_id);
            }
            if !r.reason.is_empty() {
                let _ = write!(out, ": {}", shown(&r.reason));
            }
            out.push_str(")\n");
        }
        for a in &s.actions {
            let by = if a.kind == proto::ActionKind::Sealed as i32 {
                "the tenant seal"
            } else {
                &a.actor
            };
            let mut line = format!(
                "       {} by {by} at {}",
                action_kind(a.kind),
                time_text(&a.at)
            );
            if !a.on_behalf_of.is_empty() {
                let _ = write!(line, " on behalf of {}", a.on_behalf_of);
                if !a.absence_id.is_empty() {
                    let _ = write!(line, " (absence {})", a.absence_id);
                } else if !a.route.is_empty() {
                    let _ = write!(line, " ({})", a.route);
                }
            }
            if !a.reason.is_empty() {
                let _ = write!(line, ": {:?}", a.reason);
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str("history\n");
    for h in &d.history {
        let mut line = format!("  #{:<3} {}  {}", h.seq, time_text(&h.at), h.kind);
        if h.step >= 0 {
            let _ = write!(line, " step {}", h.step);
        }
        if !h.actor.is_empty() {
            let _ = write!(line, " by {}", h.actor);
        }
        if !h.detail.is_empty() {
            let _ = write!(line, ": {}", shown(&h.detail));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_server_cannot_drive_the_terminal() {
        let evil = "ok\r\u{1b}[2K\u{9b}2J\u{8}\u{7f}\u{202e}\u{2066}\u{2028}\tline\nnext";
        assert_eq!(
            shown(evil),
            "ok\\r\\u{1b}[2K\\u{9b}2J\\u{8}\\u{7f}\\u{202e}\\u{2066}\\u{2028}\\tline\\nnext"
        );
        assert_eq!(
            for_terminal("a\x1bb\nc"),
            "a\\u{1b}b\nc",
            "line feeds of a block stay"
        );
        assert!(matches!(shown("plain café ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_is_monotonic_day_by_day() {
        // Every day from 1900 to 2200 follows the previous one.
        let mut prev = rfc3339(-2_208_988_800);
        for day in 1..(300 * 366) {
            let cur = rfc3339(-2_208_988_800 + day * 86_400);
            assert!(cur > prev, "{cur} after {prev}");
            prev = cur;
        }
    }

    #[test]
    fn enums_are_lower_case_words() {
        assert_eq!(
            state(proto::DocumentState::InProgress as i32),
            "in_progress"
        );
        assert_eq!(doc_type(proto::DocumentType::Mandate as i32), "mandate");
        assert_eq!(step_kind(proto::StepKind::Visa as i32), "visa");
        assert_eq!(step_status(proto::StepStatus::Active as i32), "active");
        assert_eq!(step_mode(0), "all");
        assert_eq!(role(proto::Role::Officer as i32), "officer");
        assert_eq!(action_kind(proto::ActionKind::Approved as i32), "approved");
        assert_eq!(state(99), "unknown");
    }

    #[test]
    fn document_json_has_stable_fields() {
        let d = proto::Document {
            id: "ab".repeat(16),
            r#type: proto::DocumentType::Contract as i32,
            state: proto::DocumentState::Completed as i32,
            current_step: -1,
            created_at: Some(proto::Timestamp { seconds: 0 }),
            ..Default::default()
        };
        let v = document_json(&d);
        assert_eq!(v["type"], "contract");
        assert_eq!(v["state"], "completed");
        assert_eq!(v["current_step"], Value::Null);
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["updated_at"], Value::Null);
        assert!(v["steps"].as_array().unwrap().is_empty());
    }
}
