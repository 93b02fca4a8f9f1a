//! The client commands: each builds its request, calls the server and prints the answer as text
//! or, with `--json`, as JSON.
//!
//! Commands whose result is a new secret or a new id print it alone on stdout in text mode
//! (`TOKEN=$(paraph admin token issue alice)`, `ID=$(paraph submit …)`), with a note on stderr.

use super::conn::{connect, Clients, Target};
use super::error::CliError;
use super::render;
use super::{
    AdminCommand, CircuitCommand, ClientOpts, Command, DocTypeArg, IdemOpts, RoleArg,
    TenantCommand, TokenCommand, UserCommand,
};
use crate::proto::{self, submit_document_request::Part};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the content chunks sent by `submit`.
const CHUNK: usize = 1024 * 1024;

fn target(c: &ClientOpts) -> Target {
    Target {
        addr: c.addr.clone(),
        token: c.token.clone(),
        tenant: c.tenant.clone(),
        ca: c.ca.clone(),
        cert: c.cert.clone(),
        key: c.key.clone(),
    }
}

pub(super) async fn clients(c: &ClientOpts) -> Result<Clients, CliError> {
    connect(&target(c)).await
}

pub(super) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// The key given, else a fresh one in time order, as a UUIDv7 is (RFC 9562): 48 bits of
/// milliseconds since the epoch, then 80 random bits, in 32 hex digits. The server keeps its
/// idempotency records in key order: keys that grow with time land beside each other, while
/// random ones scatter over the whole index (over 100,000 documents that cost about a fifth
/// of the server's time, see BENCHMARKS.md).
pub(super) fn idempotency_key(i: &IdemOpts) -> Result<String, CliError> {
    match &i.idempotency_key {
        Some(k) => Ok(k.clone()),
        None => {
            let mut b = [0u8; 16];
            getrandom::getrandom(&mut b[6..])
                .map_err(|e| CliError::Local(format!("no randomness for a key: {e}")))?;
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
            Ok(hex::encode(b))
        }
    }
}

/// Parses repeated `key=value` arguments.
fn parse_meta(items: &[String]) -> Result<HashMap<String, String>, CliError> {
    let mut out = HashMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--meta {item:?}: expected key=value")))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(CliError::Usage(format!("--meta {item:?}: empty key")));
        }
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(CliError::Usage(format!("--meta: key {k:?} given twice")));
        }
    }
    Ok(out)
}

/// Runs a client command.
pub async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(_)
        | Command::Admin {
            command:
                AdminCommand::Init(_)
                | AdminCommand::Convert(_)
                | AdminCommand::OperatorToken(_)
                | AdminCommand::Check(_)
                | AdminCommand::Compact(_)
                | AdminCommand::Migrate(_)
                | AdminCommand::Copy(_),
        }
        | Command::Pki { .. }
        | Command::Api { .. }
        | Command::Completions { .. }
        | Command::Bench(_) => {
            unreachable!("server, offline and bench commands are dispatched before")
        }
        Command::Admin {
            command: AdminCommand::Tenant { command },
        } => tenant(command).await,
        Command::Admin {
            command: AdminCommand::User { command },
        } => user(command).await,
        Command::Admin {
            command: AdminCommand::Token { command },
        } => token(command).await,
        Command::Admin {
            command: AdminCommand::Trust { command },
        } => super::trust::trust(command).await,
        Command::Circuit { command } => circuit(command).await,
        Command::Submit(a) => submit(a).await,
        Command::Inbox(a) => inbox(a).await,
        Command::Show(a) => show(&a.c, a.id).await,
        Command::Approve(a) => {
            let mut cl = clients(&a.c).await?;
            let step = active_step(&mut cl, &a.id).await?;
            let d = cl
                .docs
                .approve(proto::ApproveRequest {
                    id: a.id,
                    step: Some(step),
                    comment: a.comment.unwrap_or_default(),
                    idempotency_key: idempotency_key(&a.idem)?,
                })
                .await?
                .into_inner();
            acted(&d, "approved", step, a.c.json);
            Ok(())
        }
        Command::Reject(a) => {
            let mut cl = clients(&a.c).await?;
            let step = active_step(&mut cl, &a.id).await?;
            let d = cl
                .docs
                .reject(proto::RejectRequest {
                    id: a.id,
                    step: Some(step),
                    reason: a.reason,
                    idempotency_key: idempotency_key(&a.idem)?,
                })
                .await?
                .into_inner();
            acted(&d, "rejected", step, a.c.json);
            Ok(())
        }
        Command::Withdraw(a) => {
            let mut cl = clients(&a.c).await?;
            let d = cl
                .docs
                .withdraw(proto::WithdrawRequest {
                    id: a.id,
                    reason: a.reason.unwrap_or_default(),
                    idempotency_key: idempotency_key(&a.idem)?,
                })
                .await?
                .into_inner();
            if a.c.json {
                print_json(&render::document_json(&d));
            } else {
                println_text!("withdrawn: {}", render::document_summary(&d));
            }
            Ok(())
        }
        Command::Watch(a) => watch(&a.c).await,
        Command::Content(a) => content(&a.c, &a.id, &a.out, a.revision).await,
        Command::Sign(a) => super::signing::sign(a).await,
        Command::Token {
            command: super::pkcs11::TokenCommand::List(a),
        } => super::pkcs11::list(a).await,
        Command::Signatures(a) => super::validation::signatures(a).await,
        Command::Validate(a) => super::validation::validate(a).await,
        Command::VerifyBundle(a) => super::evidence::verify_bundle(a),
        Command::Absence { command } => super::absence::absence(command).await,
        Command::Reassign(a) => super::absence::reassign(a).await,
        Command::Audit { command } => super::audit::audit(command).await,
    }
}

