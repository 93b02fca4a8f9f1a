//! Smart cards and USB tokens through PKCS#11: `paraph sign --pkcs11 MODULE` and
//! `paraph token list`.
//!
//! The module (OpenSC's `opensc-pkcs11.so` for most French cards, the vendor's otherwise,
//! SoftHSM2 for trials) is loaded at run time. One session is opened and logged in once per
//! command, so `sign --all` asks for the PIN once. A wrong PIN is never retried: the error says
//! how many tries the token reports left. The PIN never leaves the process and is never printed.
//!
//! A key is a private key with the certificate of the same CKA_ID (else the same label). It is
//! chosen by `--key-label`/`--key-id`, else it is the only one on the token, else the only one
//! whose certificate the server says is bound to the caller (`GetMe`).
//!
//! Every failure says what to do, with the exit-code family of the README's table: a bad module
//! is a usage error (2), a missing token or key is "not found" (3), a wrong or locked PIN and a
//! key that may not sign are "not allowed" (4).

use super::conn::Clients;
use super::error::CliError;
use super::keys::{ecdsa_raw_to_der, sha256, sha256_digest_info, KeyKind, Mechanism, SigningKey};
use crate::proto;
use clap::{Args, Subcommand};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism as CkMechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variable naming the PKCS#11 module (instead of `--pkcs11`).
pub const MODULE_ENV: &str = "PARAPH_PKCS11_MODULE";
/// Environment variable holding the token's user PIN (otherwise asked on the terminal).
pub const PIN_ENV: &str = "PARAPH_PKCS11_PIN";

/// Where the key is: the module, the token, the key on it.
#[derive(Args, Clone, Default)]
pub struct TokenOpts {
    /// PKCS#11 module of your card or token (e.g. /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so),
    /// instead of --p12. PIN from PARAPH_PKCS11_PIN or asked on the terminal.
    #[arg(long, env = MODULE_ENV, value_name = "MODULE")]
    pub pkcs11: Option<PathBuf>,
    /// The slot of the token (default: the only slot with a token).
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "token_label",
        requires = "pkcs11"
    )]
    pub slot: Option<u64>,
    /// The token, by its label.
    #[arg(long, value_name = "LABEL", requires = "pkcs11")]
    pub token_label: Option<String>,
    /// The key, by its label (or its certificate's).
    #[arg(
        long,
        value_name = "LABEL",
        conflicts_with = "key_id",
        requires = "pkcs11"
    )]
    pub key_label: Option<String>,
    /// The key, by its CKA_ID in hex.
    #[arg(long, value_name = "HEX", requires = "pkcs11")]
    pub key_id: Option<String>,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// List the slots, the tokens and the certificates that have a private key (subject,
    /// issuer, serial, policy, RGS level and whether it is bound to you when the server is
    /// reachable, key type). Logs in when a PIN is given (PARAPH_PKCS11_PIN or the terminal):
    /// most tokens show their private keys only then.
    List(ListArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub token: TokenOpts,
    #[command(flatten)]
    pub c: super::ClientOpts,
}

