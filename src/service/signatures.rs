//! Certificate signatures and seals: two-phase signing (prepare, complete), the tenant seal,
//! stored signatures, and validation reports.
//!
//! Security rationale: the server never sees an officer's private key. It fixes the exact bytes
//! to sign (CAdES signed attributes binding the document digest, the time and the certificate)
//! in a preparation that belongs to one user, one document and one step, expires, and is used
//! once; a value is accepted only if it verifies over those bytes with the bound certificate,
//! whose chain is validated again at completion with the CRLs in force.

use super::documents::record;
use super::trust::trust_key;
use super::{ordered_id16, Caller, Idem, Paraph, Result, ServiceError};
use crate::crypto::{self, cades, SignerPart};
use crate::domain::{
    Document, DocumentId, DomainError, Role, TenantId, Timestamp, Transition, User, UserName,
};
use crate::store::{Reads, Tx};
use crate::validation::{validate_chain, ChainRefusal, Der, TrustSettings};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;

/// How long a preparation may be completed.
pub const PREPARATION_TTL_SECS: u64 = 600;

/// A tenant's seal: private key and certificate chain (from a PKCS#12 file).
pub struct SealKey {
    pub key: openssl::pkey::PKey<openssl::pkey::Private>,
    pub cert_der: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    /// The `[pades]` settings the seal's PDF signatures use (space for the CMS, location).
    pub pades: crate::formats::pades::PadesSettings,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)") // never print key material
    }
}

impl SealKey {
    pub fn from_pkcs12(der: &[u8], password: &str) -> std::result::Result<SealKey, String> {
        let p12 = openssl::pkcs12::Pkcs12::from_der(der)
            .map_err(|e| format!("not a PKCS#12 file: {}", crate::crypto::openssl_reason(&e)))?;
        let parsed = p12
            .parse2(password)
            .map_err(|_| "cannot open the PKCS#12 file (wrong password?)".to_string())?;
        let key = parsed.pkey.ok_or("the PKCS#12 file holds no private key")?;
        let cert = parsed.cert.ok_or("the PKCS#12 file holds no certificate")?;
        let mut chain = Vec::new();
        if let Some(ca) = parsed.ca {
            for c in ca {
                chain.push(c.to_der().map_err(|e| e.to_string())?);
            }
        }
        Ok(SealKey {
            key,
            cert_der: cert.to_der().map_err(|e| e.to_string())?,
            chain,
            pades: Default::default(),
        })
    }
}

/// The PDF options of a step that has none.
const NO_PDF_OPTIONS: crate::domain::PdfOptions = crate::domain::PdfOptions {
    invisible: false,
    stamp: None,
    certify: false,
};

/// A pending preparation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preparation {
    pub id: String,
    pub document: DocumentId,
    pub step: u32,
    pub actor: UserName,
    pub cert: Der,
    pub chain: Vec<Der>,
    pub signed_attrs: Der,
    pub alg: String,
    pub signing_time: Timestamp,
    pub expires_at: Timestamp,
    pub used: bool,
    /// The actor whose share this signature does, when the signer is his delegate.
    #[serde(default)]
    pub on_behalf_of: Option<UserName>,
    /// The level the step requires (a document's steps are fixed when it is submitted), so
    /// that the completion validates the chain without reading the document first. `None` in
    /// preparations of older versions: the completion reads it from the document.
    #[serde(default)]
    pub step_level: Option<PreparedLevel>,
    /// The document's signature format (CAdES in preparations of older versions).
    #[serde(default)]
    pub format: crate::domain::SignatureFormat,
    /// What an enveloped format prepared (every item to sign, the signatures to insert, the
    /// content revision they go into); `None` for CAdES, whose one item is `signed_attrs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<crate::formats::FormatPrepared>,
}

/// The level a step required when a signature of it was prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedLevel {
    pub required: Option<crate::domain::RgsLevel>,
}

/// A signature stored with the validation material it relied on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureRecord {
    pub index: u32,
    pub step: u32,
    pub signer: UserName,
    pub on_behalf_of: Option<UserName>,
    /// The absence the delegation relied on, and how the signer came to act for someone else.
    #[serde(default)]
    pub absence: Option<crate::domain::AbsenceId>,
    #[serde(default)]
    pub route: Option<crate::domain::RouteKind>,
    pub subject: String,
    pub cert_sha256: String,
    pub level: u8,
    pub signing_time: Timestamp,
    pub seal: bool,
    pub cert: Der,
    pub signed_attrs: Der,
    pub signature: Der,
    pub alg: String,
    /// The validated chain (signer first) and the CRLs used.
    pub chain: Vec<Der>,
    pub crls: Vec<Der>,
    /// As stored: the chain and the CRLs by SHA-256 (hex) of DER kept once per tenant under
    /// `der/` (a tenant's signatures share a few chains and CRLs); empty in answers and in
    /// records stored before, which hold `chain` and `crls` themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_refs: Vec<String>,
    /// This signature alone as a detached CMS SignedData; without its CRLs when
    /// `crls_detached` (see [`SignatureRecord::whole_cms`]).
    pub cms: Der,
    /// Whether `cms` was stored without the CRLs (a CRL of 100,000 entries is megabytes, and a
    /// tenant's signatures share it): the CMS the audit log recorded is `cms` with the CRLs
    /// put back. `false` in records stored before, whose `cms` holds them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crls_detached: bool,
}

impl SignatureRecord {
    /// The digest of what an evidence bundle shows of this signature beside its CMS.
    pub fn description_sha256(&self) -> std::result::Result<String, crate::audit::AuditError> {
        crate::audit::commit::SignatureDescription {
            index: self.index,
            step: self.step,
            signer: self.signer.as_str(),
            on_behalf_of: self.on_behalf_of.as_ref().map(UserName::as_str),
            absence: self.absence.as_ref().map(|a| a.as_str()),
            route: self.route.map(|k| k.as_str()),
            seal: self.seal,
            level: self.level,
            signing_time: self.signing_time.0,
            subject: &self.subject,
        }
        .sha256()
    }

    /// The record as an answer carries it: the CMS, which holds the certificate, the signed
    /// attributes, the value and the chain, without those parts again beside it (they stay in
    /// the stored record), and without the CRLs, named by hash (see [`Self::detach_crls`]).
    pub fn without_parts(self) -> Result<SignatureRecord> {
        let mut r = self.detach_crls()?;
        r.cert = Der(Vec::new());
        r.signed_attrs = Der(Vec::new());
        r.signature = Der(Vec::new());
        r.chain = Vec::new();
        r.chain_refs = Vec::new();
        Ok(r)
    }

    /// The record with its CMS without the CRLs and the CRLs by hash in `crl_refs` (what
    /// answers carry: a large CRL is fetched once by hash, not with every signature). A record
    /// stored before, whose CMS holds its CRLs, has them taken out.
    pub fn detach_crls(mut self) -> Result<SignatureRecord> {
        if self.crl_refs.is_empty() {
            self.crl_refs = self.crls.iter().map(|d| super::sha256_hex(&d.0)).collect();
        }
        // An enveloped signature (PES) has no CMS to take them out of.
        if !self.crls_detached && !self.crl_refs.is_empty() && !self.cms.0.is_empty() {
            self.cms = Der(crypto::with_crls(&self.cms.0, &[])
                .map_err(|e| ServiceError::Internal(format!("stored signature: {e}")))?);
            self.crls_detached = true;
        }
        self.crls = Vec::new();
        Ok(self)
    }