/// `paraph show`: the document, and its signatures when it has signed or sealed steps.
async fn show(c: &ClientOpts, id: String) -> Result<(), CliError> {
    let mut cl = clients(c).await?;
    let d = cl
        .docs
        .get_document(proto::GetDocumentRequest { id: id.clone() })
        .await?
        .into_inner();
    let signed = d.steps.iter().flat_map(|s| &s.actions).any(|a| {
        a.kind == proto::ActionKind::Signed as i32 || a.kind == proto::ActionKind::Sealed as i32
    });
    let sigs = if signed {
        match cl
            .sigs
            .get_signatures(proto::GetSignaturesRequest { document_id: id })
            .await
        {
            Ok(r) => r.into_inner().signatures,
            // A server without signatures: show the document alone.
            Err(s) if s.code() == tonic::Code::Unimplemented => Vec::new(),
            Err(s) => return Err(s.into()),
        }
    } else {
        Vec::new()
    };
    // A PES flow: what each bordereau holds, read from the content as it is now.
    let bordereaux = if d.signature_format == "xades-pes" {
        let content = latest_content(&mut cl, &d.id).await?;
        crate::formats::xades_pes::summary(&content, 3)
            .map_err(|e| CliError::Local(format!("the PES flow: {e}")))?
    } else {
        Vec::new()
    };
    if c.json {
        let mut v = render::document_json(&d);
        v["signatures"] = Value::Array(sigs.iter().map(render::signature_json).collect());
        if !bordereaux.is_empty() {
            v["bordereaux"] =
                serde_json::to_value(&bordereaux).map_err(|e| CliError::Local(e.to_string()))?;
        }
        print_json(&v);
    } else {
        print_text!("{}", render::document_text(&d));
        if !bordereaux.is_empty() {
            print_text!("{}", render::bordereaux_text(&bordereaux));
        }
        if !sigs.is_empty() {
            print_text!("{}", render::signature_lines(&sigs));
        }
    }
    Ok(())
}

/// The step a document is waiting on, so that an officer acts only on the step he saw.
async fn active_step(cl: &mut Clients, id: &str) -> Result<u32, CliError> {
    let d = cl
        .docs
        .get_document(proto::GetDocumentRequest { id: id.to_owned() })
        .await?
        .into_inner();
    u32::try_from(d.current_step).map_err(|_| {
        CliError::Precondition(format!(
            "document {id} has no active step (state {})",
            render::state(d.state)
        ))
    })
}

fn acted(d: &proto::Document, what: &str, step: u32, json: bool) {
    if json {
        print_json(&render::document_json(d));
    } else {
        println_text!("{what} step {step}: {}", render::document_summary(d));
    }
}

