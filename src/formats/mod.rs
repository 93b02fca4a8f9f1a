//! Signature formats behind one interface: a format turns a document into the items its
//! signer signs (prepare), then checks the values and produces the signed artifact (complete).
//!
//! `cades` signs the CAdES signed attributes of a detached CMS (the CMS itself is assembled by
//! the service with the validated chain); `xades_pes` signs each bordereau of a PES V2 flow
//! with an enveloped XAdES-EPES signature and yields the signed flow. Pure: no I/O.

pub mod c14n;
pub mod pades;
pub mod xades_pes;

use crate::crypto::{self, cades, SigAlg};
use crate::domain::SignatureFormat;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The document or a value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Signing is refused under the current settings.
    #[error("{0}")]
    Refused(String),
    /// A value does not verify.
    #[error("signature refused: SIG_CRYPTO_FAILURE: {0}")]
    BadValue(String),
    #[error("{0}")]
    Internal(String),
}

/// What a preparation needs.
pub struct PrepareInput<'a> {
    /// The content (only read by formats that sign inside it).
    pub content: &'a [u8],
    pub content_sha256: [u8; 32],
    pub signing_time: i64,
    pub cert_der: &'a [u8],
    pub cades_policy: Option<&'a cades::SignaturePolicy>,
    pub pes: &'a xades_pes::PesSettings,
    pub pades: &'a pades::PadesSettings,
    /// Why the step signs ("Visa", "Signature", "Cachet", with "pour le compte de X" when
    /// delegated): PAdES writes it as `/Reason`.
    pub reason: String,
    /// The RGS level of the validated certificate (shown in a PAdES stamp), when known.
    pub level: Option<u8>,
    /// How the step's signature shows in a PDF (stamp place, invisible, certification).
    pub pdf: &'a crate::domain::PdfOptions,
}

/// One thing the signer signs (SHA-256 then the key's algorithm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToBeSigned {
    /// What it is: the bordereau `Id` for PES, empty for CAdES.
    pub label: String,
    /// The exact bytes to sign.
    pub data: Vec<u8>,
    /// Base64 SHA-256 of the exclusive canonical form of the signed element (PES), which the
    /// client checks against the file it downloaded; empty for CAdES.
    pub reference_digest: String,
}

/// A preparation as a format keeps it until completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FormatPrepared {
    pub items: Vec<ToBeSigned>,
    /// PES: the signature elements to insert.
    #[serde(default)]
    pub pes: Vec<xades_pes::Prepared>,
    /// Lowercase hex SHA-256 of the content revision prepared (enveloped formats).
    #[serde(default)]
    pub base_sha256: String,
    /// PAdES: the incremental update waiting for its CMS.
    #[serde(default)]
    pub pades: Option<pades::Prepared>,
}

impl FormatPrepared {
    /// One item (a CAdES preparation as older versions kept it).
    pub fn single(data: Vec<u8>) -> FormatPrepared {
        FormatPrepared {
            items: vec![ToBeSigned {
                label: String::new(),
                data,
                reference_digest: String::new(),
            }],
            ..Default::default()
        }
    }
}

/// What a completion yields.
#[derive(Debug)]
pub struct Completion {
    pub alg: SigAlg,
    /// The new content revision (enveloped formats); `None` for detached signatures.
    pub signed_content: Option<Vec<u8>>,
}

/// A signature format.
pub trait Format: Send + Sync {
    fn format(&self) -> SignatureFormat;
    /// Whether `prepare`/`complete` read the content itself (not only its digest).
    fn needs_content(&self) -> bool;
    fn prepare(&self, input: &PrepareInput<'_>) -> Result<FormatPrepared, FormatError>;
    /// Verifies every value over its item with the certificate and produces the artifact; a
    /// value that fails refuses the whole completion.
    fn complete(
        &self,
        content: &[u8],
        cert_der: &[u8],
        prepared: &FormatPrepared,
        values: &[Vec<u8>],
    ) -> Result<Completion, FormatError>;
    /// Whether the CMS the service assembles goes inside the content (PAdES).
    fn embeds_cms(&self) -> bool {
        false
    }
    /// The new content revision with the assembled `cms` inside (formats that embed it).
    fn embed_cms(
        &self,
        _content: &[u8],
        _prepared: &FormatPrepared,
        _cms: &[u8],
    ) -> Result<Option<Vec<u8>>, FormatError> {
        Ok(None)
    }
}

/// The implementation of a (resolved) format.
pub fn implementation(f: SignatureFormat) -> Result<&'static dyn Format, FormatError> {
    match f {
        SignatureFormat::Cades | SignatureFormat::Auto => Ok(&Cades),
        SignatureFormat::XadesPes => Ok(&XadesPes),
        SignatureFormat::Pades => Ok(&Pades),
    }
}

/// What `auto` means for `content`: PAdES for a PDF (`%PDF-`), XAdES-PES for XML whose root
/// is `PES_Aller`, CAdES otherwise.
pub fn resolve(requested: SignatureFormat, content: &[u8]) -> SignatureFormat {
    match requested {
        SignatureFormat::Auto => {
            if content.starts_with(b"%PDF-") {
                SignatureFormat::Pades
            } else if xades_pes::root_name(content).as_deref() == Some("PES_Aller") {
                SignatureFormat::XadesPes
            } else {
                SignatureFormat::Cades
            }
        }
        other => other,
    }
}