/// A loaded and initialised module.
struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl Module {
    fn load(path: &Path) -> Result<Module, CliError> {
        let p = path.display();
        if !path.exists() {
            return Err(CliError::Usage(format!(
                "PKCS#11 module {p} not found: give the path of your card's module (OpenSC's \
                 opensc-pkcs11.so for most cards, else the one your card's vendor installs)"
            )));
        }
        let ctx = Pkcs11::new(path).map_err(|e| {
            CliError::Usage(format!(
                "{p} is not a PKCS#11 module (it does not load as one: {e})"
            ))
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| {
                CliError::Usage(format!(
                    "{p} is not a usable PKCS#11 module (C_Initialize failed: {})",
                    rv_text(&e)
                ))
            })?;
        Ok(Module {
            ctx,
            path: path.to_owned(),
        })
    }

    /// The slots that hold a token, with their token information.
    fn tokens(&self) -> Result<Vec<(Slot, TokenInfo)>, CliError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| CliError::Local(format!("C_GetSlotList: {}", rv_text(&e))))?;
        let mut out = Vec::new();
        for s in slots {
            // An uninitialised token (a blank card, SoftHSM2's free slot) holds no key.
            if let Ok(info) = self.ctx.get_token_info(s) {
                if info.token_initialized() {
                    out.push((s, info));
                }
            }
        }
        Ok(out)
    }

    /// The token `opts` designates (the only one when none is named).
    fn pick(&self, opts: &TokenOpts) -> Result<(Slot, TokenInfo), CliError> {
        let tokens = self.tokens()?;
        let m = self.path.display();
        if let Some(n) = opts.slot {
            let all = self.ctx.get_all_slots().unwrap_or_default();
            if !all.iter().any(|s| s.id() == n) {
                return Err(CliError::NotFound(format!(
                    "no slot {n} in {m} (slots: {})",
                    ids(&all)
                )));
            }
            return tokens
                .into_iter()
                .find(|(s, _)| s.id() == n)
                .ok_or_else(|| {
                    CliError::NotFound(format!(
                    "no token present in slot {n}: insert the card (or plug the token) and retry"
                ))
                });
        }
        if let Some(l) = &opts.token_label {
            let labels: Vec<String> = tokens
                .iter()
                .map(|(_, t)| t.label().trim().to_owned())
                .collect();
            return tokens
                .into_iter()
                .find(|(_, t)| t.label().trim() == l.trim())
                .ok_or_else(|| {
                    CliError::NotFound(format!(
                        "no token labelled {l:?} in {m} (tokens present: {})",
                        quoted(&labels)
                    ))
                });
        }
        match tokens.len() {
            0 => Err(CliError::NotFound(format!(
                "no token present in any slot of {m}: insert the card (or plug the token) and \
                 retry"
            ))),
            1 => Ok(tokens.into_iter().next().ok_or_else(|| {
                CliError::Local("the token list changed while reading it".into())
            })?),
            _ => {
                let list: Vec<String> = tokens
                    .iter()
                    .map(|(s, t)| format!("slot {} {:?}", s.id(), t.label().trim()))
                    .collect();
                Err(CliError::Usage(format!(
                    "{} tokens are present ({}): choose one with --slot or --token-label",
                    tokens.len(),
                    list.join(", ")
                )))
            }
        }
    }
}

fn ids(slots: &[Slot]) -> String {
    if slots.is_empty() {
        return "none".into();
    }
    slots
        .iter()
        .map(|s| s.id().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(v: &[String]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PKCS#11 return value of an error, or its text.
fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f}: {rv:?}"),
        other => other.to_string(),
    }
}

/// What the token's PIN flags say about the tries left, if anything.
fn tries_left(info: &TokenInfo) -> Option<&'static str> {
    if info.user_pin_locked() {
        Some("the PIN is now locked")
    } else if info.user_pin_final_try() {
        Some("one try left before the token locks")
    } else if info.user_pin_count_low() {
        Some("the token reports few tries left")
    } else {
        None
    }
}

/// The error of a refused login, with the tries left when the token reports them.
fn login_error(e: &CkError, info: Option<&TokenInfo>, token: &str) -> CliError {
    let locked = || {
        CliError::Denied(format!(
            "the PIN of token {token:?} is locked (too many wrong PINs): unblock it with its \
             PUK or the card's issuer; paraph does not retry"
        ))
    };
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) | CkError::Pkcs11(RvError::PinInvalid, _) => {
            if info.is_some_and(|i| i.user_pin_locked()) {
                return locked();
            }
            let left = info
                .and_then(tries_left)
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            CliError::Denied(format!(
                "wrong PIN for token {token:?}{left}: not retried (cards lock after a few wrong \
                 PINs); check it and run the command again"
            ))
        }
        CkError::Pkcs11(RvError::PinLocked, _) => locked(),
        CkError::Pkcs11(RvError::PinLenRange, _) => CliError::Denied(format!(
            "wrong PIN for token {token:?}: its length is out of the token's range; not retried"
        )),
        CkError::Pkcs11(RvError::TokenNotPresent, _)
        | CkError::Pkcs11(RvError::DeviceRemoved, _) => CliError::NotFound(format!(
            "token {token:?} was removed: insert it again and retry"
        )),
        other => CliError::Local(format!(
            "login to token {token:?} failed: {}",
            rv_text(other)
        )),
    }
}