    /// The CMS the audit log recorded: the stored one, with its CRLs put back when they were
    /// stored apart. The CRLs must have been read back (see [`Self::with_material`]).
    pub fn whole_cms(&self) -> Result<Vec<u8>> {
        // An enveloped signature (PES) has no CMS: the audit log recorded the empty one.
        if !self.crls_detached
            || self.cms.0.is_empty()
            || (self.crls.is_empty() && self.crl_refs.is_empty())
        {
            return Ok(self.cms.0.clone());
        }
        if self.crls.len() != self.crl_refs.len() && !self.crl_refs.is_empty() {
            return Err(ServiceError::Internal(
                "the CRLs of a signature were not read back".into(),
            ));
        }
        let crls: Vec<Vec<u8>> = self.crls.iter().map(|d| d.0.clone()).collect();
        crypto::with_crls(&self.cms.0, &crls)
            .map_err(|e| ServiceError::Internal(format!("stored signature: {e}")))
    }

    /// The record with its chain read back from the tenant's `der/` records, its CRLs left
    /// by reference.
    pub(super) fn with_chain(
        self,
        tenant: &TenantId,
        get: &dyn Fn(&str) -> Result<Option<sled::IVec>>,
    ) -> Result<SignatureRecord> {
        self.read_back(tenant, get, false)
    }

    /// The record with its chain and CRLs read back from the tenant's `der/` records (a
    /// record stored before holds them already). `get` reads a key.
    pub(super) fn with_material(
        self,
        tenant: &TenantId,
        get: &dyn Fn(&str) -> Result<Option<sled::IVec>>,
    ) -> Result<SignatureRecord> {
        self.read_back(tenant, get, true)
    }

    fn read_back(
        mut self,
        tenant: &TenantId,
        get: &dyn Fn(&str) -> Result<Option<sled::IVec>>,
        crls: bool,
    ) -> Result<SignatureRecord> {
        let resolve = |refs: &[String]| -> Result<Vec<Der>> {
            refs.iter()
                .map(|h| {
                    let der = get(&der_key(tenant, h))?.ok_or_else(|| {
                        ServiceError::Internal(format!("certificate or CRL {h} is missing"))
                    })?;
                    // Kept by its hash: a record that no longer matches it is refused.
                    if super::sha256_hex(&der) != *h {
                        return Err(ServiceError::Internal(format!(
                            "certificate or CRL {h} does not match its hash"
                        )));
                    }
                    Ok(Der(der.to_vec()))
                })
                .collect()
        };
        if !self.chain_refs.is_empty() {
            self.chain = resolve(&self.chain_refs)?;
            self.chain_refs = Vec::new();
        }
        if crls && !self.crl_refs.is_empty() {
            self.crls = resolve(&self.crl_refs)?;
            self.crl_refs = Vec::new();
        }
        Ok(self)
    }

    fn part(&self) -> Result<SignerPart> {
        let alg = match self.alg.as_str() {
            "RSA_PKCS1_SHA256" => crypto::SigAlg::RsaPkcs1Sha256,
            "ECDSA_SHA256" => crypto::SigAlg::EcdsaSha256,
            other => return Err(ServiceError::Internal(format!("stored algorithm {other}"))),
        };
        Ok(SignerPart {
            cert_der: self.cert.0.clone(),
            signed_attrs_der: self.signed_attrs.0.clone(),
            signature: self.signature.0.clone(),
            alg,
        })
    }
}

/// A refused certificate as the service reports it.
fn refused(r: ChainRefusal) -> ServiceError {
    DomainError::WrongState(format!("certificate refused: {}: {}", r.code, r.message)).into()
}

fn content_digest(doc: &Document) -> Result<[u8; 32]> {
    let v = hex::decode(&doc.content.sha256).map_err(|e| ServiceError::Internal(e.to_string()))?;
    v.try_into()
        .map_err(|_| ServiceError::Internal("stored content digest is not 32 bytes".into()))
}

/// `sighash/{t}/{doc}/{i:04}`: lowercase hex SHA-256 of signature `i`'s CMS (a record older
/// versions stored; now a transaction-local fact).
fn sig_hash_key(t: &TenantId, d: &DocumentId, i: u32) -> String {
    format!("sighash/{t}/{d}/{i:04}")
}

/// The lowercase hex SHA-256 of signature `i`'s CMS: handed over by the transaction that stored
/// the signature, else as older versions stored it, else from the signature record itself.
pub(super) fn cms_sha256(tx: &Tx<'_>, t: &TenantId, d: &DocumentId, i: u32) -> Result<String> {
    let key = sig_hash_key(t, d, i);
    if let Some(h) = tx.local(&key) {
        return Ok(String::from_utf8_lossy(h).into_owned());
    }
    if let Some(h) = tx.get_raw(&key)? {
        return Ok(String::from_utf8_lossy(&h).into_owned());
    }
    let rec = signature_at(tx, t, d, i)?.with_material(t, &|k| Ok(tx.get_raw(k)?))?;
    Ok(super::sha256_hex(&rec.whole_cms()?))
}

/// `sigdesc/{t}/{doc}/{i:04}`: the digest of signature `i`'s description, a transaction-local
/// fact (never stored).
fn sig_description_key(t: &TenantId, d: &DocumentId, i: u32) -> String {
    format!("sigdesc/{t}/{d}/{i:04}")
}

/// The digest of signature `i`'s description, which its audit event commits: handed over by
/// the transaction that stored the signature, else from the signature record.
pub(super) fn description_sha256(
    tx: &Tx<'_>,
    t: &TenantId,
    d: &DocumentId,
    i: u32,
) -> Result<String> {
    if let Some(h) = tx.local(&sig_description_key(t, d, i)) {
        return Ok(String::from_utf8_lossy(h).into_owned());
    }
    Ok(signature_at(tx, t, d, i)?.description_sha256()?)
}

/// `der/{t}/{sha256}`: a certificate or CRL that signature records of the tenant refer to.
fn der_key(t: &TenantId, sha256_hex: &str) -> String {
    format!("der/{t}/{sha256_hex}")
}

/// Keeps `ders` once in the tenant's `der/` records; their hashes, in order.
fn put_material(tx: &mut Tx<'_>, tenant: &TenantId, ders: &[Der]) -> Result<Vec<String>> {
    let mut refs = Vec::with_capacity(ders.len());
    for d in ders {
        let h = super::sha256_hex(&d.0);
        let key = der_key(tenant, &h);
        if !tx.exists(&key)? {
            tx.put_raw(&key, &d.0)?;
        }
        refs.push(h);
    }
    Ok(refs)
}

fn sig_prefix(t: &TenantId, d: &DocumentId) -> String {
    format!("sig/{t}/{d}/")
}

/// `sig/{t}/{doc}/{i:04}`: signature record `i` of a document.
fn sig_key(t: &TenantId, d: &DocumentId, i: u32) -> String {
    format!("{}{i:04}", sig_prefix(t, d))
}

