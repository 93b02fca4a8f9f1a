//! `paraph absence set|list|cancel` and `paraph reassign`: declaring absences with a delegate,
//! listing and cancelling them, and an admin moving a step from one actor to another.

use super::commands::{clients, idempotency_key, print_json};
use super::error::CliError;
use super::{render, ClientOpts, DocTypeArg, IdemOpts};
use crate::proto;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum AbsenceCommand {
    /// Declare an absence: while it lasts, your steps go to the delegate (and come back after).
    Set(SetArgs),
    /// List the absences you may see (yours, those you are the delegate of; all for admins).
    List(ListArgs),
    /// Cancel an absence (you are back): its steps return at once.
    Cancel(CancelArgs),
}

#[derive(Args)]
pub struct SetArgs {
    /// Start: RFC 3339 (2026-12-01T08:00:00Z) or a date (2026-12-01, midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End (exclusive), same forms.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Who acts for the absent user.
    #[arg(long, value_name = "USER")]
    pub delegate: String,
    /// Only documents of this type (repeatable; default: every type).
    #[arg(long = "type", value_enum, ignore_case = true, value_name = "TYPE")]
    pub types: Vec<DocTypeArg>,
    /// Only documents of this circuit (repeatable; default: every circuit).
    #[arg(long = "circuit", value_name = "NAME")]
    pub circuits: Vec<String>,
    /// The absent user (admins only; default: yourself).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this user's absences.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Include ended and cancelled absences.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct CancelArgs {
    /// Absence id (from `paraph absence list`).
    pub id: String,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ReassignArgs {
    /// Document id.
    pub id: String,
    /// Step index (from `paraph show`).
    #[arg(long, value_name = "N")]
    pub step: u32,
    /// The actor the step is taken from.
    #[arg(long, value_name = "USER")]
    pub from: String,
    /// The actor the step is given to.
    #[arg(long, value_name = "USER")]
    pub to: String,
    /// Why (recorded in the document's history).
    #[arg(long, value_name = "R")]
    pub reason: String,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

/// `2026-12-01T08:00:00Z` or `2026-12-01` (midnight UTC) to Unix seconds.
fn parse_time(flag: &str, s: &str) -> Result<i64, CliError> {
    let s = s.trim();
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    crate::pki::parse_rfc3339(&full).map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
}

fn doc_type(t: &DocTypeArg) -> i32 {
    (match t {
        DocTypeArg::Mandate => proto::DocumentType::Mandate,
        DocTypeArg::Contract => proto::DocumentType::Contract,
        DocTypeArg::Other => proto::DocumentType::Other,
    }) as i32
}

pub async fn absence(command: AbsenceCommand) -> Result<(), CliError> {
    match command {
        AbsenceCommand::Set(a) => {
            let from = parse_time("from", &a.from)?;
            let to = parse_time("to", &a.to)?;
            let mut cl = clients(&a.c).await?;
            let r = cl
                .delegation
                .declare_absence(proto::DeclareAbsenceRequest {
                    user: a.user.unwrap_or_default(),
                    from: Some(proto::Timestamp { seconds: from }),
                    to: Some(proto::Timestamp { seconds: to }),
                    delegate: a.delegate,
                    types: a.types.iter().map(doc_type).collect(),
                    circuits: a.circuits,
                    idempotency_key: idempotency_key(&a.idem)?,
                })
                .await?
                .into_inner();
            if a.c.json {
                print_json(&render::absence_json(&r));
            } else {
                println_text!("{}", r.id);
                eprintln_text!("{}", render::absence_line(&r));
            }
            Ok(())
        }
        AbsenceCommand::List(a) => {
            let mut cl = clients(&a.c).await?;
            let r = cl
                .delegation
                .list_absences(proto::ListAbsencesRequest {
                    user: a.user.unwrap_or_default(),
                    include_past: a.all,
                })
                .await?
                .into_inner();
            if a.c.json {
                print_json(&json!({
                    "absences": r.absences.iter().map(render::absence_json).collect::<Vec<Value>>()
                }));
            } else if r.absences.is_empty() {
                println_text!("no absence");
            } else {
                for x in &r.absences {
                    println_text!("{}", render::absence_line(x));
                }
            }
            Ok(())
        }
        AbsenceCommand::Cancel(a) => {
            let mut cl = clients(&a.c).await?;
            let r = cl
                .delegation
                .cancel_absence(proto::CancelAbsenceRequest {
                    id: a.id,
                    idempotency_key: idempotency_key(&a.idem)?,
                })
                .await?
                .into_inner();
            if a.c.json {
                print_json(&render::absence_json(&r));
            } else {
                println_text!("cancelled: {}", render::absence_line(&r));
            }
            Ok(())
        }
    }
}

pub async fn reassign(a: ReassignArgs) -> Result<(), CliError> {
    let mut cl = clients(&a.c).await?;
    let d = cl
        .delegation
        .reassign(proto::ReassignRequest {
            document_id: a.id,
            step: a.step,
            from: a.from.clone(),
            to: a.to.clone(),
            reason: a.reason,
            idempotency_key: idempotency_key(&a.idem)?,
        })
        .await?
        .into_inner();
    if a.c.json {
        print_json(&render::document_json(&d));
    } else {
        println_text!(
            "reassigned step {} from {} to {}: {}",
            a.step,
            a.from,
            a.to,
            render::document_summary(&d)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_accept_dates_and_rfc3339() {
        assert_eq!(parse_time("from", "2026-01-01").unwrap(), 1_767_225_600);
        assert_eq!(
            parse_time("from", "2026-01-01T01:00:00Z").unwrap(),
            1_767_229_200
        );
        let e = parse_time("to", "tomorrow").unwrap_err().to_string();
        assert!(e.starts_with("--to:"), "{e}");
    }
}