async fn tenant(command: TenantCommand) -> Result<(), CliError> {
    match command {
        TenantCommand::Create {
            id,
            name,
            admin,
            idem,
            c,
        } => {
            // Tenants are created by the platform operator outside any tenant.
            let mut t = target(&c);
            t.tenant = None;
            let mut cl = connect(&t).await?;
            let r = cl
                .admin
                .create_tenant(proto::CreateTenantRequest {
                    id,
                    display_name: name.unwrap_or_default(),
                    admin_user: admin.unwrap_or_default(),
                    idempotency_key: idempotency_key(&idem)?,
                })
                .await?
                .into_inner();
            let tenant = r.tenant.unwrap_or_default();
            let admin = r.admin.unwrap_or_default();
            let token = r.admin_token.unwrap_or_default();
            if c.json {
                print_json(&json!({
                    "tenant": tenant.id,
                    "display_name": tenant.display_name,
                    "admin": admin.name,
                    "token": token.token,
                    "token_id": token.token_id,
                }));
            } else {
                println_text!("tenant    {}", tenant.id);
                if !tenant.display_name.is_empty() {
                    println_text!("name      {}", tenant.display_name);
                }
                println_text!("admin     {}", admin.name);
                println_text!("token id  {}", token.token_id);
                println_text!("token     {}", token.token);
                eprintln_text!("the admin token is shown once: store it safely");
            }
            Ok(())
        }
    }
}

async fn user(command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Create {
            name,
            role,
            display_name,
            idem,
            c,
        } => {
            let mut cl = clients(&c).await?;
            let roles = role
                .iter()
                .map(|r| match r {
                    RoleArg::Submitter => proto::Role::Submitter,
                    RoleArg::Officer => proto::Role::Officer,
                    RoleArg::Admin => proto::Role::Admin,
                    RoleArg::Auditor => proto::Role::Auditor,
                } as i32)
                .collect();
            let u = cl
                .admin
                .create_user(proto::CreateUserRequest {
                    name,
                    display_name: display_name.unwrap_or_default(),
                    roles,
                    idempotency_key: idempotency_key(&idem)?,
                })
                .await?
                .into_inner();
            if c.json {
                print_json(&render::user_json(&u));
            } else {
                print_text!("created {}", render::user_text(&u));
            }
            Ok(())
        }
        UserCommand::List { c } => {
            let mut cl = clients(&c).await?;
            let users = cl
                .admin
                .list_users(proto::ListUsersRequest {})
                .await?
                .into_inner()
                .users;
            if c.json {
                print_json(&json!({
                    "users": users.iter().map(render::user_json).collect::<Vec<_>>()
                }));
            } else {
                print_text!("{}", render::users_table(&users));
            }
            Ok(())
        }
        UserCommand::BindCert {
            user,
            certificate,
            idem,
            c,
        } => super::trust::bind_cert(user, certificate, idem, c).await,
    }
}