/// A private key with its certificate, as found on the token.
#[derive(Clone)]
pub struct TokenEntry {
    pub id: Vec<u8>,
    pub label: String,
    pub cert: Vec<u8>,
    /// Whether a private key goes with the certificate (None: unknown, not logged in).
    pub key: Option<ObjectHandle>,
    pub can_sign: bool,
    pub kind: Option<KeyKind>,
}

/// The token's user PIN: `PARAPH_PKCS11_PIN`, or asked on the terminal.
async fn pin(token: &str, required: bool) -> Result<Option<String>, CliError> {
    if let Some(v) = std::env::var_os(PIN_ENV) {
        return v
            .into_string()
            .map(Some)
            .map_err(|_| CliError::Usage(format!("{PIN_ENV} is not valid UTF-8")));
    }
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        if !required {
            return Ok(None);
        }
        return Err(CliError::Usage(format!(
            "no PIN for token {token:?}: set {PIN_ENV} or run on a terminal"
        )));
    }
    super::signing::prompt_hidden(&format!("PIN of token {token:?}: "))
        .await
        .map(Some)
}

/// An open session on one token, logged in or not.
struct Opened {
    session: Session,
    label: String,
    logged_in: bool,
}

/// Opens a session on the token in `slot` and logs in once (with the PIN of [`pin`], or on the
/// reader's PIN pad); without a PIN and `login_required` false, the session stays public.
async fn open(
    m: &Module,
    slot: Slot,
    info: &TokenInfo,
    login_required: bool,
) -> Result<Opened, CliError> {
    let label = info.label().trim().to_owned();
    let session = m.ctx.open_ro_session(slot).map_err(|e| match e {
        CkError::Pkcs11(RvError::TokenNotPresent, _) => CliError::NotFound(format!(
            "no token present in slot {}: insert the card and retry",
            slot.id()
        )),
        other => CliError::Local(format!(
            "cannot open a session on {label:?}: {}",
            rv_text(&other)
        )),
    })?;
    // A locked PIN is refused before any try: nothing to gain, and the card may count it.
    if info.user_pin_locked() {
        return Err(login_error(
            &CkError::Pkcs11(RvError::PinLocked, cryptoki::context::Function::Login),
            Some(info),
            &label,
        ));
    }
    let mut logged_in = false;
    if info.protected_authentication_path() {
        // A reader with its own PIN pad: the PIN is typed there.
        if login_required {
            eprintln_text!("enter the PIN of token {label:?} on the reader's PIN pad");
            session
                .login(UserType::User, None)
                .map_err(|e| login_error(&e, m.ctx.get_token_info(slot).ok().as_ref(), &label))?;
            logged_in = true;
        }
    } else if let Some(p) = pin(&label, login_required).await? {
        let p = AuthPin::from(p);
        match session.login(UserType::User, Some(&p)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => logged_in = true,
            Err(e) => {
                return Err(login_error(
                    &e,
                    m.ctx.get_token_info(slot).ok().as_ref(),
                    &label,
                ))
            }
        }
    }
    Ok(Opened {
        session,
        label,
        logged_in,
    })
}

fn attr_bytes(attrs: &[Attribute], which: AttributeType) -> Option<Vec<u8>> {
    attrs.iter().find_map(|a| match (a, which) {
        (Attribute::Id(v), AttributeType::Id) => Some(v.clone()),
        (Attribute::Label(v), AttributeType::Label) => Some(v.clone()),
        (Attribute::Value(v), AttributeType::Value) => Some(v.clone()),
        _ => None,
    })
}

