//! `paraph audit …`: an auditor fetches the log's public key, checkpoints, consistency proofs,
//! events and evidence bundles. Every checkpoint received is verified against the log key
//! before it is shown or saved; `consistency` proves the log only grew since a saved one.

use super::commands::{clients, print_json};
use super::error::CliError;
use super::validation::read_file;
use super::ClientOpts;
use crate::audit::{merkle, AuditEvent, AuditPublicKey, SignedCheckpoint};
use crate::proto;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write the log's public key (PEM), to verify checkpoints and bundles offline.
    Key(KeyArgs),
    /// Fetch the latest signed checkpoint, verify it, and optionally save it.
    Checkpoint(CheckpointArgs),
    /// Prove that the log only grew since a saved checkpoint.
    Consistency(ConsistencyArgs),
    /// List events: a document's, or an index range.
    Events(EventsArgs),
    /// Fetch a document's evidence bundle (verify it with `paraph verify-bundle`).
    Export(ExportArgs),
}

#[derive(Args)]
pub struct KeyArgs {
    /// Where to write the PEM (`-`: stdout).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct CheckpointArgs {
    /// Save the signed checkpoint to this file (for a later `audit consistency --from`).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// The log's public key to verify with (default: fetched from the server, which proves
    /// nothing against a lying server; pin the key you exported earlier).
    #[arg(long, value_name = "KEY.pem")]
    pub log_key: Option<PathBuf>,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ConsistencyArgs {
    /// A checkpoint saved earlier with `audit checkpoint --save`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The log's public key (default: fetched from the server).
    #[arg(long, value_name = "KEY.pem")]
    pub log_key: Option<PathBuf>,
    /// Also save the new checkpoint here once it is proven consistent.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct EventsArgs {
    /// A document's events.
    #[arg(long, value_name = "ID", conflicts_with_all = ["start", "count"])]
    pub document: Option<String>,
    /// First index of a range.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub start: u64,
    /// Number of events of a range (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub count: u64,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Document id.
    pub id: String,
    /// Bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub c: ClientOpts,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if path == Path::new("-") {
        use std::io::Write as _;
        return std::io::stdout()
            .write_all(bytes)
            .map_err(|e| CliError::Local(format!("stdout: {e}")));
    }
    std::fs::write(path, bytes)
        .map_err(|e| CliError::Local(format!("cannot write {}: {e}", path.display())))
}

/// The log key: the pinned file, or the server's.
async fn log_key(
    cl: &mut super::conn::Clients,
    pinned: &Option<PathBuf>,
) -> Result<AuditPublicKey, CliError> {
    let pem = match pinned {
        Some(p) => {
            super::validation::read_kind("log key", p, crate::pki::kind::FileKind::PublicKey)?
        }
        None => cl
            .audit
            .get_log_key(proto::GetLogKeyRequest {})
            .await?
            .into_inner()
            .public_key_pem
            .into_bytes(),
    };
    AuditPublicKey::from_pem(&pem).map_err(|e| CliError::Usage(format!("log key: {e}")))
}

/// Fetches the current checkpoint and verifies its signature and origin.
async fn current(
    cl: &mut super::conn::Clients,
    key: &AuditPublicKey,
) -> Result<SignedCheckpoint, CliError> {
    let r = cl
        .audit
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await?
        .into_inner();
    let cp = SignedCheckpoint::decode(r.checkpoint.as_bytes())
        .map_err(|e| CliError::NotPassed(format!("the server's checkpoint: {e}")))?;
    cp.verify(key, &r.origin)
        .map_err(|e| CliError::NotPassed(format!("the server's checkpoint: {e}")))?;
    Ok(cp)
}

fn checkpoint_json(cp: &SignedCheckpoint) -> Value {
    json!({
        "origin": cp.checkpoint.origin,
        "size": cp.checkpoint.size,
        "root_hash": hex::encode(cp.checkpoint.root),
        "time": crate::pki::format_rfc3339(cp.checkpoint.time),
    })
}

