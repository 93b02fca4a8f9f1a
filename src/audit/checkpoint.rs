//! Checkpoints: signed statements "the log `origin` had `size` leaves with root hash `root` at
//! `time`", signed with the server's Ed25519 audit key.
//!
//! The text form is a C2SP signed note whose body follows C2SP tlog-checkpoint, with the time
//! as its single extension line:
//!
//! ```text
//! <origin>
//! <size, decimal>
//! <base64 root hash>
//! <time, unix seconds, decimal>
//!
//! — <origin> <base64(key ID || Ed25519 signature of the four body lines)>
//! ```
//!
//! The key name on the signature line is the origin and the key ID is
//! `SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]`, so standard signed-note tooling
//! can verify it with [`AuditPublicKey::verifier_key`]. Decoding is strict: anything but the
//! exact canonical form is malformed, and exactly one signature line is accepted.
//! Times are passed in by the caller; nothing here reads the clock.

use super::merkle::{self, Hash};
use super::AuditError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use sha2::{Digest, Sha256};

/// Signed-note signature type of Ed25519.
const ED25519_TYPE: u8 = 0x01;
const ED25519_SIG_LEN: usize = 64;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

fn key_err(context: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> AuditError {
    move |source| AuditError::Key { context, source }
}

fn malformed(reason: impl Into<String>) -> AuditError {
    AuditError::MalformedCheckpoint(reason.into())
}

/// The server's private audit key (Ed25519).
pub struct AuditKey {
    pkey: PKey<Private>,
    public: AuditPublicKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A fresh random key.
    pub fn generate() -> Result<AuditKey, AuditError> {
        let pkey = PKey::generate_ed25519().map_err(key_err("generating an Ed25519 key"))?;
        AuditKey::from_pkey(pkey)
    }

    /// Loads a PEM private key (PKCS#8, `-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &[u8]) -> Result<AuditKey, AuditError> {
        let pkey = PKey::private_key_from_pem(pem).map_err(key_err("reading the PEM key"))?;
        AuditKey::from_pkey(pkey)
    }

    fn from_pkey(pkey: PKey<Private>) -> Result<AuditKey, AuditError> {
        if pkey.id() != Id::ED25519 {
            return Err(AuditError::NotEd25519);
        }
        let raw = pkey
            .raw_public_key()
            .map_err(key_err("extracting the public key"))?;
        let public = AuditPublicKey::from_raw(&raw)?;
        Ok(AuditKey { pkey, public })
    }

    /// The private key as PEM PKCS#8, to save it (the caller protects the file).
    pub fn to_pkcs8_pem(&self) -> Result<Vec<u8>, AuditError> {
        self.pkey
            .private_key_to_pem_pkcs8()
            .map_err(key_err("writing the PEM key"))
    }

    pub fn public_key(&self) -> &AuditPublicKey {
        &self.public
    }

    /// Signs a checkpoint. The checkpoint must be well formed ([`Checkpoint::validate`]).
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, AuditError> {
        checkpoint.validate()?;
        let body = checkpoint.body();
        let mut signer =
            Signer::new_without_digest(&self.pkey).map_err(key_err("preparing to sign"))?;
        let signature = signer
            .sign_oneshot_to_vec(body.as_bytes())
            .map_err(key_err("signing the checkpoint"))?;
        Ok(SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            key_id: self.public.key_id(&checkpoint.origin),
            signature,
        })
    }
}

/// The audit public key, which anyone verifying checkpoints needs.
#[derive(Clone)]
pub struct AuditPublicKey {
    pkey: PKey<Public>,
    raw: [u8; 32],
}

impl std::fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditPublicKey({})", BASE64.encode(self.raw))
    }
}

impl PartialEq for AuditPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for AuditPublicKey {}