fn verify_all(
    cert_der: &[u8],
    prepared: &FormatPrepared,
    values: &[Vec<u8>],
) -> Result<SigAlg, FormatError> {
    if values.len() != prepared.items.len() {
        return Err(FormatError::Invalid(format!(
            "{} signature values for {} items to sign",
            values.len(),
            prepared.items.len()
        )));
    }
    let mut alg = None;
    for (item, v) in prepared.items.iter().zip(values) {
        let a = crypto::verify_signature_value(cert_der, &item.data, v).map_err(|_| {
            FormatError::BadValue(if item.label.is_empty() {
                "the value does not verify over the prepared attributes with the certificate".into()
            } else {
                format!(
                    "the value for '{}' does not verify over its SignedInfo with the certificate",
                    item.label
                )
            })
        })?;
        alg = Some(a);
    }
    alg.ok_or_else(|| FormatError::Invalid("nothing to sign".into()))
}

/// Detached CAdES: one item, the signed attributes.
pub struct Cades;

impl Format for Cades {
    fn format(&self) -> SignatureFormat {
        SignatureFormat::Cades
    }
    fn needs_content(&self) -> bool {
        false
    }
    fn prepare(&self, input: &PrepareInput<'_>) -> Result<FormatPrepared, FormatError> {
        let attrs = cades::build_signed_attributes(
            &input.content_sha256,
            input.signing_time,
            input.cert_der,
            input.cades_policy,
        )
        .map_err(|e| FormatError::Invalid(e.to_string()))?;
        Ok(FormatPrepared {
            items: vec![ToBeSigned {
                label: String::new(),
                data: attrs,
                reference_digest: String::new(),
            }],
            ..Default::default()
        })
    }
    fn complete(
        &self,
        _content: &[u8],
        cert_der: &[u8],
        prepared: &FormatPrepared,
        values: &[Vec<u8>],
    ) -> Result<Completion, FormatError> {
        Ok(Completion {
            alg: verify_all(cert_der, prepared, values)?,
            signed_content: None,
        })
    }
}

/// Enveloped XAdES-EPES on each bordereau of a PES V2 flow.
pub struct XadesPes;

impl Format for XadesPes {
    fn format(&self) -> SignatureFormat {
        SignatureFormat::XadesPes
    }
    fn needs_content(&self) -> bool {
        true
    }
    fn prepare(&self, input: &PrepareInput<'_>) -> Result<FormatPrepared, FormatError> {
        let cert = xades_pes::SignerCert::from_der(input.cert_der)?;
        let time = crate::pki::time::format_rfc3339(input.signing_time);
        let pes = xades_pes::prepare(input.content, &cert, &time, input.pes)?;
        Ok(FormatPrepared {
            items: pes
                .iter()
                .map(|p| ToBeSigned {
                    label: p.id.clone(),
                    data: p.signed_info.clone(),
                    reference_digest: p.digest_b64.clone(),
                })
                .collect(),
            pes,
            base_sha256: String::new(),
            pades: None,
        })
    }
    fn complete(
        &self,
        content: &[u8],
        cert_der: &[u8],
        prepared: &FormatPrepared,
        values: &[Vec<u8>],
    ) -> Result<Completion, FormatError> {
        let alg = verify_all(cert_der, prepared, values)?;
        let cert = xades_pes::SignerCert::from_der(cert_der)?;
        let raw = values
            .iter()
            .map(|v| xades_pes::xmldsig_value(&cert, v))
            .collect::<Result<Vec<_>, _>>()?;
        let signed = xades_pes::insert(content, &prepared.pes, &raw)?;
        Ok(Completion {
            alg,
            signed_content: Some(signed),
        })
    }
}

/// PAdES baseline B-B: one item, the PAdES signed attributes over the `/ByteRange` of an
/// incremental update; the CMS goes into its `/Contents`.
pub struct Pades;

impl Format for Pades {
    fn format(&self) -> SignatureFormat {
        SignatureFormat::Pades
    }
    fn needs_content(&self) -> bool {
        true
    }
    fn prepare(&self, input: &PrepareInput<'_>) -> Result<FormatPrepared, FormatError> {
        let claims = pades::SignatureClaims {
            reason: input.reason.clone(),
            location: input.pades.location.clone(),
            level: input.level,
            time: input.signing_time,
            pdf: input.pdf.clone(),
        };
        let base = hex::encode(sha2::Sha256::digest(input.content));
        let (prepared, digest) =
            pades::prepare(input.content, input.cert_der, &claims, input.pades)?;
        let attrs =
            cades::build_pades_signed_attributes(&digest, input.cert_der, input.cades_policy)
                .map_err(|e| FormatError::Invalid(e.to_string()))?;
        Ok(FormatPrepared {
            items: vec![ToBeSigned {
                label: prepared.field.clone(),
                data: attrs,
                reference_digest: base.clone(),
            }],
            pes: Vec::new(),
            base_sha256: base,
            pades: Some(prepared),
        })
    }
    fn complete(
        &self,
        _content: &[u8],
        cert_der: &[u8],
        prepared: &FormatPrepared,
        values: &[Vec<u8>],
    ) -> Result<Completion, FormatError> {
        Ok(Completion {
            alg: verify_all(cert_der, prepared, values)?,
            signed_content: None,
        })
    }
    fn embeds_cms(&self) -> bool {
        true
    }
    fn embed_cms(
        &self,
        content: &[u8],
        prepared: &FormatPrepared,
        cms: &[u8],
    ) -> Result<Option<Vec<u8>>, FormatError> {
        let p = prepared.pades.as_ref().ok_or_else(|| {
            FormatError::Internal("a PAdES preparation without its update".into())
        })?;
        pades::embed(content, p, cms).map(Some)
    }
}