/// Signature record `i` of a document as stored (chain and CRLs by reference); a missing one is
/// an error naming it.
pub(super) fn signature_at(
    tx: &Tx<'_>,
    t: &TenantId,
    d: &DocumentId,
    i: u32,
) -> Result<SignatureRecord> {
    tx.get(&sig_key(t, d, i))?
        .ok_or_else(|| ServiceError::Internal(format!("signature #{i} of {d} is missing")))
}

/// How many signature records the document has: one past the last one's index (records are
/// numbered from 0 and never removed). Older versions also kept the count in `sigcount/`; it
/// is no longer read or written.
pub(super) fn signature_count(tx: &Tx<'_>, tenant: &TenantId, doc: &DocumentId) -> Result<u32> {
    let prefix = sig_prefix(tenant, doc);
    // `~` sorts after every digit: the floor is the record with the greatest index.
    let Some((key, _)) = tx.floor_raw(&prefix, &format!("{prefix}~"))? else {
        return Ok(0);
    };
    let last: u32 = super::key_number(&prefix, &key)
        .ok_or_else(|| ServiceError::Internal(format!("corrupt signature key under {prefix}")))?;
    let mut n = last + 1;
    // Indexes of 10,000 and more sort before 9999 (four digits): step over them.
    while n >= 10_000 && tx.exists(&sig_key(tenant, doc, n))? {
        n += 1;
    }
    Ok(n)
}

/// Stores a signature record under the next index of the document.
fn put_signature(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    doc: &DocumentId,
    mut rec: SignatureRecord,
) -> Result<SignatureRecord> {
    let n = signature_count(tx, tenant, doc)?;
    rec.index = n;
    // Stored with the chain and CRLs by reference: they are moved out for the write and back
    // for the caller, instead of copying the whole record.
    let (chain, crls) = (
        std::mem::take(&mut rec.chain),
        std::mem::take(&mut rec.crls),
    );
    rec.chain_refs = put_material(tx, tenant, &chain)?;
    rec.crl_refs = put_material(tx, tenant, &crls)?;
    tx.put(&sig_key(tenant, doc, n), &rec)?;
    rec.chain = chain;
    rec.crls = crls;
    // The digest of the whole CMS (CRLs put back), for the audit event of the same
    // transition (so the event does not re-read the record); not stored: [`cms_sha256`]
    // recomputes it from the record.
    let whole = super::sha256_hex(&rec.whole_cms()?);
    rec.chain_refs = Vec::new();
    rec.crl_refs = Vec::new();
    tx.set_local(&sig_hash_key(tenant, doc, n), whole.into_bytes());
    tx.set_local(
        &sig_description_key(tenant, doc, n),
        rec.description_sha256()?.into_bytes(),
    );
    Ok(rec)
}

/// Applies the tenant seal on every SEAL step the transition reached (inside the transaction).
pub(super) fn settle_seals(
    tx: &mut Tx<'_>,
    seal: Option<&Arc<SealKey>>,
    mut t: Transition,
    now: Timestamp,
) -> Result<Transition> {
    while let Some(step) = t.document.awaits_seal() {
        let key =
            seal.ok_or_else(|| DomainError::WrongState("the tenant has no seal key".into()))?;
        let trust = tx
            .get::<TrustSettings>(&trust_key(&t.document.tenant))?
            .unwrap_or_default()
            .owned_by(t.document.tenant.as_str());
        let digest = content_digest(&t.document)?;
        // A format that embeds the CMS (PAdES) seals inside the current revision.
        let format = crate::formats::implementation(t.document.format).map_err(format_refusal)?;
        let inside = if format.embeds_cms() {
            let current = t.document.current_content().sha256.clone();
            let content = tx
                .get_raw(&format!("blob/{}/{current}", t.document.tenant))?
                .ok_or_else(|| ServiceError::Internal(format!("content {current} is missing")))?;
            let prepared = format
                .prepare(&crate::formats::PrepareInput {
                    content: &content,
                    content_sha256: digest,
                    signing_time: now.0,
                    cert_der: &key.cert_der,
                    cades_policy: trust.signature_policy.as_ref(),
                    pes: &Default::default(),
                    pades: &key.pades,
                    reason: step_reason(&t.document, step, None),
                    level: None,
                    pdf: t
                        .document
                        .steps
                        .get(step)
                        .map_or(&NO_PDF_OPTIONS, |s| &s.pdf),
                })
                .map_err(format_refusal)?;
            Some((content, prepared))
        } else {
            None
        };
        let attrs = match &inside {
            Some((_, p)) => p.items.first().map(|i| i.data.clone()).unwrap_or_default(),
            None => cades::build_signed_attributes(
                &digest,
                now.0,
                &key.cert_der,
                trust.signature_policy.as_ref(),
            )
            .map_err(|e| ServiceError::Internal(format!("seal: {e}")))?,
        };
        let signature = crypto::sign_with_key(&key.key, &attrs)
            .map_err(|e| ServiceError::Internal(format!("seal: {e}")))?;
        let level = t.document.steps[step].level.map(|l| l.get());
        let ok =
            validate_chain(&trust, &key.cert_der, &key.chain, &[], now.0, level).map_err(|r| {
                ServiceError::from(DomainError::WrongState(format!(
                    "seal certificate refused: {}: {}",
                    r.code, r.message
                )))
            })?;
        let alg = crypto::verify_signature_value(&key.cert_der, &attrs, &signature)
            .map_err(|e| ServiceError::Internal(format!("seal self-check: {e}")))?;
        let part = SignerPart {
            cert_der: key.cert_der.clone(),
            signed_attrs_der: attrs.clone(),
            signature: signature.clone(),
            alg,
        };
        // Without the CRLs: they are kept once by hash (see `crls_detached`).
        let cms = crypto::assemble(std::slice::from_ref(&part), &ok.chain, &[])
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if let Some((content, prepared)) = &inside {
            if let Some(bytes) = format
                .embed_cms(content, prepared, &cms)
                .map_err(format_refusal)?
            {
                let r = Revision::new(bytes);
                let blob = format!("blob/{}/{}", t.document.tenant, r.sha256);
                if !tx.exists(&blob)? {
                    tx.put_raw(&blob, &r.bytes)?;
                }
                let file_name = t.document.content.file_name.clone();
                t.document.revisions.push(crate::domain::ContentRef {
                    sha256: r.sha256,
                    size: r.bytes.len() as u64,
                    file_name,
                });
            }
        }
        let rec = SignatureRecord {
            index: 0,
            step: step as u32,
            signer: UserName::seal(),
            on_behalf_of: None,
            absence: None,
            route: None,
            subject: ok.subject.clone(),
            cert_sha256: hex::encode(sha2::Sha256::digest(&key.cert_der)),
            level: ok.level,
            signing_time: now,
            seal: true,
            cert: Der(key.cert_der.clone()),
            signed_attrs: Der(attrs),
            signature: Der(signature),
            alg: alg.name().to_owned(),
            chain: ok.chain.iter().cloned().map(Der).collect(),
            crls: trust.crls.clone(),
            chain_refs: Vec::new(),
            crl_refs: Vec::new(),
            cms: Der(cms),
            crls_detached: true,
        };
        let doc_id = t.document.id.clone();
        let tenant = t.document.tenant.clone();
        let rec = put_signature(tx, &tenant, &doc_id, rec)?;
        let next = t.document.seal(
            format!("signature #{} by {}", rec.index, ok.subject),
            rec.index,
            now,
        )?;
        t.events.extend(next.events);
        t.document = next.document;
    }
    Ok(t)
}