/// The certificates on the token, each with its private key when the session sees it.
fn entries(s: &Session) -> Result<Vec<TokenEntry>, CliError> {
    let err = |e: CkError| CliError::Local(format!("reading the token: {}", rv_text(&e)));
    let certs = s
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ])
        .map_err(err)?;
    let keys = s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(err)?;
    let mut key_info = Vec::new();
    for k in keys {
        let a = s
            .get_attributes(
                k,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::Sign,
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                ],
            )
            .map_err(err)?;
        let sign = a.iter().any(|x| matches!(x, Attribute::Sign(true)));
        let kind = a.iter().find_map(|x| match x {
            Attribute::KeyType(t) if *t == KeyType::RSA => Some(KeyKind::Rsa),
            Attribute::KeyType(t) if *t == KeyType::EC => Some(KeyKind::Ec(0)),
            _ => None,
        });
        key_info.push((
            k,
            attr_bytes(&a, AttributeType::Id).unwrap_or_default(),
            attr_bytes(&a, AttributeType::Label).unwrap_or_default(),
            sign,
            kind,
        ));
    }
    let mut out = Vec::new();
    for c in certs {
        let a = s
            .get_attributes(
                c,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::Value,
                ],
            )
            .map_err(err)?;
        let Some(value) = attr_bytes(&a, AttributeType::Value) else {
            continue;
        };
        let id = attr_bytes(&a, AttributeType::Id).unwrap_or_default();
        let label =
            String::from_utf8_lossy(&attr_bytes(&a, AttributeType::Label).unwrap_or_default())
                .into_owned();
        let key = key_info
            .iter()
            .find(|k| !id.is_empty() && k.1 == id)
            .or_else(|| {
                key_info
                    .iter()
                    .find(|k| !label.is_empty() && k.2 == label.as_bytes())
            });
        // The key kind and curve come from the certificate (the token's EC_PARAMS say the same).
        let kind = cert_key_kind(&value).or(key.and_then(|k| k.4));
        out.push(TokenEntry {
            id,
            label,
            cert: value,
            key: key.map(|k| k.0),
            can_sign: key.is_some_and(|k| k.3),
            kind,
        });
    }
    Ok(out)
}

/// The key kind (and EC field length) of a DER certificate.
fn cert_key_kind(der: &[u8]) -> Option<KeyKind> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let key = cert.public_key().ok()?;
    match key.id() {
        openssl::pkey::Id::RSA => Some(KeyKind::Rsa),
        openssl::pkey::Id::EC => {
            let bits = key.ec_key().ok()?.group().degree() as usize;
            Some(KeyKind::Ec(bits.div_ceil(8)))
        }
        _ => None,
    }
}

fn rsa_bits(der: &[u8]) -> Option<usize> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let key = cert.public_key().ok()?;
    (key.id() == openssl::pkey::Id::RSA).then(|| key.bits() as usize)
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(sha256(der))
}

/// A signing key on a token, logged in: the [`SigningKey`] of `paraph sign --pkcs11`.
pub struct TokenKey {
    session: Mutex<Session>,
    key: ObjectHandle,
    kind: KeyKind,
    chain: Vec<Vec<u8>>,
    label: String,
    token: String,
    // Dropped last: the module stays loaded while the session lives.
    _module: Module,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("token", &self.token)
            .field("label", &self.label)
            .finish()
    }
}

/// A token logged in, before its key is chosen.
pub struct LoggedIn {
    module: Module,
    opened: Opened,
}

impl TokenKey {
    /// Loads the module, opens the token `opts` designates and logs in once: every local
    /// error (module, token, PIN) comes before the server is reached.
    pub async fn login(opts: &TokenOpts, module: &Path) -> Result<LoggedIn, CliError> {
        let m = Module::load(module)?;
        let (slot, info) = m.pick(opts)?;
        let opened = open(&m, slot, &info, true).await?;
        Ok(LoggedIn { module: m, opened })
    }
}