async fn token(command: TokenCommand) -> Result<(), CliError> {
    // Operator tokens belong to no tenant: the call is made outside any.
    let outside_tenants = |mut c: ClientOpts| {
        c.tenant = None;
        c
    };
    match command {
        TokenCommand::Issue {
            user: None,
            operator: true,
            idem,
            c,
        } => issue_operator_token(outside_tenants(c), idem, false).await,
        TokenCommand::Issue { user, idem, c, .. } => {
            let user =
                user.ok_or_else(|| CliError::Usage("name the user (or --operator)".into()))?;
            let mut cl = clients(&c).await?;
            let t = cl
                .admin
                .issue_token(proto::IssueTokenRequest {
                    user,
                    idempotency_key: idempotency_key(&idem)?,
                })
                .await?
                .into_inner()
                .token
                .unwrap_or_default();
            if c.json {
                print_json(&render::token_json(&t));
            } else {
                println_text!("{}", t.token);
                eprintln_text!(
                    "token id {} for {} (the token is shown once: store it safely)",
                    render::shown(&t.token_id),
                    render::shown(&t.user)
                );
            }
            Ok(())
        }
        TokenCommand::Rotate { idem, c } => {
            issue_operator_token(outside_tenants(c), idem, true).await
        }
        TokenCommand::Revoke {
            token_id,
            operator,
            idem,
            c,
        } => {
            let c = if operator { outside_tenants(c) } else { c };
            // The token itself is never sent nor printed: its SHA-256 names it.
            let token = token_id.trim();
            let (token_id, token_sha256) = if token.starts_with("pph_") {
                (String::new(), hex::encode(Sha256::digest(token.as_bytes())))
            } else {
                (token.to_owned(), String::new())
            };
            let mut cl = clients(&c).await?;
            let r = cl
                .admin
                .revoke_token(proto::RevokeTokenRequest {
                    token_id,
                    token_sha256,
                    idempotency_key: idempotency_key(&idem)?,
                })
                .await?
                .into_inner();
            if c.json {
                print_json(&json!({ "token_id": r.token_id, "revoked": true }));
            } else {
                println_text!("revoked token {}", render::shown(&r.token_id));
            }
            Ok(())
        }
        TokenCommand::List { user, operator, c } => {
            let c = if operator { outside_tenants(c) } else { c };
            let mut cl = clients(&c).await?;
            let tokens = cl
                .admin
                .list_tokens(proto::ListTokensRequest {
                    user: user.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .tokens;
            if c.json {
                print_json(&json!({
                    "tokens": tokens.iter().map(render::token_info_json).collect::<Vec<_>>()
                }));
            } else {
                print_text!("{}", render::tokens_table(&tokens));
            }
            Ok(())
        }
    }
}

/// Issues a platform operator token; `rotate` revokes the one the call is made with.
async fn issue_operator_token(c: ClientOpts, idem: IdemOpts, rotate: bool) -> Result<(), CliError> {
    let mut cl = clients(&c).await?;
    let r = cl
        .admin
        .issue_operator_token(proto::IssueOperatorTokenRequest {
            revoke_caller: rotate,
            idempotency_key: idempotency_key(&idem)?,
        })
        .await?
        .into_inner();
    let t = r.token.unwrap_or_default();
    if c.json {
        print_json(&json!({
            "token": t.token,
            "token_id": t.token_id,
            "revoked_token_id": if r.revoked_token_id.is_empty() {
                Value::Null
            } else {
                Value::String(r.revoked_token_id.clone())
            },
        }));
    } else {
        println_text!("{}", t.token);
        eprintln_text!(
            "operator token id {} (the token is shown once: store it safely)",
            render::shown(&t.token_id)
        );
        if !r.revoked_token_id.is_empty() {
            eprintln_text!(
                "revoked operator token {} (the one this command ran with)",
                render::shown(&r.revoked_token_id)
            );
        }
    }
    Ok(())
}

async fn circuit(command: CircuitCommand) -> Result<(), CliError> {
    match command {
        CircuitCommand::Create { file, idem, c } => {
            let mut req = super::circuit_file::load(&file).map_err(CliError::Usage)?;
            req.idempotency_key = idempotency_key(&idem)?;
            let mut cl = clients(&c).await?;
            let circuit = cl.circuits.create_circuit(req).await?.into_inner();
            if c.json {
                print_json(&render::circuit_json(&circuit));
            } else {
                print_text!("created {}", render::circuit_text(&circuit));
            }
            Ok(())
        }
        CircuitCommand::List { c } => {
            let mut cl = clients(&c).await?;
            let circuits = cl
                .circuits
                .list_circuits(proto::ListCircuitsRequest {})
                .await?
                .into_inner()
                .circuits;
            if c.json {
                print_json(&json!({
                    "circuits": circuits.iter().map(render::circuit_json).collect::<Vec<_>>()
                }));
            } else {
                print_text!("{}", render::circuits_table(&circuits));
            }
            Ok(())
        }
        CircuitCommand::Show { name, version, c } => {
            let mut cl = clients(&c).await?;
            let circuit = cl
                .circuits
                .get_circuit(proto::GetCircuitRequest {
                    name,
                    version: version.unwrap_or(0),
                })
                .await?
                .into_inner();
            if c.json {
                print_json(&render::circuit_json(&circuit));
            } else {
                print_text!("{}", render::circuit_text(&circuit));
            }
            Ok(())
        }
    }
}

/// Reads `file` in chunks of [`CHUNK`] bytes into `tx`. A read error is returned (the caller
/// then abandons the upload, so the server never stores a truncated document).
async fn send_chunks(
    mut file: tokio::fs::File,
    tx: tokio::sync::mpsc::Sender<proto::SubmitDocumentRequest>,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(total);
        }
        buf.truncate(filled);
        total += filled as u64;
        let msg = proto::SubmitDocumentRequest {
            part: Some(Part::Chunk(buf)),
        };
        if tx.send(msg).await.is_err() {
            // The call ended (the server answered early, e.g. with an error).
            return Ok(total);
        }
        if filled < CHUNK {
            return Ok(total);
        }
    }
}

