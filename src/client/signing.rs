//! `paraph sign`: two-phase certificate signing with a PKCS#12 file or a PKCS#11 token.
//!
//! The server prepares the CAdES signed attributes (PrepareSignature), this process signs them
//! with the officer's private key and sends only the signature value back (CompleteSignature).
//! Both kinds of key sign through [`SigningKey`]: the PKCS#12 [`Signer`] here, the token's
//! [`super::pkcs11::TokenKey`]. The private key, its passphrase and the PIN never leave the
//! process and are never printed or logged (the [`Signer`] holding the key has a redacting
//! `Debug`).
//!
//! Before signing, the client checks that the attributes it is asked to sign carry the digest
//! of the document it asked to sign (the message-digest attribute against the document's
//! SHA-256): the server cannot make it sign something else.

use super::commands::{clients, idempotency_key, print_json};
use super::conn::Clients;
use super::error::CliError;
use super::keys::{KeyKind, Mechanism, SigningKey};
use super::render;
use super::{ClientOpts, IdemOpts};
use crate::proto;
use clap::{ArgGroup, Args};
use openssl::pkey::{Id, PKey, Private};
use serde_json::{json, Value};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

/// Environment variable holding the PKCS#12 passphrase (otherwise it is asked on the terminal).
pub const P12_PASSWORD_ENV: &str = "PARAPH_P12_PASSWORD";

/// Width of the `sign --all` progress bar, in characters.
const BAR_WIDTH: usize = 20;