impl LoggedIn {
    /// Chooses the key: by label or id, else the only one, else the only one the server says
    /// is bound to the caller.
    pub async fn choose(self, opts: &TokenOpts, cl: &mut Clients) -> Result<TokenKey, CliError> {
        let LoggedIn {
            module: m,
            opened: o,
        } = self;
        let all = entries(&o.session)?;
        let with_key: Vec<&TokenEntry> = all.iter().filter(|e| e.key.is_some()).collect();
        let names =
            |v: &[&TokenEntry]| quoted(&v.iter().map(|e| e.label.clone()).collect::<Vec<_>>());
        let token = o.label.clone();
        let chosen: &TokenEntry = if opts.key_label.is_some() || opts.key_id.is_some() {
            let want_id =
                match &opts.key_id {
                    Some(h) => Some(hex::decode(h.trim()).map_err(|_| {
                        CliError::Usage(format!("--key-id {h:?} is not hexadecimal"))
                    })?),
                    None => None,
                };
            let found: Vec<&TokenEntry> = with_key
                .iter()
                .copied()
                .filter(|e| match (&want_id, &opts.key_label) {
                    (Some(id), _) => &e.id == id,
                    (None, Some(l)) => e.label == *l,
                    (None, None) => false,
                })
                .collect();
            let what = match (&opts.key_id, &opts.key_label) {
                (Some(h), _) => format!("id {h}"),
                (None, Some(l)) => format!("label {l:?}"),
                (None, None) => String::new(),
            };
            match found.as_slice() {
                [one] => one,
                [] => {
                    return Err(CliError::NotFound(format!(
                        "no key with {what} on token {token:?} (keys with a certificate: {})",
                        names(&with_key)
                    )))
                }
                _ => {
                    return Err(CliError::Usage(format!(
                        "several keys with {what} on token {token:?}: choose one with --key-id"
                    )))
                }
            }
        } else {
            match with_key.as_slice() {
                [] => {
                    return Err(CliError::NotFound(format!(
                        "no private key with a certificate on token {token:?}{}",
                        if all.is_empty() {
                            ""
                        } else {
                            " (certificates without their key only)"
                        }
                    )))
                }
                [one] => one,
                several => {
                    let me = cl.admin.get_me(proto::GetMeRequest {}).await?.into_inner();
                    let bound: Vec<String> = me
                        .user
                        .map(|u| u.certificates.into_iter().map(|c| c.sha256).collect())
                        .unwrap_or_default();
                    let mine: Vec<&TokenEntry> = several
                        .iter()
                        .copied()
                        .filter(|e| {
                            bound
                                .iter()
                                .any(|b| b.eq_ignore_ascii_case(&sha256_hex(&e.cert)))
                        })
                        .collect();
                    match mine.as_slice() {
                        [one] => one,
                        [] => {
                            return Err(CliError::Usage(format!(
                                "{} keys on token {token:?} ({}) and none of their certificates \
                                 is bound to you: choose one with --key-label (an administrator \
                                 binds it with `paraph admin user bind-cert`)",
                                several.len(),
                                names(several)
                            )))
                        }
                        _ => {
                            return Err(CliError::Usage(format!(
                                "{} keys on token {token:?} are bound to you ({}): choose one \
                                 with --key-label or --key-id",
                                mine.len(),
                                names(&mine)
                            )))
                        }
                    }
                }
            }
        };
        if !chosen.can_sign {
            return Err(CliError::Denied(format!(
                "key {:?} on token {token:?} is not allowed to sign (its CKA_SIGN is false): \
                 use your signature key, not an authentication or encryption one",
                chosen.label
            )));
        }
        let kind = chosen.kind.ok_or_else(|| {
            CliError::Usage(format!(
                "key {:?} on token {token:?}: neither RSA nor EC, cannot sign with it",
                chosen.label
            ))
        })?;
        let key = chosen
            .key
            .ok_or_else(|| CliError::Local("key handle lost".into()))?;
        let mut chain = vec![chosen.cert.clone()];
        // The issuers present on the token follow the leaf (the server completes the rest).
        chain.extend(issuers(&chosen.cert, &all));
        let label = chosen.label.clone();
        Ok(TokenKey {
            session: Mutex::new(o.session),
            key,
            kind,
            chain,
            label,
            token,
            _module: m,
        })
    }
}