/// The `/Reason` of a PAdES signature: the step's kind, and for whom when delegated.
fn step_reason(doc: &Document, step: usize, on_behalf_of: Option<&UserName>) -> String {
    use crate::domain::StepKind;
    let kind = match doc.steps.get(step).map(|s| s.kind) {
        Some(StepKind::Visa) => "Visa",
        Some(StepKind::Seal) => "Cachet",
        _ => "Signature",
    };
    match on_behalf_of {
        Some(u) => format!("{kind} pour le compte de {u}"),
        None => kind.to_owned(),
    }
}

/// A refusal by a signature format as the service reports it.
fn format_refusal(e: crate::formats::FormatError) -> ServiceError {
    use crate::formats::FormatError as F;
    match e {
        F::Invalid(m) => DomainError::invalid("signature_value", m).into(),
        F::Refused(m) => DomainError::WrongState(m).into(),
        F::BadValue(_) => DomainError::WrongState(e.to_string()).into(),
        F::Internal(m) => ServiceError::Internal(m),
    }
}

/// A content revision produced by a completion.
struct Revision {
    sha256: String,
    bytes: Vec<u8>,
}

impl Revision {
    fn new(bytes: Vec<u8>) -> Revision {
        Revision {
            sha256: super::sha256_hex(&bytes),
            bytes,
        }
    }
}

/// A stored content (a document's submitted content or a revision), checked against its digest.
fn content_bytes(s: &crate::store::Store, tenant: &TenantId, sha256: &str) -> Result<Vec<u8>> {
    let bytes = s
        .get_raw(&format!("blob/{tenant}/{sha256}"))?
        .ok_or_else(|| ServiceError::Internal(format!("content {sha256} is missing")))?;
    if super::sha256_hex(&bytes) != sha256 {
        return Err(ServiceError::Internal(format!(
            "content {sha256} does not match its digest"
        )));
    }
    Ok(bytes.to_vec())
}

/// What `PrepareSignature` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparationView {
    pub id: String,
    pub document: DocumentId,
    pub step: u32,
    pub signed_attrs: Der,
    pub alg: String,
    pub signing_time: Timestamp,
    pub expires_at: Timestamp,
    pub format: crate::domain::SignatureFormat,
    /// Every item to sign, in order.
    pub items: Vec<crate::formats::ToBeSigned>,
}

/// What the idempotency record of a `CompleteSignature` holds: the document, and the signature
/// by its index (its record never changes); records written before hold the whole signature.
#[derive(Debug, Serialize, Deserialize)]
struct CompletedAnswer {
    document: Document,
    signature: StoredSignature,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredSignature {
    Index(u32),
    Record(Box<SignatureRecord>),
}

/// What `CompleteSignature` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    pub document: Document,
    /// The stored record without its parts (see [`SignatureRecord::without_parts`]).
    pub signature: SignatureRecord,
}

