//! Certificate path validation of a signer against trust settings, RGS profile with
//! revocation: the adapter from [`TrustSettings`] to [`crate::pki`].

use super::trust::TrustSettings;

/// A certificate chain that passed validation.
#[derive(Debug, Clone)]
pub struct ChainOk {
    pub level: u8,
    pub subject: String,
    pub policy_oid: Option<String>,
    /// Signer first, up to the anchor.
    pub chain: Vec<Vec<u8>>,
}

/// Why a certificate is refused: an ETSI-style code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRefusal {
    pub code: String,
    pub message: String,
}

/// Validates `leaf` (with `extra` untrusted certificates) against the tenant's trust at `at`,
/// with the RGS profile and revocation checking.
pub fn validate_chain(
    trust: &TrustSettings,
    leaf: &[u8],
    extra: &[Vec<u8>],
    extra_crls: &[Vec<u8>],
    at: i64,
    required_level: Option<u8>,
) -> std::result::Result<ChainOk, ChainRefusal> {
    use crate::pki;
    let refuse = |code: &str, message: String| ChainRefusal {
        code: code.into(),
        message,
    };
    let leaf = openssl::x509::X509::from_der(leaf)
        .map_err(|e| refuse("FORMAT_FAILURE", format!("signer certificate: {e}")))?;
    let certs = |ders: &mut dyn Iterator<Item = &[u8]>, what: &str| {
        ders.map(|d| {
            openssl::x509::X509::from_der(d)
                .map_err(|e| refuse("FORMAT_FAILURE", format!("{what}: {e}")))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
    };
    let mut opts = pki::VerifyOptions::new(at, pki::Profile::Rgs);
    opts.trust_anchors = certs(
        &mut trust.anchors.iter().map(|d| d.0.as_slice()),
        "trust anchor",
    )?;
    opts.untrusted = certs(
        &mut trust
            .intermediates
            .iter()
            .map(|d| d.0.as_slice())
            .chain(extra.iter().map(Vec::as_slice)),
        "intermediate certificate",
    )?;
    opts.crls = trust
        .crls
        .iter()
        .map(|d| d.0.as_slice())
        .chain(extra_crls.iter().map(Vec::as_slice))
        .map(|d| pki::Crl::from_der(d).map_err(|e| refuse("FORMAT_FAILURE", format!("CRL: {e}"))))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    opts.policy_levels = trust.policy_levels.clone();
    opts.required_level = required_level;
    match pki::verify(&leaf, &opts) {
        Ok(v) => Ok(ChainOk {
            level: v.level().unwrap_or(0),
            subject: v.subject().to_owned(),
            policy_oid: v.policy().map(str::to_owned),
            chain: v
                .chain()
                .iter()
                .map(|c| {
                    c.to_der()
                        .map_err(|e| refuse("FORMAT_FAILURE", e.to_string()))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        }),
        Err(r) => Err(refuse(r.code(), r.to_string())),
    }
}