impl TokenKey {
    /// The label of the chosen key.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// The certificates of `all` that issued `leaf`, up the chain (without repeats).
fn issuers(leaf: &[u8], all: &[TokenEntry]) -> Vec<Vec<u8>> {
    let parse = |d: &[u8]| openssl::x509::X509::from_der(d).ok();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let Some(mut cur) = parse(leaf) else {
        return out;
    };
    for _ in 0..8 {
        let next = all
            .iter()
            .filter(|e| e.cert != leaf && !out.contains(&e.cert))
            .find_map(|e| {
                let c = parse(&e.cert)?;
                (cur.issued(&c) == openssl::x509::X509VerifyResult::OK
                    && c.subject_name().to_der().ok() != cur.subject_name().to_der().ok())
                .then_some((e.cert.clone(), c))
            });
        match next {
            Some((der, c)) => {
                out.push(der);
                cur = c;
            }
            None => break,
        }
    }
    out
}

impl SigningKey for TokenKey {
    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn kind(&self) -> KeyKind {
        self.kind
    }

    fn sign(&self, mechanism: Mechanism, data: &[u8]) -> Result<Vec<u8>, CliError> {
        let digest = sha256(data);
        let (mech, input) = match mechanism {
            // The raw mechanisms over a digest computed here: what most cards support.
            Mechanism::RsaPkcs1Sha256 => (CkMechanism::RsaPkcs, sha256_digest_info(&digest)),
            Mechanism::RsaPssSha256 => (
                CkMechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                }),
                digest.to_vec(),
            ),
            Mechanism::EcdsaSha256 => (CkMechanism::Ecdsa, digest.to_vec()),
        };
        let session = self
            .session
            .lock()
            .map_err(|_| CliError::Local("the token session is poisoned".into()))?;
        let value = session.sign(&mech, self.key, &input).map_err(|e| match e {
            CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _) => CliError::Denied(format!(
                "key {:?} on token {:?} is not allowed to sign",
                self.label, self.token
            )),
            CkError::Pkcs11(RvError::UserNotLoggedIn, _) => CliError::Denied(format!(
                "token {:?} logged out (removed or timed out): run the command again",
                self.token
            )),
            CkError::Pkcs11(RvError::TokenNotPresent, _)
            | CkError::Pkcs11(RvError::DeviceRemoved, _)
            | CkError::Pkcs11(RvError::SessionHandleInvalid, _) => CliError::NotFound(format!(
                "token {:?} was removed: insert it again and retry",
                self.token
            )),
            CkError::Pkcs11(RvError::MechanismInvalid, _) => CliError::Local(format!(
                "token {:?} does not support {mechanism:?}",
                self.token
            )),
            other => CliError::Local(format!(
                "signing with key {:?} on token {:?} failed: {}",
                self.label,
                self.token,
                rv_text(&other)
            )),
        })?;
        match mechanism {
            Mechanism::EcdsaSha256 => ecdsa_raw_to_der(&value),
            _ => Ok(value),
        }
    }
}