impl Paraph {
    pub async fn prepare_signature(
        &self,
        caller: &Caller,
        id: DocumentId,
        step: Option<u32>,
        chain: Vec<Vec<u8>>,
        idem: Option<Idem>,
    ) -> Result<PreparationView> {
        caller.require(Role::Officer)?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(DomainError::invalid(
                "certificate_chain",
                "the signer certificate is required",
            )
            .into());
        };
        if chain.len() > 10 || chain.iter().any(|c| c.len() > 64 * 1024) {
            return Err(DomainError::invalid(
                "certificate_chain",
                "at most 10 certificates of 64 KiB",
            )
            .into());
        }
        let tenant = caller.tenant.clone();
        let actor = caller.name.clone();
        let now = self.clock.now();
        let prep_id = hex::encode(ordered_id16()?);
        let (doc, who, prepared, enveloped, alg, level) = {
            let (tenant, actor, chain) = (tenant.clone(), actor.clone(), chain.clone());
            let chains = self.chains.clone();
            let trusts = self.trusts.clone();
            let pes = self.limits.pes.for_tenant(tenant.as_str());
            let pades = self.limits.pades.clone();
            self.blocking(move |s| {
                // The document and the officer in one round trip.
                let (doc_key, user_key) = (
                    format!("doc/{tenant}/{id}"),
                    format!("user/{tenant}/{actor}"),
                );
                let mut both = s
                    .get_many_raw(&[doc_key.clone(), user_key.clone()])?
                    .into_iter();
                let (doc, user) = (both.next().flatten(), both.next().flatten());
                let doc: Document = crate::store::decode(
                    doc_key.as_bytes(),
                    &doc.ok_or_else(|| DomainError::NotFound(format!("document '{id}'")))?,
                )?;
                let (who, level) = doc.signable_step(&actor, step)?;
                let leaf_key = crypto::certificate_public_key(&leaf).map_err(|e| {
                    DomainError::invalid("certificate_chain", format!("signer certificate: {e}"))
                })?;
                let fp = hex::encode(sha2::Sha256::digest(&leaf));
                let user: User = crate::store::decode(
                    user_key.as_bytes(),
                    &user.ok_or(ServiceError::Unauthenticated)?,
                )?;
                if !user.signs_with(&fp) {
                    return Err(refused(ChainRefusal {
                        code: "NOT_BOUND".into(),
                        message: format!("this certificate is not bound to '{actor}'"),
                    }));
                }
                let trust = trusts.settings(s, &tenant)?;
                if !trust.usable() {
                    return Err(
                        DomainError::WrongState("the tenant has no trust settings".into()).into(),
                    );
                }
                let validated = chains
                    .validate(
                        &tenant,
                        &trust,
                        &leaf,
                        &chain[1..],
                        now.0,
                        level.map(|l| l.get()),
                    )
                    .map_err(refused)?;
                let alg = crypto::SigAlg::for_key(&leaf_key).map_err(|e| {
                    DomainError::WrongState(format!("certificate refused: WEAK_ALGORITHM: {e}"))
                })?;
                let format = crate::formats::implementation(doc.format).map_err(format_refusal)?;
                let current = doc.current_content().sha256.clone();
                let content = if format.needs_content() {
                    content_bytes(s, &tenant, &current)?
                } else {
                    Vec::new()
                };
                let mut prepared = format
                    .prepare(&crate::formats::PrepareInput {
                        content: &content,
                        content_sha256: content_digest(&doc)?,
                        signing_time: now.0,
                        cert_der: &leaf,
                        cades_policy: trust.signature_policy.as_ref(),
                        // The role the step claims, else the tenant's.
                        pes: &pes.clone().with_role(
                            doc.steps
                                .get(who.step)
                                .and_then(|st| st.claimed_role.as_deref()),
                        ),
                        pades: &pades,
                        reason: step_reason(&doc, who.step, who.on_behalf_of.as_ref()),
                        level: Some(validated.level),
                        pdf: doc.steps.get(who.step).map_or(&NO_PDF_OPTIONS, |s| &s.pdf),
                    })
                    .map_err(|e| match e {
                        crate::formats::FormatError::Invalid(m) => {
                            DomainError::invalid("certificate_chain", m).into()
                        }
                        other => format_refusal(other),
                    })?;
                prepared.base_sha256 = current;
                Ok((doc, who, prepared, format.needs_content(), alg, level))
            })
            .await?
        };
        let prep = Preparation {
            id: prep_id,
            document: doc.id.clone(),
            step: who.step as u32,
            actor: actor.clone(),
            cert: Der(chain[0].clone()),
            chain: chain[1..].iter().cloned().map(Der).collect(),
            signed_attrs: Der(prepared
                .items
                .first()
                .map(|i| i.data.clone())
                .unwrap_or_default()),
            alg: alg.name().to_owned(),
            signing_time: now,
            expires_at: now.plus_seconds(PREPARATION_TTL_SECS),
            used: false,
            on_behalf_of: who.on_behalf_of.clone(),
            step_level: Some(PreparedLevel { required: level }),
            format: doc.format,
            // Kept whole for formats that sign inside the content (they insert at completion).
            prepared: enveloped.then(|| prepared.clone()),
        };
        let items = prepared.items;
        self.mutate(
            format!("{tenant}/{actor}"),
            "PrepareSignature",
            idem,
            move |tx| {
                tx.put(&format!("prep/{tenant}/{}", prep.id), &prep)?;
                Ok((
                    PreparationView {
                        id: prep.id.clone(),
                        document: prep.document.clone(),
                        step: prep.step,
                        signed_attrs: prep.signed_attrs.clone(),
                        alg: prep.alg.clone(),
                        signing_time: prep.signing_time,
                        expires_at: prep.expires_at,
                        format: prep.format,
                        items: items.clone(),
                    },
                    Vec::new(),
                ))
            },
        )
        .await
    }

    pub async fn complete_signature(
        &self,
        caller: &Caller,
        prep_id: String,
        values: Vec<Vec<u8>>,
        idem: Option<Idem>,
    ) -> Result<Completed> {
        caller.require(Role::Officer)?;
        if prep_id.len() != 32 || !prep_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DomainError::invalid(
                "preparation_id",
                "must be 32 hexadecimal characters",
            )
            .into());
        }
        if values.is_empty() || values.iter().any(|v| v.is_empty() || v.len() > 2048) {
            return Err(DomainError::invalid("signature_value", "must be 1 to 2048 bytes").into());
        }
        let signature = values[0].clone();
        let tenant = caller.tenant.clone();
        let actor = caller.name.clone();
        let now = self.clock.now();
        let pkey = format!("prep/{tenant}/{prep_id}");
        // Verify and validate outside the writer lock (CPU work), then commit atomically.
        let prepared = {
            let (tenant, actor, pkey) = (tenant.clone(), actor.clone(), pkey.clone());
            let chains = self.chains.clone();
            let trusts = self.trusts.clone();
            self.blocking(move |s| {
                // Older versions marked a spent preparation with its `used` flag or a
                // `prepused/` record. No version writes those any more, so reading them here,
                // outside the writer, cannot race. Both are read in one round trip.
                let legacy_used = format!("prepused/{tenant}/{prep_id}");
                let mut both = s.get_many_raw(&[pkey.clone(), legacy_used])?.into_iter();
                let (stored, used) = (both.next().flatten(), both.next().flatten());
                let stored = stored
                    .ok_or_else(|| DomainError::NotFound(format!("preparation '{prep_id}'")))?;
                let spent = stored.is_empty() || used.is_some();
                let prep: Option<Preparation> = if spent {
                    None
                } else {
                    Some(crate::store::decode(pkey.as_bytes(), &stored)?)
                };
                // Spent: only a retry of the completion that spent it gets an answer, the
                // first one, from its idempotency record (in the writer).
                let Some(prep) = prep.filter(|p| !p.used) else {
                    return Ok(None);
                };
                if prep.actor != actor {
                    return Err(DomainError::Forbidden(
                        "this preparation belongs to another user".into(),
                    )
                    .into());
                }
                if now > prep.expires_at {
                    return Err(DomainError::WrongState(
                        "the preparation has expired: prepare again".into(),
                    )
                    .into());
                }
                // The format checks every value (a failing one refuses the whole completion) and
                // yields the signed content when it signs inside it.
                let format = crate::formats::implementation(prep.format).map_err(format_refusal)?;
                let single;
                let prepared = match &prep.prepared {
                    Some(p) => p,
                    None => {
                        single =
                            crate::formats::FormatPrepared::single(prep.signed_attrs.0.clone());
                        &single
                    }
                };
                let content = if format.needs_content() {
                    content_bytes(s, &tenant, &prepared.base_sha256)?
                } else {
                    Vec::new()
                };
                let done = format
                    .complete(&content, &prep.cert.0, prepared, &values)
                    .map_err(format_refusal)?;
                let alg = done.alg;
                let revision = done.signed_content.map(Revision::new);
                let trust = trusts.settings(s, &tenant)?;
                let level = match prep.step_level {
                    Some(l) => l.required,
                    None => {
                        let doc: Document = s
                            .get(&format!("doc/{tenant}/{}", prep.document))?
                            .ok_or_else(|| {
                                DomainError::NotFound(format!("document '{}'", prep.document))
                            })?;
                        doc.steps.get(prep.step as usize).and_then(|st| st.level)
                    }
                }
                .map(|l| l.get());
                let extra: Vec<Vec<u8>> = prep.chain.iter().map(|d| d.0.clone()).collect();
                let ok = chains
                    .validate(
                        &tenant,
                        &trust,
                        &prep.cert.0,
                        &extra,
                        prep.signing_time.0,
                        level,
                    )
                    .map_err(refused)?;
                let part = SignerPart {
                    cert_der: prep.cert.0.clone(),
                    signed_attrs_der: prep.signed_attrs.0.clone(),
                    signature: signature.clone(),
                    alg,
                };
                // An enveloped signature lives in its content revision: no CMS. A CMS is kept
                // without the CRLs: they are kept once by hash (see `crls_detached`).
                let cms = if revision.is_some() {
                    Vec::new()
                } else {
                    crypto::assemble(std::slice::from_ref(&part), &ok.chain, &[])
                        .map_err(|e| ServiceError::Internal(e.to_string()))?
                };
                // A format that embeds the CMS (PAdES) yields its revision now.
                let revision = match revision {
                    Some(r) => Some(r),
                    None => format
                        .embed_cms(&content, prepared, &cms)
                        .map_err(format_refusal)?
                        .map(Revision::new),
                };
                let rec = SignatureRecord {
                    index: 0,
                    step: prep.step,
                    signer: actor.clone(),
                    on_behalf_of: None,
                    absence: None,
                    route: None,
                    subject: ok.subject.clone(),
                    cert_sha256: hex::encode(sha2::Sha256::digest(&prep.cert.0)),
                    level: ok.level,
                    signing_time: prep.signing_time,
                    seal: false,
                    cert: prep.cert.clone(),
                    signed_attrs: prep.signed_attrs.clone(),
                    signature: Der(signature),
                    alg: alg.name().to_owned(),
                    chain: ok.chain.into_iter().map(Der).collect(),
                    crls: trust.crls.clone(),
                    chain_refs: Vec::new(),
                    crl_refs: Vec::new(),
                    cms: Der(cms),
                    crls_detached: true,
                };
                Ok(Some((prep, rec, revision)))
            })
            .await?
        };
        let seal = self.seals.get(&tenant).cloned();
        let reread_tenant = tenant.clone();
        // The preparation, the document, its signatures so far, what routing its next step
        // reads.
        let mut reads = Reads::new().key(pkey.clone());
        if let Some((prep, ..)) = &prepared {
            let sigs = sig_prefix(&tenant, &prep.document);
            reads = reads
                .key(format!("doc/{tenant}/{}", prep.document))
                .range(sigs.clone(), sigs);
        }
        let reads = super::delegation::routing_reads(reads, &tenant, now);
        let (answer, signature) = self
            .mutate_with(
                format!("{tenant}/{actor}"),
                "CompleteSignature",
                idem,
                reads,
                move |tx| {
                    // A spent preparation's record is emptied: one record per preparation,
                    // and what it held lives on in the signature record.
                    let spent = || {
                        ServiceError::from(DomainError::WrongState(
                            "the preparation was already used".into(),
                        ))
                    };
                    let (prep, rec, revision) = prepared.ok_or_else(spent)?;
                    if tx.get_raw(&pkey)?.is_none_or(|p| p.is_empty()) {
                        return Err(spent());
                    }
                    tx.put_raw(&pkey, b"")?;
                    let dkey = format!("doc/{tenant}/{}", prep.document);
                    let before: Document = tx.get(&dkey)?.ok_or_else(|| {
                        DomainError::NotFound(format!("document '{}'", prep.document))
                    })?;
                    if before.content.sha256.is_empty() {
                        return Err(ServiceError::Internal(
                            "document without content digest".into(),
                        ));
                    }
                    // Who signs for whom now; a share done or returned meanwhile refuses the value.
                    let (who, _) = before.signable_step(&actor, Some(prep.step))?;
                    if who.on_behalf_of != prep.on_behalf_of {
                        return Err(DomainError::WrongState(format!(
                            "step {} was rerouted since the signature was prepared: prepare again",
                            prep.step
                        ))
                        .into());
                    }
                    let mut rec = rec.clone();
                    rec.on_behalf_of = who.on_behalf_of.clone();
                    rec.absence = who.absence.clone();
                    rec.route = who.route;
                    let stored = put_signature(tx, &tenant, &prep.document, rec)?;
                    let t = before.clone().sign(
                        &who,
                        format!(
                            "signature #{} by {} (level {})",
                            stored.index, stored.subject, stored.level
                        ),
                        stored.index,
                        now,
                    )?;
                    let mut t = t;
                    if let Some(r) = revision {
                        // Signed inside the content: the flow signed is the current one, and
                        // the signed flow becomes the document's latest revision.
                        let base = prep.prepared.as_ref().map(|p| p.base_sha256.as_str());
                        if base != Some(before.current_content().sha256.as_str()) {
                            return Err(DomainError::WrongState(
                                "the content changed since the signature was prepared: prepare again".into(),
                            )
                            .into());
                        }
                        let blob = format!("blob/{tenant}/{}", r.sha256);
                        if !tx.exists(&blob)? {
                            tx.put_raw(&blob, &r.bytes)?;
                        }
                        t.document.revisions.push(crate::domain::ContentRef {
                            sha256: r.sha256,
                            size: r.bytes.len() as u64,
                            file_name: before.content.file_name.clone(),
                        });
                    }
                    let t = super::documents::settle(tx, seal.as_ref(), t, now)?;
                    let notices = record(tx, Some(&before), &t)?;
                    Ok((
                        CompletedAnswer {
                            document: t.document,
                            signature: StoredSignature::Index(stored.index),
                        },
                        stored.without_parts()?,
                        notices,
                    ))
                },
                // A retry answers the signature as first answered, from its record.
                move |tx, first| match &first.signature {
                    StoredSignature::Record(r) => Ok((**r).clone()),
                    StoredSignature::Index(i) => {
                        let r = signature_at(tx, &reread_tenant, &first.document.id, *i)?;
                        r.without_parts()
                    }
                },
            )
            .await?;
        Ok(Completed {
            document: answer.document,
            signature,
        })
    }

    /// A document's signatures, each alone, and all of them as one SignedData, each CMS
    /// without the CRLs it was validated with: they are named by hash in `crl_refs` and read
    /// with [`Paraph::validation_material`] (a CRL of megabytes is not sent with every
    /// signature). The records keep their parts (certificate, attributes, value, chain).
    pub async fn get_signatures(
        &self,
        caller: &Caller,
        id: DocumentId,
    ) -> Result<(Vec<SignatureRecord>, Vec<u8>)> {
        let doc = self.get_document(caller, id.clone()).await?;
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            let recs: Vec<SignatureRecord> = s
                .scan::<SignatureRecord>(&sig_prefix(&tenant, &doc.id), None, usize::MAX)?
                .into_iter()
                .map(|(_, r)| r.with_chain(&tenant, &|k| Ok(s.get_raw(k)?))?.detach_crls())
                .collect::<Result<_>>()?;
            // Enveloped signatures (PES) live in the content, not in a CMS.
            let mut detached: Vec<&SignatureRecord> =
                recs.iter().filter(|r| !r.cms.0.is_empty()).collect();
            // The signers of the whole CMS in the circuit's order.
            detached.sort_by_key(|r| (r.step, r.index));
            if detached.is_empty() {
                return Ok((recs, Vec::new()));
            }
            let parts = detached
                .iter()
                .map(|r| r.part())
                .collect::<Result<Vec<_>>>()?;
            let certs: Vec<Vec<u8>> = detached
                .iter()
                .flat_map(|r| r.chain.iter().map(|d| d.0.clone()))
                .collect();
            let combined = crypto::assemble_in_order(&parts, &certs, &[])
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            Ok((recs, combined))
        })
        .await
    }

    /// A certificate or CRL one of the document's signatures relied on, by the lowercase hex
    /// SHA-256 of its DER (as `crl_refs` names it), for a caller who may read the document.
    pub async fn validation_material(
        &self,
        caller: &Caller,
        id: DocumentId,
        sha256: String,
    ) -> Result<Vec<u8>> {
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DomainError::invalid(
                "sha256",
                "must be 64 lowercase hexadecimal characters",
            )
            .into());
        }
        let doc = self.get_document(caller, id).await?;
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            for (_, r) in
                s.scan::<SignatureRecord>(&sig_prefix(&tenant, &doc.id), None, usize::MAX)?
            {
                if r.chain_refs.contains(&sha256) || r.crl_refs.contains(&sha256) {
                    let der = s.get_raw(&der_key(&tenant, &sha256))?.ok_or_else(|| {
                        ServiceError::Internal(format!("certificate or CRL {sha256} is missing"))
                    })?;
                    if super::sha256_hex(&der) != sha256 {
                        return Err(ServiceError::Internal(format!(
                            "certificate or CRL {sha256} does not match its hash"
                        )));
                    }
                    return Ok(der.to_vec());
                }
                // A record stored before holds its chain and CRLs itself.
                if let Some(d) = r
                    .chain
                    .iter()
                    .chain(&r.crls)
                    .find(|d| super::sha256_hex(&d.0) == sha256)
                {
                    return Ok(d.0.clone());
                }
            }
            Err(DomainError::NotFound(format!(
                "certificate or CRL {sha256} among the signatures of document '{}'",
                doc.id
            ))
            .into())
        })
        .await
    }

    /// Validates a CMS signature over `data` with the caller's tenant trust settings, at `at`
    /// (default now). With `document`, the signatures paraph stored for that document (which
    /// the caller must be allowed to read) are judged at the time the server recorded them.
    pub async fn validate_signature(
        &self,
        caller: &Caller,
        data: Vec<u8>,
        cms: Vec<u8>,
        at: Option<i64>,
        required_level: Option<u8>,
        document: Option<DocumentId>,
    ) -> Result<crate::validation::Report> {
        // What one request may ask is bounded before any cryptographic work.
        let max_bytes = self.limits.max_cms_bytes;
        // Empty: the signatures are inside the data (a PES flow).
        if cms.len() > max_bytes {
            return Err(DomainError::invalid(
                "signature",
                format!("must be at most max_cms_bytes ({max_bytes} bytes)"),
            )
            .into());
        }
        let max_signers = self.limits.max_cms_signers;
        let (cms, count) = self
            .blocking(move |_| {
                let n = crate::validation::signer_count(&cms);
                Ok((cms, n))
            })
            .await?;
        if let Some(n) = count.filter(|n| *n > max_signers) {
            return Err(ServiceError::TooLarge(format!(
                "the signature has {n} SignerInfos, more than max_cms_signers ({max_signers})"
            )));
        }
        let trust = self.load_trust(&caller.tenant).await?;
        let now = at.unwrap_or(self.clock.now().0);
        let proofs = match document {
            Some(id) => self.proofs_of_existence(caller, id).await?,
            None => Vec::new(),
        };
        let pes = self.limits.pes.for_tenant(caller.tenant.as_str());
        // On the validation pool, not the blocking pool store reads use.
        self.heavy
            .run(move || {
                // No detached signature: the signatures are inside the data (a PDF, a PES
                // flow).
                if cms.is_empty() && data.starts_with(b"%PDF-") {
                    return Ok(crate::validation::validate_pades(
                        &trust,
                        &data,
                        now,
                        &proofs,
                        required_level,
                    ));
                }
                if cms.is_empty() {
                    return Ok(crate::validation::validate_xades(
                        &trust,
                        &pes,
                        &data,
                        now,
                        &proofs,
                        required_level,
                    ));
                }
                Ok(crate::validation::validate_cms(
                    &trust,
                    &data,
                    &cms,
                    now,
                    &proofs,
                    required_level,
                ))
            })
            .await
    }

    /// For each signature paraph stored for a document, the time its completion was recorded
    /// (the history event that names it, written by the server with its own clock).
    async fn proofs_of_existence(
        &self,
        caller: &Caller,
        id: DocumentId,
    ) -> Result<Vec<crate::validation::ProofOfExistence>> {
        let doc = self.get_document(caller, id).await?;
        let (recs, _) = self.get_signatures(caller, doc.id.clone()).await?;
        let mut proofs = Vec::new();
        for r in recs {
            let Some(at) = doc
                .history
                .iter()
                .find(|e| e.signature == Some(r.index))
                .map(|e| e.at.0)
            else {
                continue;
            };
            // A PES signature holds one value per bordereau, all in the revision it created
            // (whose digest its event logged): each existed when the event was logged.
            if doc.format == crate::domain::SignatureFormat::XadesPes {
                if let Some(rev) = doc.revisions.get(r.index as usize) {
                    let (tenant, sha) = (caller.tenant.clone(), rev.sha256.clone());
                    let bytes = self
                        .blocking(move |s| content_bytes(s, &tenant, &sha))
                        .await?;
                    for c in crate::formats::xades_pes::check_signatures(&bytes).unwrap_or_default()
                    {
                        proofs.push(crate::validation::ProofOfExistence {
                            signature_value: c.signature_value,
                            at,
                        });
                    }
                }
            }
            proofs.push(crate::validation::ProofOfExistence {
                signature_value: r.signature.0,
                at,
            });
        }
        Ok(proofs)
    }
}