impl AuditPublicKey {
    /// Loads a PEM public key (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &[u8]) -> Result<AuditPublicKey, AuditError> {
        let pkey = PKey::public_key_from_pem(pem).map_err(key_err("reading the PEM public key"))?;
        if pkey.id() != Id::ED25519 {
            return Err(AuditError::NotEd25519);
        }
        let raw = pkey
            .raw_public_key()
            .map_err(key_err("extracting the public key"))?;
        AuditPublicKey::from_raw(&raw)
    }

    /// The key from its 32 raw bytes (RFC 8032 encoding).
    pub fn from_raw(bytes: &[u8]) -> Result<AuditPublicKey, AuditError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| AuditError::NotEd25519)?;
        let pkey = PKey::public_key_from_raw_bytes(&raw, Id::ED25519)
            .map_err(key_err("reading the raw public key"))?;
        Ok(AuditPublicKey { pkey, raw })
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for export.
    pub fn to_pem(&self) -> Result<Vec<u8>, AuditError> {
        self.pkey
            .public_key_to_pem()
            .map_err(key_err("writing the PEM public key"))
    }

    /// The 32 raw bytes (RFC 8032 encoding).
    pub fn raw(&self) -> [u8; 32] {
        self.raw
    }

    /// The signed-note key ID of this key under the key name `name`.
    pub fn key_id(&self, name: &str) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([b'\n', ED25519_TYPE]);
        h.update(self.raw);
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The signed-note verifier key string `name+hex(key ID)+base64(0x01 || public key)`.
    pub fn verifier_key(&self, name: &str) -> String {
        let mut typed = Vec::with_capacity(33);
        typed.push(ED25519_TYPE);
        typed.extend_from_slice(&self.raw);
        format!(
            "{name}+{}+{}",
            hex::encode(self.key_id(name)),
            BASE64.encode(typed)
        )
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(mut verifier) = Verifier::new_without_digest(&self.pkey) else {
            return false;
        };
        verifier.verify_oneshot(signature, message).unwrap_or(false)
    }
}

/// A tree head of one log at a time chosen by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `paraph.example.org/audit/<tenant>`: non-empty, without
    /// whitespace, `+` or control characters.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Unix seconds, non-negative.
    pub time: i64,
}

impl Checkpoint {
    /// Checks the fields can be written in the canonical form.
    pub fn validate(&self) -> Result<(), AuditError> {
        check_origin(&self.origin)?;
        if self.time < 0 {
            return Err(malformed(format!("negative time {}", self.time)));
        }
        Ok(())
    }