#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "all"])))]
pub struct SignArgs {
    /// Document id.
    pub id: Option<String>,
    /// Sign every document waiting for your signature (the signature steps of your inbox).
    #[arg(long, conflicts_with_all = ["id", "step", "idempotency_key"])]
    pub all: bool,
    /// PKCS#12 file with your signing key and certificate (passphrase from PARAPH_P12_PASSWORD
    /// or asked on the terminal).
    #[arg(long, value_name = "FILE")]
    pub p12: Option<PathBuf>,
    /// The card or token to sign with (instead of --p12).
    #[command(flatten)]
    pub token: super::pkcs11::TokenOpts,
    /// The step to sign (default: the document's active step).
    #[arg(long, value_name = "N")]
    pub step: Option<u32>,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

/// A signing key and its certificate chain, loaded from a PKCS#12 file.
pub struct Signer {
    key: PKey<Private>,
    /// DER, the signer's certificate first, then the CA certificates of the file.
    chain: Vec<Vec<u8>>,
    subject: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("subject", &self.subject)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Signer {
    /// Opens a PKCS#12 file (DER bytes) with its passphrase.
    pub fn from_p12(bytes: &[u8], password: &str, file: &Path) -> Result<Signer, CliError> {
        let f = file.display();
        let p12 = openssl::pkcs12::Pkcs12::from_der(bytes).map_err(|_| {
            CliError::Usage(
                match crate::pki::kind::wrong_kind(bytes, crate::pki::kind::FileKind::Pkcs12) {
                    Some(what) => format!("{f}: {what}"),
                    None => format!("{f} is not a PKCS#12 file"),
                },
            )
        })?;
        // OpenSSL reports a bad passphrase as a MAC failure; say so without echoing anything.
        let parsed = p12.parse2(password).map_err(|_| {
            CliError::Usage(format!(
                "cannot open {f}: wrong passphrase (or a damaged PKCS#12 file)"
            ))
        })?;
        let key = parsed
            .pkey
            .ok_or_else(|| CliError::Usage(format!("{f} holds no private key")))?;
        let cert = parsed
            .cert
            .ok_or_else(|| CliError::Usage(format!("{f} holds no certificate")))?;
        let bad = |e: openssl::error::ErrorStack| {
            CliError::Usage(format!("{f}: {}", crate::crypto::openssl_reason(&e)))
        };
        if !cert.public_key().map_err(bad)?.public_eq(&key) {
            return Err(CliError::Usage(format!(
                "{f}: the private key does not match the certificate"
            )));
        }
        let leaf = cert.to_der().map_err(bad)?;
        let mut chain = vec![leaf];
        for ca in parsed.ca.into_iter().flatten() {
            let der = ca.to_der().map_err(bad)?;
            if !chain.contains(&der) {
                chain.push(der);
            }
        }
        let subject = crate::crypto::certs::summarize_cert(&cert)
            .map(|s| s.subject)
            .unwrap_or_default();
        Ok(Signer {
            key,
            chain,
            subject,
        })
    }

    /// Loads `file`, asking for the passphrase if needed.
    async fn load(file: &Path) -> Result<Signer, CliError> {
        let bytes = std::fs::read(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let password = passphrase(file).await?;
        Signer::from_p12(&bytes, &password, file)
    }

    /// The certificates sent with a preparation (DER, the signer's first).
    pub(super) fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// Whether the key is an RSA key (slower to sign with than ECDSA).
    pub(super) fn is_rsa(&self) -> bool {
        self.key.id() == Id::RSA
    }

    /// Signs the CAdES signed attributes prepared by the server, after checking the algorithm
    /// the server expects and the document digest inside them.
    pub(super) fn sign(
        &self,
        prep: &proto::Preparation,
        content_sha256: &str,
    ) -> Result<Vec<u8>, CliError> {
        sign_cades(self, prep, content_sha256)
    }
}

impl SigningKey for Signer {
    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn kind(&self) -> KeyKind {
        match self.key.ec_key() {
            Ok(ec) => KeyKind::Ec((ec.group().degree() as usize).div_ceil(8)),
            Err(_) => KeyKind::Rsa,
        }
    }

    fn sign(&self, mechanism: Mechanism, data: &[u8]) -> Result<Vec<u8>, CliError> {
        let fail = |e: openssl::error::ErrorStack| {
            CliError::Local(format!(
                "signing failed: {}",
                crate::crypto::openssl_reason(&e)
            ))
        };
        if mechanism != Mechanism::RsaPssSha256 {
            return crate::crypto::sign_with_key(&self.key, data)
                .map_err(|e| CliError::Local(format!("signing failed: {e}")));
        }
        let sha256 = openssl::hash::MessageDigest::sha256();
        let mut s = openssl::sign::Signer::new(sha256, &self.key).map_err(fail)?;
        s.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)
            .map_err(fail)?;
        s.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
            .map_err(fail)?;
        s.set_rsa_mgf1_md(sha256).map_err(fail)?;
        s.update(data).map_err(fail)?;
        s.sign_to_vec().map_err(fail)
    }
}

/// Signs the algorithm's mechanism over `data` with `key`.
fn sign_bytes(key: &dyn SigningKey, algorithm: &str, data: &[u8]) -> Result<Vec<u8>, CliError> {
    let m = Mechanism::for_server(algorithm, key.kind())?;
    key.sign(m, data)
}

/// Signs CAdES signed attributes after checking that they carry the document's digest.
fn sign_cades(
    key: &dyn SigningKey,
    prep: &proto::Preparation,
    content_sha256: &str,
) -> Result<Vec<u8>, CliError> {
    let m = Mechanism::for_server(&prep.signature_algorithm, key.kind())?;
    let digest = message_digest(&prep.signed_attributes).ok_or_else(|| {
        CliError::Local(
            "the signed attributes from the server carry no readable message digest: not \
             signing"
                .into(),
        )
    })?;
    if !hex::encode(&digest).eq_ignore_ascii_case(content_sha256) {
        return Err(CliError::Local(format!(
            "the signed attributes from the server are for content with SHA-256 {}, the \
             document's is {content_sha256}: not signing",
            hex::encode(&digest)
        )));
    }
    key.sign(m, &prep.signed_attributes)
}

/// Signs every bordereau of a PES flow: downloads the flow, checks that it is the document's
/// content and that each prepared SignedInfo references one of its bordereaux with the digest
/// computed here, then signs them all with the one key.
async fn sign_pes(
    cl: &mut Clients,
    signer: &dyn SigningKey,
    id: &str,
    prep: &proto::Preparation,
    content_sha256: &str,
) -> Result<Vec<Vec<u8>>, CliError> {
    let content = super::commands::latest_content(cl, id).await?;
    let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
    if !got.eq_ignore_ascii_case(content_sha256) {
        return Err(CliError::Local(format!(
            "the downloaded flow has SHA-256 {got}, the document's is {content_sha256}: not signing"
        )));
    }
    let targets = crate::formats::xades_pes::targets(&content)
        .map_err(|e| CliError::Local(format!("the downloaded flow: {e}: not signing")))?;
    if targets.len() != prep.items.len() {
        return Err(CliError::Local(format!(
            "the server prepared {} signatures for a flow of {} bordereaux: not signing",
            prep.items.len(),
            targets.len()
        )));
    }
    use base64::Engine as _;
    let mut values = Vec::with_capacity(prep.items.len());
    for (t, item) in targets.iter().zip(&prep.items) {
        let digest = base64::engine::general_purpose::STANDARD.encode(t.digest);
        let info = String::from_utf8_lossy(&item.data);
        let reference = format!("URI=\"#{}\"", t.id);
        let value = format!("<ds:DigestValue>{digest}</ds:DigestValue>");
        let first_ref = info.find("<ds:Reference").unwrap_or(usize::MAX);
        let ok = item.label == t.id
            && item.reference_digest == digest
            && info.find(&reference).is_some_and(|i| i > first_ref)
            && info.find(&value).is_some_and(|i| i > first_ref);
        if !ok {
            return Err(CliError::Local(format!(
                "the SignedInfo prepared for bordereau '{}' does not reference it with the digest \
                 of the downloaded flow ({digest}): not signing",
                t.id
            )));
        }
        values.push(sign_bytes(signer, &prep.signature_algorithm, &item.data)?);
    }
    Ok(values)
}

/// Signs a PAdES preparation: downloads the document's latest revision and checks that it is
/// the revision the server prepared the incremental update on, then signs the one item.
async fn sign_pades(
    cl: &mut Clients,
    signer: &dyn SigningKey,
    id: &str,
    prep: &proto::Preparation,
) -> Result<Vec<Vec<u8>>, CliError> {
    let [item] = prep.items.as_slice() else {
        return Err(CliError::Local(format!(
            "the server prepared {} items for a PDF signature: not signing",
            prep.items.len()
        )));
    };
    let content = super::commands::latest_content(cl, id).await?;
    let got = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
    if !got.eq_ignore_ascii_case(&item.reference_digest) || !content.starts_with(b"%PDF-") {
        return Err(CliError::Local(format!(
            "the server prepared a PDF signature over a revision with SHA-256 {}, the downloaded \
             PDF's is {got}: not signing",
            item.reference_digest
        )));
    }
    Ok(vec![sign_bytes(
        signer,
        &prep.signature_algorithm,
        &item.data,
    )?])
}

/// The value of the message-digest attribute (RFC 5652 11.2) in DER signed attributes.
pub fn message_digest(signed_attrs: &[u8]) -> Option<Vec<u8>> {
    use der::Decode as _;
    const ID_MESSAGE_DIGEST: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
    let attrs = der::asn1::SetOfVec::<x509_cert::attr::Attribute>::from_der(signed_attrs).ok()?;
    let mut found = attrs.iter().filter(|a| a.oid == ID_MESSAGE_DIGEST);
    let attr = found.next()?;
    if found.next().is_some() || attr.values.len() != 1 {
        return None;
    }
    let value: der::asn1::OctetString = attr.values.get(0)?.decode_as().ok()?;
    Some(value.as_bytes().to_vec())
}

/// The PKCS#12 passphrase: `PARAPH_P12_PASSWORD`, or a prompt on the terminal (no echo).
async fn passphrase(file: &Path) -> Result<String, CliError> {
    if let Some(v) = std::env::var_os(P12_PASSWORD_ENV) {
        return v
            .into_string()
            .map_err(|_| CliError::Usage(format!("{P12_PASSWORD_ENV} is not valid UTF-8")));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "no passphrase for {}: set {P12_PASSWORD_ENV} or run on a terminal",
            file.display()
        )));
    }
    prompt_hidden(&format!("PKCS#12 passphrase for {}: ", file.display())).await
}