#[cfg(test)]
mod material_tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn record(chain: Vec<Der>, crls: Vec<Der>) -> SignatureRecord {
        SignatureRecord {
            index: 0,
            step: 0,
            signer: UserName::seal(),
            on_behalf_of: None,
            absence: None,
            route: None,
            subject: "CN=x".into(),
            cert_sha256: String::new(),
            level: 3,
            signing_time: Timestamp(0),
            seal: true,
            cert: Der(vec![1]),
            signed_attrs: Der(vec![2]),
            signature: Der(vec![3]),
            alg: "ECDSA_SHA256".into(),
            chain,
            crls,
            chain_refs: Vec::new(),
            crl_refs: Vec::new(),
            cms: Der(vec![4]),
            crls_detached: false,
        }
    }

    #[test]
    fn chains_and_crls_are_read_back_by_hash_and_old_records_keep_theirs() {
        let tenant = TenantId::parse("ville-a").expect("tenant");
        let (leaf, ca, crl) = (Der(vec![10; 40]), Der(vec![11; 40]), Der(vec![12; 40]));
        let mut kept: HashMap<String, Vec<u8>> = HashMap::new();
        for d in [&leaf, &ca, &crl] {
            kept.insert(
                der_key(&tenant, &super::super::sha256_hex(&d.0)),
                d.0.clone(),
            );
        }
        let get = |k: &str| Ok(kept.get(k).map(|v| sled::IVec::from(v.as_slice())));
        // As stored now: references only, in order.
        let mut stored = record(Vec::new(), Vec::new());
        stored.chain_refs = vec![
            super::super::sha256_hex(&leaf.0),
            super::super::sha256_hex(&ca.0),
        ];
        stored.crl_refs = vec![super::super::sha256_hex(&crl.0)];
        let back = stored
            .clone()
            .with_material(&tenant, &get)
            .expect("resolved");
        assert_eq!(back.chain, vec![leaf.clone(), ca.clone()]);
        assert_eq!(back.crls, vec![crl.clone()]);
        assert!(back.chain_refs.is_empty() && back.crl_refs.is_empty());
        // The references survive the stored encoding.
        let json = serde_json::to_vec(&stored).expect("json");
        let reread: SignatureRecord = serde_json::from_slice(&json).expect("decode");
        assert_eq!(reread.chain_refs, stored.chain_refs);
        assert_eq!(reread.crl_refs, stored.crl_refs);
        // An older record holds its chain itself: left as it is, no read needed.
        let old = record(vec![leaf.clone(), ca.clone()], vec![crl.clone()]);
        let none = |_: &str| -> Result<Option<sled::IVec>> { Ok(None) };
        let back = old.with_material(&tenant, &none).expect("old layout");
        assert_eq!(back.chain, vec![leaf, ca]);
        // A missing certificate is an error naming it, never a shorter chain.
        let err = stored
            .clone()
            .with_material(&tenant, &none)
            .expect_err("missing");
        assert!(err.to_string().contains("is missing"), "{err}");
        // A record swapped for other bytes under the same hash is refused.
        let swapped = |k: &str| Ok(kept.get(k).map(|_| sled::IVec::from(&crl.0[..])));
        let err = stored
            .with_material(&tenant, &swapped)
            .expect_err("swapped");
        assert!(err.to_string().contains("does not match its hash"), "{err}");
    }
}