    /// The canonical body: `origin\nsize\nbase64(root)\ntime\n`, the bytes that are signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time
        )
    }

    /// Parses a canonical body (strict: any other spelling is malformed).
    pub fn parse_body(body: &str) -> Result<Checkpoint, AuditError> {
        let Some(text) = body.strip_suffix('\n') else {
            return Err(malformed("the body does not end with a newline"));
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, time] = lines[..] else {
            return Err(malformed(format!(
                "the body has {} lines, expected 4 (origin, size, root hash, time)",
                lines.len()
            )));
        };
        check_origin(origin)?;
        let size = parse_decimal(size, "tree size")?;
        let root_bytes = BASE64
            .decode(root)
            .map_err(|e| malformed(format!("root hash is not base64: {e}")))?;
        let root: Hash = root_bytes.as_slice().try_into().map_err(|_| {
            malformed(format!(
                "root hash has {} bytes, expected 32",
                root_bytes.len()
            ))
        })?;
        let time = i64::try_from(parse_decimal(time, "time")?)
            .map_err(|_| malformed("time is out of range"))?;
        let checkpoint = Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            time,
        };
        if checkpoint.body() != body {
            return Err(malformed("the body is not in canonical form"));
        }
        Ok(checkpoint)
    }

    /// Checks that this checkpoint is not older than `known`, one the verifier already trusts
    /// for the same log: a smaller size (or the same size at an earlier time) is stale, the same
    /// size with another root is a fork, and a larger size at an earlier time is a time
    /// regression. It does not prove that the larger tree extends the smaller one: that is
    /// [`Checkpoint::verify_consistency`].
    pub fn ensure_not_older(&self, known: &Checkpoint) -> Result<(), AuditError> {
        if self.origin != known.origin {
            return Err(AuditError::WrongOrigin {
                expected: known.origin.clone(),
                found: self.origin.clone(),
            });
        }
        let stale = AuditError::StaleCheckpoint {
            size: self.size,
            time: self.time,
            known_size: known.size,
            known_time: known.time,
        };
        match self.size.cmp(&known.size) {
            std::cmp::Ordering::Less => Err(stale),
            std::cmp::Ordering::Equal if self.root != known.root => {
                Err(AuditError::Fork { size: self.size })
            }
            std::cmp::Ordering::Equal if self.time < known.time => Err(stale),
            std::cmp::Ordering::Greater if self.time < known.time => {
                Err(AuditError::CheckpointTimeRegression {
                    size: self.size,
                    time: self.time,
                    known_size: known.size,
                    known_time: known.time,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks that the checkpoint is at most `max_age` seconds older than `now` (given by the
    /// caller).
    pub fn ensure_recent(&self, now: i64, max_age: u64) -> Result<(), AuditError> {
        let age = i128::from(now) - i128::from(self.time);
        if age > i128::from(max_age) {
            return Err(AuditError::OutdatedCheckpoint {
                time: self.time,
                now,
                max_age,
            });
        }
        Ok(())
    }

    /// Verifies that `leaf_hash` is leaf `index` of the tree this checkpoint commits to.
    pub fn verify_inclusion(
        &self,
        leaf_hash: &Hash,
        index: u64,
        proof: &[Hash],
    ) -> Result<(), AuditError> {
        merkle::verify_inclusion(leaf_hash, index, self.size, proof, &self.root)
    }

    /// Verifies that `newer` (same log, not smaller) extends this checkpoint's tree.
    pub fn verify_consistency(&self, newer: &Checkpoint, proof: &[Hash]) -> Result<(), AuditError> {
        if self.origin != newer.origin {
            return Err(AuditError::WrongOrigin {
                expected: self.origin.clone(),
                found: newer.origin.clone(),
            });
        }
        merkle::verify_consistency(self.size, newer.size, &self.root, &newer.root, proof)
    }
}

fn check_origin(origin: &str) -> Result<(), AuditError> {
    if origin.is_empty() {
        return Err(malformed("empty origin"));
    }
    if let Some(c) = origin
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
    {
        return Err(malformed(format!(
            "origin {origin:?} contains the forbidden character {c:?}"
        )));
    }
    Ok(())
}

/// A non-negative decimal without sign or leading zeros.
fn parse_decimal(s: &str, what: &str) -> Result<u64, AuditError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(malformed(format!(
            "{what} {s:?} is not a canonical decimal"
        )));
    }
    s.parse()
        .map_err(|_| malformed(format!("{what} {s:?} is out of range")))
}

/// A checkpoint with the audit key's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// Signed-note key ID of the signing key under the origin as key name.
    pub key_id: [u8; 4],
    /// Ed25519 signature of [`Checkpoint::body`].
    pub signature: Vec<u8>,
}

impl SignedCheckpoint {
    /// The signed-note text: body, blank line, one signature line.
    pub fn encode(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.signature);
        format!(
            "{}\n{SIGNATURE_PREFIX}{} {}\n",
            self.checkpoint.body(),
            self.checkpoint.origin,
            BASE64.encode(blob)
        )
    }

    /// Parses the signed-note text (strict). It does not verify the signature: call
    /// [`SignedCheckpoint::verify`].
    pub fn decode(bytes: &[u8]) -> Result<SignedCheckpoint, AuditError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| malformed("the text is not valid UTF-8"))?;
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("the text contains a control character"));
        }
        let Some(split) = text.find("\n\n") else {
            return Err(malformed("no blank line before the signature"));
        };
        let (body, signatures) = (&text[..split + 1], &text[split + 2..]);
        let checkpoint = Checkpoint::parse_body(body)?;
        let Some(line) = signatures.strip_suffix('\n') else {
            return Err(malformed("the signature line does not end with a newline"));
        };
        if line.contains('\n') {
            return Err(malformed("expected exactly one signature line"));
        }
        let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(malformed(
                "the signature line does not start with an em dash",
            ));
        };
        let Some((name, blob)) = rest.split_once(' ') else {
            return Err(malformed("the signature line has no key name"));
        };
        if name != checkpoint.origin {
            return Err(malformed(format!(
                "the signature's key name {name:?} is not the origin {:?}",
                checkpoint.origin
            )));
        }
        let blob = BASE64
            .decode(blob)
            .map_err(|e| malformed(format!("the signature is not base64: {e}")))?;
        if blob.len() != 4 + ED25519_SIG_LEN {
            return Err(malformed(format!(
                "the signature has {} bytes, expected {}",
                blob.len(),
                4 + ED25519_SIG_LEN
            )));
        }
        let (key_id, signature) = blob.split_at(4);
        let signed = SignedCheckpoint {
            checkpoint,
            key_id: [key_id[0], key_id[1], key_id[2], key_id[3]],
            signature: signature.to_vec(),
        };
        if signed.encode() != text {
            return Err(malformed("the text is not in canonical form"));
        }
        Ok(signed)
    }

    /// Verifies the checkpoint is for `expected_origin` and signed by `key`; returns it.
    pub fn verify(
        &self,
        key: &AuditPublicKey,
        expected_origin: &str,
    ) -> Result<&Checkpoint, AuditError> {
        if self.checkpoint.origin != expected_origin {
            return Err(AuditError::WrongOrigin {
                expected: expected_origin.to_string(),
                found: self.checkpoint.origin.clone(),
            });
        }
        if self.key_id != key.key_id(&self.checkpoint.origin)
            || !key.verifies(self.checkpoint.body().as_bytes(), &self.signature)
        {
            return Err(AuditError::ForgedCheckpoint);
        }
        Ok(&self.checkpoint)
    }
}