/// Runs `stty ARGS` on the terminal `tty`.
fn stty(tty: &std::fs::File, args: &[&str]) -> Result<String, CliError> {
    let stdin = tty
        .try_clone()
        .map_err(|e| CliError::Local(format!("terminal: {e}")))?;
    let out = std::process::Command::new("stty")
        .args(args)
        .stdin(stdin)
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::Local(format!("cannot run stty: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Local(format!(
            "stty {} failed: cannot turn the terminal echo off",
            args.join(" ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Reads one line from /dev/tty with the echo off; the terminal settings are restored after,
/// also on Ctrl-C.
pub(super) async fn prompt_hidden(prompt: &str) -> Result<String, CliError> {
    let term_err = |e: std::io::Error| CliError::Local(format!("cannot open the terminal: {e}"));
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(term_err)?;
    let saved = stty(&tty, &["-g"])?;
    stty(&tty, &["-echo"])?;
    let _ = tty.write_all(prompt.as_bytes());
    let _ = tty.flush();
    let reader = tty.try_clone().map_err(term_err)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread: a read blocked on the terminal must not hold the runtime at exit.
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = std::io::BufRead::read_line(&mut std::io::BufReader::new(reader), &mut line)
            .map(|_| line);
        let _ = tx.send(r);
    });
    let got = tokio::select! {
        r = rx => r.map_err(|_| CliError::Local("the terminal reader failed".into())),
        _ = tokio::signal::ctrl_c() => Err(CliError::Local("interrupted".into())),
    };
    let restored = stty(&tty, &[&saved]);
    let _ = tty.write_all(b"\n");
    let line = got?.map_err(|e| CliError::Local(format!("cannot read the passphrase: {e}")))?;
    restored?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// What a signature did, for the output.
struct Signed {
    id: String,
    resp: proto::CompleteSignatureResponse,
}

fn signed_json(s: &Signed) -> Value {
    let sig = s.resp.signature.clone().unwrap_or_default();
    json!({
        "id": s.id,
        "step": s.resp.step,
        "signature": {
            "index": sig.index,
            "signer": sig.signer,
            "subject": sig.subject,
            "level": sig.level,
            "signing_time": sig
                .signing_time
                .as_ref()
                .map(|t| Value::String(render::rfc3339(t.seconds)))
                .unwrap_or(Value::Null),
            "certificate_sha256": sig.certificate_sha256,
        },
        "state": render::state(s.resp.state),
        "current_step": if s.resp.current_step < 0 { Value::Null } else { json!(s.resp.current_step) },
    })
}

fn signed_text(s: &Signed) -> String {
    let sig = s.resp.signature.clone().unwrap_or_default();
    let at = sig
        .signing_time
        .as_ref()
        .map(|t| render::rfc3339(t.seconds))
        .unwrap_or_else(|| "-".into());
    let state = render::state(s.resp.state);
    let now = if s.resp.current_step >= 0 {
        format!("{state}, step {} active", s.resp.current_step)
    } else {
        state
    };
    let mut who = sig.signer.clone();
    if !sig.on_behalf_of.is_empty() {
        who.push_str(&format!(" on behalf of {}", sig.on_behalf_of));
    }
    format!(
        "signed step {} of {} as {who}: signature #{}, level {}, at {at}\n  certificate {}\n  \
         document {}: {now}",
        s.resp.step,
        s.id,
        sig.index,
        render::level_text(sig.level),
        sig.subject,
        s.id,
    )
}

/// One line per document for `sign --all`.
fn signed_line(s: &Signed) -> String {
    let sig = s.resp.signature.clone().unwrap_or_default();
    let mut state = render::state(s.resp.state);
    if s.resp.current_step >= 0 {
        state.push_str(&format!(", step {} active", s.resp.current_step));
    }
    format!(
        "signed {} step {}: signature #{}, level {}; document {state}",
        s.id,
        s.resp.step,
        sig.index,
        render::level_text(sig.level)
    )
}

/// Signs one document: reads it (active step, content digest), prepares, signs, completes.
async fn sign_one(
    cl: &mut Clients,
    signer: &dyn SigningKey,
    id: &str,
    step: Option<u32>,
    key: Option<&str>,
) -> Result<Signed, CliError> {
    let d = cl
        .docs
        .get_document(proto::GetDocumentRequest { id: id.to_owned() })
        .await?
        .into_inner();
    let step = match step {
        Some(s) => s,
        None => u32::try_from(d.current_step).map_err(|_| {
            CliError::Precondition(format!(
                "document {id} has no active step (state {})",
                render::state(d.state)
            ))
        })?,
    };
    if let Some(s) = d.steps.iter().find(|s| s.index == step) {
        if s.kind != proto::StepKind::Signature as i32 {
            let hint = if s.kind == proto::StepKind::Visa as i32 {
                ": use `paraph approve`"
            } else {
                ""
            };
            return Err(CliError::Precondition(format!(
                "step {step} of document {id} is a {} step, not a signature step{hint}",
                render::step_kind(s.kind)
            )));
        }
    }
    // With a given key, its two calls get derived keys: a retry repeats neither.
    let (prep_key, done_key) = match key {
        Some(k) => (format!("{k}/prepare"), format!("{k}/complete")),
        None => {
            let fresh = IdemOpts {
                idempotency_key: None,
            };
            (idempotency_key(&fresh)?, idempotency_key(&fresh)?)
        }
    };
    let prep = cl
        .sigs
        .prepare_signature(proto::PrepareSignatureRequest {
            document_id: id.to_owned(),
            step: Some(step),
            certificate_chain: signer.chain().to_vec(),
            idempotency_key: prep_key,
        })
        .await
        .map_err(not_bound_hint)?
        .into_inner();
    if prep.document_id != id || prep.step != step {
        return Err(CliError::Local(format!(
            "the server prepared a signature of document {} step {}, not of {id} step {step}",
            prep.document_id, prep.step
        )));
    }
    let (value, values) = if prep.signature_format == "xades-pes" {
        (
            Vec::new(),
            sign_pes(cl, signer, id, &prep, &d.content_sha256).await?,
        )
    } else if prep.signature_format == "pades" {
        (Vec::new(), sign_pades(cl, signer, id, &prep).await?)
    } else {
        (sign_cades(signer, &prep, &d.content_sha256)?, Vec::new())
    };
    let resp = cl
        .sigs
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: prep.id,
            signature_value: value,
            signature_values: values,
            idempotency_key: done_key,
        })
        .await?
        .into_inner();
    Ok(Signed {
        id: id.to_owned(),
        resp,
    })
}

/// The server's NOT_BOUND refusal, with what to do about it (the code stays the server's).
fn not_bound_hint(s: tonic::Status) -> CliError {
    if s.code() == tonic::Code::FailedPrecondition && s.message().contains("NOT_BOUND") {
        let msg = format!(
            "{}: an administrator binds a certificate to you with `paraph admin user bind-cert`; \
             on a card with several keys, choose yours with --key-label (`paraph token list` \
             shows them)",
            s.message()
        );
        return CliError::Status(tonic::Status::new(s.code(), msg));
    }
    CliError::Status(s)
}

/// `[#####.....] 5/10` for `done` of `total`.
pub fn progress_bar(done: usize, total: usize) -> String {
    let filled = (done.min(total) * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(BAR_WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled)
    )
}

/// The progress bar on stderr, drawn only on a terminal (redrawn in place); elsewhere (a log
/// file, a pipe) nothing of it is written.
pub(super) struct Progress {
    pub(super) tty: bool,
    width: usize,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            width: 0,
        }
    }

    pub(super) fn draw(&mut self, line: &str) {
        if !self.tty {
            return;
        }
        let mut err = std::io::stderr().lock();
        let pad = self.width.saturating_sub(line.chars().count());
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        self.width = line.chars().count();
        let _ = err.flush();
    }

    /// Clears the bar (before other output on a terminal).
    pub(super) fn clear(&mut self) {
        if self.tty && self.width > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(self.width));
            let _ = err.flush();
            self.width = 0;
        }
    }
}

