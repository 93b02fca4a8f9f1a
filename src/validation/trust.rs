//! The trust material a validation runs against: anchors, intermediates, CRLs, the policy OID
//! -> RGS level allowlist and the signature policy, as a tenant stores them (or as the command
//! line gives them offline). Data only: reading and writing them is the service's business.

use crate::crypto::SignaturePolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// DER bytes, stored as `b64:` and standard base64 (records written before base64 hold plain
/// hex, still read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Der(#[serde(with = "der_text")] pub Vec<u8>);

mod der_text {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(4 + b.len().div_ceil(3) * 4);
        text.push_str("b64:");
        B64.encode_string(b, &mut text);
        s.serialize_str(&text)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match s.strip_prefix("b64:") {
            Some(b) => B64.decode(b).map_err(serde::de::Error::custom),
            None => hex::decode(s.as_bytes()).map_err(serde::de::Error::custom),
        }
    }
}

/// A tenant's trust settings, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustSettings {
    pub anchors: Vec<Der>,
    pub intermediates: Vec<Der>,
    pub crls: Vec<Der>,
    pub policy_levels: BTreeMap<String, u8>,
    pub signature_policy: Option<SignaturePolicy>,
    /// Bumped at every change: validation caches key on it.
    pub generation: u64,
    /// Whose trust this is (the tenant; empty offline). Not stored: set when the settings are
    /// read, so that passes remembered for one tenant never answer another's validations
    /// (whose timing would tell it what the first one validated).
    #[serde(skip)]
    pub owner: String,
}

impl TrustSettings {
    /// Whether certificate signatures can be validated at all.
    pub fn usable(&self) -> bool {
        !self.anchors.is_empty() && !self.policy_levels.is_empty()
    }

    /// These settings as `owner`'s.
    pub fn owned_by(mut self, owner: &str) -> TrustSettings {
        owner.clone_into(&mut self.owner);
        self
    }
}

/// Checks that every CRL (DER) is signed by one of the certificates (DER) of the same name:
/// a CRL no configured CA verifies would make every later validation fail with `CRL_INVALID`,
/// so it is refused when the trust settings are set. The error names the CRL by its position
/// and issuer.
pub fn check_crls_signed(certs: &[Der], crls: &[Der]) -> Result<(), (usize, String)> {
    let cas: Vec<openssl::x509::X509> = certs
        .iter()
        .filter_map(|c| openssl::x509::X509::from_der(&c.0).ok())
        .collect();
    for (i, d) in crls.iter().enumerate() {
        let crl = crate::pki::Crl::from_der(&d.0).map_err(|e| (i, e.to_string()))?;
        if !cas.iter().any(|ca| super::chain::signs_crl(ca, &crl)) {
            let issuer = x509_parser::parse_x509_crl(&d.0)
                .map(|(_, c)| c.issuer().to_string())
                .unwrap_or_default();
            return Err((
                i,
                format!(
                    "the CRL issued by [{issuer}] is not signed by any configured anchor or \
                     intermediate (add its issuer, or give the CRL its issuer signed)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod der_tests {
    use super::Der;

    #[test]
    fn der_is_written_as_base64_and_read_from_base64_or_legacy_hex() {
        let der = Der(vec![0x30, 0x03, 0x02, 0x01, 0xff]);
        let text = serde_json::to_string(&der).expect("encode");
        assert_eq!(text, "\"b64:MAMCAf8=\"");
        assert_eq!(serde_json::from_str::<Der>(&text).expect("decode"), der);
        assert_eq!(
            serde_json::from_str::<Der>("\"30030201ff\"").expect("legacy hex"),
            der
        );
        assert!(serde_json::from_str::<Der>("\"b64:***\"").is_err());
        assert!(serde_json::from_str::<Der>("\"3003zz\"").is_err());
    }
}