pub async fn audit(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Key(a) => {
            let mut cl = clients(&a.c).await?;
            let pem = cl
                .audit
                .get_log_key(proto::GetLogKeyRequest {})
                .await?
                .into_inner()
                .public_key_pem;
            write_file(&a.out, pem.as_bytes())?;
            if a.out != Path::new("-") {
                eprintln_text!("log public key written to {}", a.out.display());
            }
            Ok(())
        }
        AuditCommand::Checkpoint(a) => {
            let mut cl = clients(&a.c).await?;
            let key = log_key(&mut cl, &a.log_key).await?;
            let cp = current(&mut cl, &key).await?;
            if let Some(f) = &a.save {
                write_file(f, cp.encode().as_bytes())?;
            }
            if a.c.json {
                print_json(&checkpoint_json(&cp));
            } else {
                println_text!(
                    "checkpoint of {}: {} events, root {}, signed {} (signature verified)",
                    cp.checkpoint.origin,
                    cp.checkpoint.size,
                    hex::encode(cp.checkpoint.root),
                    crate::pki::format_rfc3339(cp.checkpoint.time)
                );
            }
            Ok(())
        }
        AuditCommand::Consistency(a) => {
            let saved = read_file("saved checkpoint", &a.from)?;
            let old = SignedCheckpoint::decode(&saved)
                .map_err(|e| CliError::Usage(format!("{}: {e}", a.from.display())))?;
            let mut cl = clients(&a.c).await?;
            let key = log_key(&mut cl, &a.log_key).await?;
            old.verify(&key, &old.checkpoint.origin)
                .map_err(|e| CliError::NotPassed(format!("saved checkpoint: {e}")))?;
            let new = current(&mut cl, &key).await?;
            let fail = |e: crate::audit::AuditError| CliError::NotPassed(e.to_string());
            new.checkpoint
                .ensure_not_older(&old.checkpoint)
                .map_err(fail)?;
            let proof = cl
                .audit
                .get_consistency_proof(proto::GetConsistencyProofRequest {
                    from_size: old.checkpoint.size,
                    to_size: new.checkpoint.size,
                })
                .await?
                .into_inner();
            let hashes = proof
                .hashes
                .iter()
                .map(|h| merkle::hash_from_slice(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            old.checkpoint
                .verify_consistency(&new.checkpoint, &hashes)
                .map_err(fail)?;
            if let Some(f) = &a.save {
                write_file(f, new.encode().as_bytes())?;
            }
            if a.c.json {
                print_json(&json!({
                    "consistent": true,
                    "from": checkpoint_json(&old),
                    "to": checkpoint_json(&new),
                }));
            } else {
                println_text!(
                    "consistent: the log only grew, from {} to {} events",
                    old.checkpoint.size,
                    new.checkpoint.size
                );
            }
            Ok(())
        }
        AuditCommand::Events(a) => {
            let mut cl = clients(&a.c).await?;
            let r = cl
                .audit
                .list_events(proto::ListEventsRequest {
                    document_id: a.document.unwrap_or_default(),
                    start: a.start,
                    count: a.count,
                })
                .await?
                .into_inner();
            let mut out = Vec::new();
            for e in &r.events {
                let ev = AuditEvent::parse(&e.event).map_err(|err| {
                    CliError::Local(format!("event {} from the server: {err}", e.index))
                })?;
                out.push(ev);
            }
            if a.c.json {
                print_json(&json!({
                    "events": out.iter().map(|e| serde_json::to_value(e).unwrap_or(Value::Null)).collect::<Vec<_>>()
                }));
            } else if out.is_empty() {
                println_text!("no event");
            } else {
                for e in &out {
                    let mut line = format!(
                        "#{:<6} {}  {:<18} {:<30} by {}",
                        e.index,
                        crate::pki::format_rfc3339(e.at),
                        e.kind,
                        e.subject,
                        e.actor
                    );
                    if let Some(o) = &e.on_behalf_of {
                        line.push_str(&format!(" on behalf of {o}"));
                    }
                    if !e.detail.is_empty() {
                        line.push_str(&format!("  {}", e.detail));
                    }
                    println_text!("{line}");
                }
            }
            Ok(())
        }
        AuditCommand::Export(a) => {
            let mut cl = clients(&a.c).await?;
            let b = cl
                .audit
                .export_evidence(proto::ExportEvidenceRequest {
                    document_id: a.id.clone(),
                })
                .await?
                .into_inner()
                .bundle;
            write_file(&a.out, &b)?;
            if a.c.json {
                print_json(&json!({"id": a.id, "file": a.out, "bytes": b.len()}));
            } else {
                println_text!(
                    "evidence bundle of {} written to {} ({} bytes)",
                    a.id,
                    a.out.display(),
                    b.len()
                );
            }
            Ok(())
        }
    }
}