#[cfg(test)]
mod detached_crl_tests {
    use super::*;

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("certs-test")
                .join(name),
        )
        .expect("test PKI file")
    }

    /// A real one-signer CMS of the test PKI, its chain and CRLs.
    fn signed() -> (SignerPart, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let cert = openssl::x509::X509::from_pem(&pem("officer-l2-p256.cert.pem"))
            .and_then(|c| c.to_der())
            .expect("certificate");
        let ca = openssl::x509::X509::from_pem(&pem("signing-ca.cert.pem"))
            .and_then(|c| c.to_der())
            .expect("CA");
        let key = openssl::pkey::PKey::private_key_from_pem(&pem("officer-l2-p256.key.pem"))
            .expect("key");
        let attrs = cades::build_signed_attributes(&[7; 32], 1_767_225_600, &cert, None)
            .expect("attributes");
        let signature = crypto::sign_with_key(&key, &attrs).expect("sign");
        let alg = crypto::verify_signature_value(&cert, &attrs, &signature).expect("verify");
        let crls = crypto::certs::crls_from(&pem("crls.pem"))
            .expect("CRLs")
            .iter()
            .map(|c| c.to_der().expect("DER"))
            .collect();
        let part = SignerPart {
            cert_der: cert.clone(),
            signed_attrs_der: attrs,
            signature,
            alg,
        };
        (part, vec![cert, ca], crls)
    }

    #[test]
    fn old_records_with_crls_inside_their_cms_answer_like_new_ones_and_keep_their_digest() {
        let (part, chain, crls) = signed();
        let whole = crypto::assemble(std::slice::from_ref(&part), &chain, &crls).expect("whole");
        let bare = crypto::assemble(std::slice::from_ref(&part), &chain, &[]).expect("bare");
        let der = |v: &[Vec<u8>]| v.iter().cloned().map(Der).collect::<Vec<_>>();
        let hashes: Vec<String> = crls.iter().map(|c| super::super::sha256_hex(c)).collect();
        // As older versions stored it: the CRLs inline and inside the CMS.
        let mut old = material_tests::record(der(&chain), der(&crls));
        old.cms = Der(whole.clone());
        // As this version stores it: the CMS without them, the CRLs read back by hash.
        let mut new = material_tests::record(der(&chain), der(&crls));
        new.cms = Der(bare.clone());
        new.crls_detached = true;
        // Both stand for the same CMS, the one the audit log recorded.
        assert_eq!(old.whole_cms().expect("old"), whole);
        assert_eq!(new.whole_cms().expect("new"), whole);
        // Both answer the CMS without CRLs and name the CRLs by hash.
        for r in [old, new] {
            let a = r.without_parts().expect("answer");
            assert_eq!(a.cms.0, bare);
            assert_eq!(a.crl_refs, hashes);
            assert!(a.crls.is_empty() && a.chain.is_empty());
        }
        // An old record whose CRLs are by reference (the layout just before) answers the same.
        let mut refs = material_tests::record(Vec::new(), Vec::new());
        refs.cms = Der(whole);
        refs.crl_refs = hashes.clone();
        let a = refs.detach_crls().expect("answer");
        assert_eq!((a.cms.0, a.crl_refs), (bare, hashes));
    }
}