async fn submit(a: super::SubmitArgs) -> Result<(), CliError> {
    let metadata = parse_meta(&a.meta)?;
    let path = &a.file;
    let cannot =
        |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    if !file.metadata().await.map_err(cannot)?.is_file() {
        return Err(CliError::Usage(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let header = proto::SubmitHeader {
        r#type: match a.doc_type {
            DocTypeArg::Mandate => proto::DocumentType::Mandate,
            DocTypeArg::Contract => proto::DocumentType::Contract,
            DocTypeArg::Other => proto::DocumentType::Other,
        } as i32,
        title: a.title,
        circuit: a.circuit,
        metadata,
        file_name,
        signature_format: a.format.clone(),
        idempotency_key: idempotency_key(&a.idem)?,
    };
    let mut cl = clients(&a.c).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::SubmitDocumentRequest {
        part: Some(Part::Header(header)),
    })
    .await
    .map_err(|_| CliError::Local("internal channel closed".into()))?;
    let mut reader = tokio::spawn(send_chunks(file, tx));
    let call = cl
        .docs
        .submit_document(tokio_stream::wrappers::ReceiverStream::new(rx));
    tokio::pin!(call);
    let outcome = tokio::select! {
        r = &mut call => r,
        r = &mut reader => match r {
            Ok(Ok(_)) => call.await,
            // Dropping the call cancels the upload: the server stores nothing.
            Ok(Err(e)) => return Err(cannot(e)),
            Err(e) => return Err(CliError::Local(format!("reading task failed: {e}"))),
        },
    };
    reader.abort();
    let d = outcome?.into_inner();
    if a.c.json {
        print_json(&render::document_json(&d));
    } else {
        println_text!("{}", d.id);
        eprintln_text!("submitted: {}", render::document_summary(&d));
    }
    Ok(())
}

async fn inbox(a: super::InboxArgs) -> Result<(), CliError> {
    let mut cl = clients(&a.c).await?;
    let mut items = Vec::new();
    let mut page_token = a.page_token.unwrap_or_default();
    let next = loop {
        let page = cl
            .docs
            .list_inbox(proto::ListInboxRequest {
                page_size: a.page_size.unwrap_or(0),
                page_token: page_token.clone(),
            })
            .await?
            .into_inner();
        items.extend(page.items);
        if !a.all || page.next_page_token.is_empty() {
            break page.next_page_token;
        }
        page_token = page.next_page_token;
    };
    if a.c.json {
        print_json(&json!({
            "items": items.iter().map(render::inbox_item_json).collect::<Vec<_>>(),
            "next_page_token": if next.is_empty() { Value::Null } else { Value::String(next) },
        }));
    } else {
        print_text!("{}", render::inbox_table(&items));
        if !next.is_empty() {
            println_text!("more: paraph inbox --page-token {next}  (or --all)");
        }
    }
    Ok(())
}

async fn watch(c: &ClientOpts) -> Result<(), CliError> {
    let mut cl = clients(c).await?;
    let mut stream = cl
        .docs
        .watch_events(proto::WatchEventsRequest {})
        .await?
        .into_inner();
    // The subscription is live once the call is answered: say so (scripts may wait for it).
    eprintln_text!("watching events (Ctrl-C to stop)");
    loop {
        let next = tokio::select! {
            m = stream.message() => m?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(ev) = next else {
            eprintln_text!("the server ended the event stream");
            return Ok(());
        };
        let line = if c.json {
            render::event_json(&ev).to_string()
        } else {
            render::for_terminal(&render::event_text(&ev)).into_owned()
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // The reader went away (e.g. `paraph watch | head`).
            return Ok(());
        }
    }
}

async fn content(
    c: &ClientOpts,
    id: &str,
    out: &Path,
    revision: Option<u32>,
) -> Result<(), CliError> {
    let mut cl = clients(c).await?;
    let d = cl
        .docs
        .get_document(proto::GetDocumentRequest { id: id.to_owned() })
        .await?
        .into_inner();
    // The digest of the revision asked for (the latest by default).
    let expected = match revision {
        None => d
            .revision_sha256
            .last()
            .unwrap_or(&d.content_sha256)
            .clone(),
        Some(0) => d.content_sha256.clone(),
        Some(n) => d
            .revision_sha256
            .get(n as usize - 1)
            .cloned()
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--revision {n}: document {id} has {} signed revision(s)",
                    d.revision_sha256.len()
                ))
            })?,
    };
    let mut stream = cl
        .docs
        .get_content(proto::GetContentRequest {
            id: id.to_owned(),
            revision,
        })
        .await?
        .into_inner();
    let to_stdout = out == Path::new("-");
    let tmp = {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".paraph-part");
        out.with_file_name(name)
    };
    let local = |what: &str, p: &Path, e: std::io::Error| {
        CliError::Local(format!("cannot {what} {}: {e}", p.display()))
    };
    let mut file = if to_stdout {
        None
    } else {
        Some(
            tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| local("create", &tmp, e))?,
        )
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result: Result<(), CliError> = async {
        while let Some(chunk) = stream.message().await? {
            hasher.update(&chunk.data);
            size += chunk.data.len() as u64;
            match &mut file {
                Some(f) => f
                    .write_all(&chunk.data)
                    .await
                    .map_err(|e| local("write", &tmp, e))?,
                None => std::io::stdout()
                    .write_all(&chunk.data)
                    .map_err(|e| local("write", Path::new("stdout"), e))?,
            }
        }
        if let Some(f) = &mut file {
            f.flush().await.map_err(|e| local("write", &tmp, e))?;
            f.sync_all().await.map_err(|e| local("write", &tmp, e))?;
        }
        let sha = hex::encode(hasher.finalize_reset());
        if !expected.is_empty() && !sha.eq_ignore_ascii_case(&expected) {
            return Err(CliError::Local(format!(
                "the content received has SHA-256 {sha}, the document says {expected}"
            )));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if !to_stdout {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        return Err(e);
    }
    if to_stdout {
        std::io::stdout()
            .flush()
            .map_err(|e| local("write", Path::new("stdout"), e))?;
    } else {
        drop(file);
        tokio::fs::rename(&tmp, out)
            .await
            .map_err(|e| local("write", out, e))?;
    }
    let summary = json!({
        "id": d.id,
        "path": out.display().to_string(),
        "bytes": size,
        "sha256": expected,
    });
    if c.json && !to_stdout {
        print_json(&summary);
    } else {
        let text = format!(
            "wrote {size} bytes to {} (sha256 {}, verified)",
            out.display(),
            d.content_sha256
        );
        if to_stdout {
            eprintln_text!("{text}");
        } else {
            println_text!("{text}");
        }
    }
    Ok(())
}

/// A document's content as it reads now (its latest signed revision, if any), in memory: for
/// the formats whose signing or display reads it whole.
pub(super) async fn latest_content(cl: &mut Clients, id: &str) -> Result<Vec<u8>, CliError> {
    let mut stream = cl
        .docs
        .get_content(proto::GetContentRequest {
            id: id.to_owned(),
            revision: None,
        })
        .await?
        .into_inner();
    let mut content = Vec::new();
    while let Some(chunk) = stream.message().await? {
        content.extend_from_slice(&chunk.data);
    }
    Ok(content)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_arguments() {
        let m = parse_meta(&["amount=1200.50".into(), "note=a=b".into()]).unwrap();
        assert_eq!(m["amount"], "1200.50");
        assert_eq!(m["note"], "a=b");
        assert!(parse_meta(&["amount".into()]).is_err());
        assert!(parse_meta(&["=1".into()]).is_err());
        assert!(parse_meta(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn idempotency_keys_are_fresh_unless_given() {
        let none = IdemOpts {
            idempotency_key: None,
        };
        let a = idempotency_key(&none).unwrap();
        assert_eq!(a.len(), 32);
        let b = idempotency_key(&none).unwrap();
        assert_ne!(a, b);
        // In time order by their first 12 digits, random after.
        assert!(a[..12] <= b[..12], "{a} then {b}");
        assert_ne!(a[12..], b[12..]);
        let ms = u64::from_str_radix(&a[..12], 16).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - ms < 60_000, "{a} does not start with the time");
        let given = IdemOpts {
            idempotency_key: Some("k1".into()),
        };
        assert_eq!(idempotency_key(&given).unwrap(), "k1");
    }
}