/// `paraph token list`.
pub async fn list(a: ListArgs) -> Result<(), CliError> {
    let module =
        a.token.pkcs11.clone().ok_or_else(|| {
            CliError::Usage(format!("--pkcs11 MODULE (or {MODULE_ENV}) is required"))
        })?;
    let m = Module::load(&module)?;
    let lib = m.ctx.get_library_info().ok();
    let all_slots = m.ctx.get_all_slots().unwrap_or_default();
    let named = a.token.slot.is_some() || a.token.token_label.is_some();
    // The server, when reachable: which certificates are the caller's, and the policy levels.
    let me = match (a.c.token.as_deref(), super::commands::clients(&a.c).await) {
        (Some(_), Ok(mut cl)) => cl
            .admin
            .get_me(proto::GetMeRequest {})
            .await
            .ok()
            .map(|r| r.into_inner()),
        _ => None,
    };
    let bound: Vec<String> = me
        .as_ref()
        .and_then(|m| m.user.as_ref())
        .map(|u| {
            u.certificates
                .iter()
                .map(|c| c.sha256.to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let levels: Vec<(String, u32)> = me
        .as_ref()
        .map(|m| {
            m.policy_levels
                .iter()
                .map(|p| (p.oid.clone(), p.level))
                .collect()
        })
        .unwrap_or_default();
    let mut slots_json = Vec::new();
    let mut text = String::new();
    if let Some(l) = &lib {
        text.push_str(&format!(
            "module {} ({} {})\n",
            module.display(),
            l.manufacturer_id().trim(),
            l.library_description().trim()
        ));
    }
    for slot in &all_slots {
        if named {
            let keep = match (a.token.slot, &a.token.token_label) {
                (Some(n), _) => slot.id() == n,
                (None, Some(l)) => m
                    .ctx
                    .get_token_info(*slot)
                    .is_ok_and(|t| t.label().trim() == l.trim()),
                _ => true,
            };
            if !keep {
                continue;
            }
        }
        let desc = m
            .ctx
            .get_slot_info(*slot)
            .map(|i| i.slot_description().trim().to_owned())
            .unwrap_or_default();
        let Ok(info) = m.ctx.get_token_info(*slot) else {
            text.push_str(&format!("slot {} ({desc}): no token\n", slot.id()));
            slots_json.push(json!({"slot": slot.id(), "description": desc, "token": Value::Null}));
            continue;
        };
        let label = info.label().trim().to_owned();
        if !info.token_initialized() {
            text.push_str(&format!(
                "slot {} ({desc}): token not initialised\n",
                slot.id()
            ));
            slots_json.push(json!({"slot": slot.id(), "description": desc, "token": {"label": label, "initialized": false}}));
            continue;
        }
        let state = tries_left(&info).unwrap_or("");
        text.push_str(&format!(
            "slot {} ({desc}): token {label:?}, {} {}, serial {}{}\n",
            slot.id(),
            info.manufacturer_id().trim(),
            info.model().trim(),
            info.serial_number().trim(),
            if state.is_empty() {
                String::new()
            } else {
                format!(" — {state}")
            }
        ));
        let o = match open(&m, *slot, &info, false).await {
            Ok(o) => o,
            Err(e) => {
                text.push_str(&format!("  cannot read it: {e}\n"));
                slots_json.push(json!({"slot": slot.id(), "description": desc, "token": {"label": label}, "error": e.to_string()}));
                continue;
            }
        };
        let entries = entries(&o.session)?;
        let mut certs_json = Vec::new();
        for e in &entries {
            if o.logged_in && e.key.is_none() {
                continue; // a CA certificate or one without its key
            }
            let x = openssl::x509::X509::from_der(&e.cert).ok();
            let summary = x
                .as_ref()
                .and_then(|c| crate::crypto::certs::summarize_cert(c).ok());
            let policies = crate::pki::policy_oids(&e.cert);
            let level = policies
                .iter()
                .filter_map(|p| levels.iter().find(|(o, _)| o == p).map(|(_, l)| *l))
                .max();
            let fp = sha256_hex(&e.cert);
            let kind = e.kind.map(|k| k.describe(rsa_bits(&e.cert)));
            let is_bound = me.as_ref().map(|_| bound.contains(&fp));
            let key_state = match (o.logged_in, e.key.is_some(), e.can_sign) {
                (false, _, _) => "private key: not checked (no PIN given)",
                (true, true, true) => "private key: yes, may sign",
                (true, true, false) => "private key: yes, NOT allowed to sign",
                (true, false, _) => "private key: none",
            };
            text.push_str(&format!(
                "  key {:?} id {}: {}\n    subject {}\n    issuer  {}\n    serial  {}\n    policy  {}{}\n    {key_state}{}\n",
                e.label,
                hex::encode(&e.id),
                kind.clone().unwrap_or_else(|| "unknown key type".into()),
                summary.as_ref().map(|s| s.subject.as_str()).unwrap_or("?"),
                summary.as_ref().map(|s| s.issuer.as_str()).unwrap_or("?"),
                summary.as_ref().map(|s| s.serial.as_str()).unwrap_or("?"),
                if policies.is_empty() { "-".into() } else { policies.join(", ") },
                match level {
                    Some(l) => format!(", RGS level {}", super::render::level_text(l)),
                    None if me.is_some() => ", not accepted by your tenant".into(),
                    None => String::new(),
                },
                match is_bound {
                    Some(true) => ", bound to you",
                    Some(false) => ", not bound to you",
                    None => "",
                },
            ));
            certs_json.push(json!({
                "label": e.label,
                "id": hex::encode(&e.id),
                "key_type": kind,
                "subject": summary.as_ref().map(|s| s.subject.clone()),
                "issuer": summary.as_ref().map(|s| s.issuer.clone()),
                "serial": summary.as_ref().map(|s| s.serial.clone()),
                "sha256": fp,
                "policies": policies,
                "level": level,
                "private_key": if o.logged_in { json!(e.key.is_some()) } else { Value::Null },
                "can_sign": if o.logged_in { json!(e.can_sign) } else { Value::Null },
                "bound_to_you": is_bound,
            }));
        }
        if entries.is_empty() {
            text.push_str("  no certificate\n");
        }
        slots_json.push(json!({
            "slot": slot.id(),
            "description": desc,
            "token": {
                "label": label,
                "manufacturer": info.manufacturer_id().trim(),
                "model": info.model().trim(),
                "serial": info.serial_number().trim(),
                "pin_count_low": info.user_pin_count_low(),
                "pin_final_try": info.user_pin_final_try(),
                "pin_locked": info.user_pin_locked(),
                "logged_in": o.logged_in,
            },
            "certificates": certs_json,
        }));
    }
    if a.c.json {
        super::commands::print_json(&json!({
            "module": module.display().to_string(),
            "slots": slots_json,
        }));
    } else {
        if all_slots.is_empty() {
            text.push_str("no slot: is the reader plugged in?\n");
        }
        print_text!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the token's flags (a module that reports none), a wrong PIN still says it is not
    /// retried; a locked PIN names the PUK; both are "not allowed" (4). (SoftHSM2 never locks,
    /// so the locked case is checked here.)
    #[test]
    fn login_errors_name_the_pin_state() {
        use cryptoki::context::Function;
        let e = login_error(
            &CkError::Pkcs11(RvError::PinIncorrect, Function::Login),
            None,
            "card",
        );
        assert_eq!(e.exit_code(), 4);
        assert!(
            e.to_string().contains("wrong PIN for token \"card\""),
            "{e}"
        );
        assert!(e.to_string().contains("not retried"), "{e}");
        let e = login_error(
            &CkError::Pkcs11(RvError::PinLocked, Function::Login),
            None,
            "card",
        );
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("locked"), "{e}");
        assert!(e.to_string().contains("PUK"), "{e}");
        let e = login_error(
            &CkError::Pkcs11(RvError::TokenNotPresent, Function::Login),
            None,
            "card",
        );
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn a_missing_module_or_a_file_that_is_none_is_a_usage_error() {
        let e = Module::load(Path::new("/nonexistent/libnothing.so"))
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("not found"), "{e}");
        let e = Module::load(Path::new("Cargo.toml")).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("not a PKCS#11 module"), "{e}");
    }
}