/// `paraph sign ID` and `paraph sign --all`.
pub async fn sign(a: SignArgs) -> Result<(), CliError> {
    let p12 = match (&a.p12, &a.token.pkcs11) {
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(format!(
                "--p12 and --pkcs11 (or {}) both name a key: give one",
                super::pkcs11::MODULE_ENV
            )))
        }
        (Some(f), None) => Some(Signer::load(f).await?),
        (None, Some(_)) => None,
        (None, None) => {
            return Err(CliError::Usage(format!(
                "no key to sign with: give --p12 FILE or --pkcs11 MODULE (or set {})",
                super::pkcs11::MODULE_ENV
            )))
        }
    };
    // The token's module, PIN and login before the server: local errors first.
    let logged_in = match (&p12, &a.token.pkcs11) {
        (None, Some(module)) => Some(super::pkcs11::TokenKey::login(&a.token, module).await?),
        _ => None,
    };
    let mut cl = clients(&a.c).await?;
    let token = match logged_in {
        Some(l) => Some(l.choose(&a.token, &mut cl).await?),
        None => None,
    };
    let signer: &dyn SigningKey = match (&p12, &token) {
        (Some(p), _) => p,
        (None, Some(t)) => t,
        (None, None) => return Err(CliError::Local("no key loaded".into())),
    };
    if !a.all {
        let id =
            a.id.ok_or_else(|| CliError::Usage("a document id or --all is required".into()))?;
        let key = a.idem.idempotency_key.as_deref();
        if key.is_some_and(|k| k.len() > 119) {
            return Err(CliError::Usage(
                "--idempotency-key: at most 119 characters for sign (it is derived for its two \
                 calls)"
                    .into(),
            ));
        }
        let s = sign_one(&mut cl, signer, &id, a.step, key).await?;
        if a.c.json {
            print_json(&signed_json(&s));
        } else {
            println_text!("{}", signed_text(&s));
        }
        return Ok(());
    }

    // --all: every signature step of the inbox, all pages.
    let mut todo: Vec<(String, u32)> = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = cl
            .docs
            .list_inbox(proto::ListInboxRequest {
                page_size: 0,
                page_token: page_token.clone(),
            })
            .await?
            .into_inner();
        for item in page.items {
            let entry = (item.id, item.step);
            if item.step_kind == proto::StepKind::Signature as i32 && !todo.contains(&entry) {
                todo.push(entry);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let total = todo.len();
    let mut signed = Vec::new();
    let mut failed: Vec<(String, u32, CliError)> = Vec::new();
    if total == 0 {
        eprintln_text!("nothing to sign: no signature step waits for you");
    }
    let mut progress = Progress::new();
    for (i, (id, step)) in todo.into_iter().enumerate() {
        progress.draw(&format!("{} {id}", progress_bar(i, total)));
        match sign_one(&mut cl, signer, &id, Some(step), None).await {
            Ok(s) => {
                if !a.c.json {
                    progress.clear();
                    println_text!("{}", signed_line(&s));
                }
                signed.push(s);
            }
            Err(e) => failed.push((id, step, e)),
        }
    }
    if total > 0 {
        if progress.tty {
            progress.draw(&format!(
                "{} signed {}, failed {}",
                progress_bar(total, total),
                signed.len(),
                failed.len()
            ));
            eprintln_text!();
        } else {
            eprintln_text!("signed {}, failed {}", signed.len(), failed.len());
        }
    }
    if a.c.json {
        print_json(&json!({
            "signed": signed.iter().map(signed_json).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(id, step, e)| json!({
                "id": id,
                "step": step,
                "error": e.to_string(),
                "exit_code": e.exit_code(),
            })).collect::<Vec<_>>(),
        }));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        for (id, _, e) in &failed {
            eprintln_text!("not signed: {id}: {e}");
        }
        Err(CliError::Partial(format!(
            "{} of {total} documents not signed",
            failed.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_up() {
        assert_eq!(progress_bar(0, 4), format!("[{}] 0/4", ".".repeat(20)));
        assert_eq!(
            progress_bar(1, 4),
            format!("[{}{}] 1/4", "#".repeat(5), ".".repeat(15))
        );
        assert_eq!(progress_bar(4, 4), format!("[{}] 4/4", "#".repeat(20)));
        assert_eq!(progress_bar(0, 0), format!("[{}] 0/0", "#".repeat(20)));
    }

    #[test]
    fn a_p12_opens_with_its_passphrase_only() {
        let file = Path::new("certs-test/officer-l2-p256.p12");
        let bytes = std::fs::read(file).unwrap();
        let s = Signer::from_p12(&bytes, "paraph-test", file).unwrap();
        assert_eq!(s.chain.len(), 2, "leaf and its issuing CA");
        assert!(s.subject.contains("CN=TEST"), "{}", s.subject);
        assert!(!format!("{s:?}").contains("PRIVATE"));
        let e = Signer::from_p12(&bytes, "wrong", file).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        assert!(!e.to_string().contains("wrong\""), "{e}");
        let e = Signer::from_p12(b"not a p12", "x", file).unwrap_err();
        assert!(e.to_string().contains("not a PKCS#12"), "{e}");
    }

    /// The PKCS#12 key signs every mechanism of the signing interface; OpenSSL verifies each
    /// with the certificate's key (PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt).
    #[test]
    fn a_p12_key_signs_each_mechanism_and_openssl_verifies_it() {
        use openssl::sign::{RsaPssSaltlen, Verifier};
        for (stem, mechs) in [
            (
                "officer-l3-rsa2048",
                &[Mechanism::RsaPkcs1Sha256, Mechanism::RsaPssSha256][..],
            ),
            ("officer-l3-p384", &[Mechanism::EcdsaSha256][..]),
        ] {
            let file = format!("certs-test/{stem}.p12");
            let bytes = std::fs::read(&file).unwrap();
            let k = Signer::from_p12(&bytes, "paraph-test", Path::new(&file)).unwrap();
            let cert = openssl::x509::X509::from_der(&SigningKey::chain(&k)[0]).unwrap();
            let public = cert.public_key().unwrap();
            for m in mechs {
                let sig = SigningKey::sign(&k, *m, b"data").unwrap();
                let mut v = Verifier::new(openssl::hash::MessageDigest::sha256(), &public).unwrap();
                if *m == Mechanism::RsaPssSha256 {
                    v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
                    v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32)).unwrap();
                    v.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
                        .unwrap();
                }
                v.update(b"data").unwrap();
                assert!(v.verify(&sig).unwrap(), "{stem} {m:?}");
            }
        }
        let bytes = std::fs::read("certs-test/officer-l3-p384.p12").unwrap();
        let k = Signer::from_p12(&bytes, "paraph-test", Path::new("x")).unwrap();
        assert_eq!(SigningKey::kind(&k), KeyKind::Ec(48));
    }

    #[test]
    fn the_message_digest_is_read_from_signed_attributes() {
        let cert = std::fs::read("certs-test/officer-l2-p256.cert.pem").unwrap();
        let der = crate::crypto::certs::certs_from(&cert).unwrap()[0]
            .to_der()
            .unwrap();
        let digest = [7u8; 32];
        let attrs =
            crate::crypto::build_signed_attributes(&digest, 1_767_225_600, &der, None).unwrap();
        assert_eq!(message_digest(&attrs), Some(digest.to_vec()));
        assert_eq!(message_digest(b"\x31\x00"), None);
        assert_eq!(message_digest(b"garbage"), None);
    }
}