#[cfg(test)]
mod completed_answer_tests {
    use super::*;

    #[test]
    fn completion_answers_hold_the_signature_by_index_and_older_ones_whole() {
        let rec = material_tests::record(Vec::new(), Vec::new())
            .without_parts()
            .expect("answer");
        let by_index = serde_json::to_string(&StoredSignature::Index(3)).expect("encode");
        assert_eq!(by_index, "3");
        assert!(matches!(
            serde_json::from_str::<StoredSignature>(&by_index),
            Ok(StoredSignature::Index(3))
        ));
        // What older versions stored: the whole record.
        let older = serde_json::to_string(&rec).expect("encode");
        match serde_json::from_str::<StoredSignature>(&older) {
            Ok(StoredSignature::Record(r)) => assert_eq!(r.cms.0, rec.cms.0),
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<StoredSignature>("\"x\"").is_err());
    }
}

#[cfg(test)]
mod cms_digest_tests {
    use super::*;

    #[test]
    fn the_cms_digest_comes_from_the_transaction_else_an_old_record_else_the_signature() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = crate::store::Store::open(dir.path()).expect("open");
        let t = TenantId::parse("ville-a").expect("tenant");
        let d = DocumentId::parse(&"d1".repeat(16)).expect("document");
        let rec = material_tests::record(vec![Der(vec![10; 40])], Vec::new());
        let want = super::super::sha256_hex(&rec.cms.0);
        let (t2, d2) = (t.clone(), d.clone());
        store
            .transact_blocking(move |tx| {
                assert_eq!(signature_count(tx, &t2, &d2)?, 0);
                let stored = put_signature(tx, &t2, &d2, rec.clone())?;
                assert_eq!(stored.index, 0);
                let stored = put_signature(tx, &t2, &d2, rec)?;
                assert_eq!(stored.index, 1, "numbered after the last record");
                // The caller keeps the chain; the record holds it by reference.
                assert_eq!(stored.chain.len(), 1);
                assert!(stored.chain_refs.is_empty());
                let kept = signature_at(tx, &t2, &d2, 1)?;
                assert!(kept.chain.is_empty());
                assert_eq!(kept.chain_refs, vec![super::super::sha256_hex(&[10; 40])]);
                // Handed over inside the transaction, and not stored.
                assert_eq!(cms_sha256(tx, &t2, &d2, 0)?, want);
                assert!(tx.get_raw(&sig_hash_key(&t2, &d2, 0))?.is_none());
                // As older versions stored it.
                tx.put_raw(&sig_hash_key(&t2, &d2, 7), b"older")?;
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
        let (t3, d3) = (t.clone(), d.clone());
        let want = super::super::sha256_hex(&[4]);
        store
            .transact_blocking(move |tx| {
                // A later transaction recomputes it from the record.
                assert_eq!(cms_sha256(tx, &t3, &d3, 0)?, want);
                assert_eq!(cms_sha256(tx, &t3, &d3, 7)?, "older");
                assert_eq!(signature_count(tx, &t3, &d3)?, 2);
                // Past 9999 the four-digit keys sort out of order: the count steps over them.
                let many = DocumentId::parse(&"e2".repeat(16)).expect("document");
                tx.put_raw(&sig_key(&t3, &many, 9999), b"{}")?;
                tx.put_raw(&sig_key(&t3, &many, 10_000), b"{}")?;
                assert_eq!(signature_count(tx, &t3, &many)?, 10_001);
                // A key that is not an index is an error, not a count.
                let odd = DocumentId::parse(&"f3".repeat(16)).expect("document");
                tx.put_raw(&format!("{}abcd", sig_prefix(&t3, &odd)), b"{}")?;
                let err = signature_count(tx, &t3, &odd).expect_err("a corrupt key");
                assert!(err.to_string().contains("corrupt signature key"), "{err}");
                let missing = cms_sha256(tx, &t3, &d3, 2).expect_err("no signature #2");
                assert!(missing.to_string().contains("signature #2"), "{missing}");
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
    }
}
