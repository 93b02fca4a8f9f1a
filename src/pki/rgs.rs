//! paraph's own checks, on the path OpenSSL built: what OpenSSL does not check (RGS algorithms,
//! leaf nonRepudiation, CA cRLSign, the policy OID -> level allowlist). All of them fail closed:
//! anything that cannot be read is a refusal.

use std::collections::BTreeMap;

use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::x509::X509Ref;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::AlgorithmIdentifier;

use super::refusal::{CertPos, Refusal};

const SHA1: &str = "1.3.14.3.2.26";
/// SHA-256, SHA-384, SHA-512, SHA3-256, SHA3-384, SHA3-512.
const STRONG_HASHES: &[&str] = &[
    "2.16.840.1.101.3.4.2.1",
    "2.16.840.1.101.3.4.2.2",
    "2.16.840.1.101.3.4.2.3",
    "2.16.840.1.101.3.4.2.8",
    "2.16.840.1.101.3.4.2.9",
    "2.16.840.1.101.3.4.2.10",
];
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const ANY_POLICY: &str = "2.5.29.32.0";

/// Verdict on a signature algorithm identifier: `Ok(())` if the RGS allows it.
fn check_signature_algorithm(alg: &AlgorithmIdentifier<'_>) -> Result<(), String> {
    let oid = alg.algorithm.to_id_string();
    let named = |name: &str| format!("{name} ({oid})");
    match oid.as_str() {
        // sha{256,384,512}WithRSAEncryption, ecdsa-with-SHA{256,384,512}
        "1.2.840.113549.1.1.11"
        | "1.2.840.113549.1.1.12"
        | "1.2.840.113549.1.1.13"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10045.4.3.3"
        | "1.2.840.10045.4.3.4" => Ok(()),
        "1.2.840.113549.1.1.5" => Err(format!(
            "signed with {}: SHA-1 is refused in certificate chains",
            named("sha1WithRSAEncryption")
        )),
        "1.2.840.10045.4.1" => Err(format!(
            "signed with {}: SHA-1 is refused in certificate chains",
            named("ecdsa-with-SHA1")
        )),
        "1.3.14.3.2.29" => Err(format!(
            "signed with {}: SHA-1 is refused in certificate chains",
            named("sha1WithRSASignature")
        )),
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.2" | "1.2.840.113549.1.1.3" => Err(format!(
            "signed with {}: MD2/MD4/MD5 are refused",
            named("an MD-family RSA signature")
        )),
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" => Err(format!(
            "signed with {}: SHA-224 is below the 256-bit hash minimum",
            named("a SHA-224 signature")
        )),
        RSASSA_PSS => {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| "RSASSA-PSS without parameters".to_string())?;
            let params = x509_parser::signature_algorithm::RsaSsaPssParams::try_from(params)
                .map_err(|e| format!("unreadable RSASSA-PSS parameters: {e}"))?;
            let hash = params.hash_algorithm_oid().to_id_string();
            if hash == SHA1 {
                return Err(
                    "signed with RSASSA-PSS using SHA-1 (the PSS default): SHA-1 is refused in \
                     certificate chains"
                        .into(),
                );
            }
            if !STRONG_HASHES.contains(&hash.as_str()) {
                return Err(format!(
                    "signed with RSASSA-PSS using hash {hash}, not SHA-256 or stronger"
                ));
            }
            Ok(())
        }
        _ => Err(format!(
            "signature algorithm {oid} is not allowed (RGS: RSA PKCS#1 v1.5 or RSASSA-PSS, or \
             ECDSA, with SHA-256 or stronger)"
        )),
    }
}

/// The public key must be RSA >= 2048 bits or ECDSA on P-256/P-384/P-521.
fn check_key(cert: &X509Ref) -> Result<(), String> {
    let key = cert
        .public_key()
        .map_err(|e| format!("unreadable public key: {}", super::ossl_reason(&e)))?;
    match key.id() {
        Id::RSA | Id::RSA_PSS => {
            let bits = key.bits();
            if bits < 2048 {
                Err(format!(
                    "RSA key of {bits} bits: the RGS requires a modulus of at least 2048 bits"
                ))
            } else {
                Ok(())
            }
        }
        Id::EC => {
            let ec = key
                .ec_key()
                .map_err(|e| format!("unreadable EC key: {}", super::ossl_reason(&e)))?;
            match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) | Some(Nid::SECP384R1) | Some(Nid::SECP521R1) => Ok(()),
                Some(nid) => Err(format!(
                    "ECDSA key on curve {}: only P-256, P-384 and P-521 are allowed",
                    nid.short_name().unwrap_or("(unknown)")
                )),
                None => Err(
                    "ECDSA key with explicit curve parameters: only the named curves P-256, \
                     P-384 and P-521 are allowed"
                        .into(),
                ),
            }
        }
        other => Err(format!(
            "public key type {other:?} is not allowed (RGS: RSA >= 2048 or ECDSA P-256/384/521)"
        )),
    }
}

/// Dotted OIDs of the certificatePolicies of a certificate (empty if it has none).
pub(crate) fn policies(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => Some(p),
            _ => None,
        })
        .flatten()
        .map(|p| {
            // Our own decoder: arcs under 2 above 47 (2.999.7.1) are mis-decoded elsewhere.
            crate::crypto::der_util::decode_oid(p.policy_id.as_bytes()).unwrap_or_else(|| {
                format!("<malformed OID {}>", hex::encode(p.policy_id.as_bytes()))
            })
        })
        .collect()
}

/// The RGS level of a path: the highest level among the allowlisted policies that survived
/// RFC 5280 section 6.1 policy processing (`valid_policies`, the valid policy tree's set), with
/// that policy. What the leaf merely asserts counts for nothing: a CA that allows only the `*`
/// policy caps every leaf below it at `*`, whatever the leaf claims. Without a policy tree
/// there is no level (fail closed).
pub(crate) fn leaf_level(
    leaf: &X509Certificate<'_>,
    valid_policies: Option<&[String]>,
    levels: &BTreeMap<String, u8>,
) -> Option<(u8, String)> {
    let valid = valid_policies?;
    policies(leaf)
        .into_iter()
        .filter(|oid| valid.contains(oid))
        .filter_map(|oid| levels.get(&oid).map(|l| (*l, oid)))
        .max_by_key(|(l, _)| *l)
}

/// Refusal for a leaf without an allowlisted policy.
pub(crate) fn no_policy(
    leaf: &X509Certificate<'_>,
    valid_policies: Option<&[String]>,
    levels: &BTreeMap<String, u8>,
) -> Refusal {
    let has = policies(leaf);
    let allowlisted = has.iter().any(|p| levels.contains_key(p));
    let has = if has.is_empty() {
        "none".to_string()
    } else {
        has.join(", ")
    };
    let detail = if levels.is_empty() {
        format!("no policy OID -> RGS level allowlist is configured (leaf policies: {has})")
    } else if allowlisted {
        let valid = valid_policies
            .map(|v| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            })
            .unwrap_or_else(|| "no policy tree".into());
        format!(
            "the leaf asserts [{has}] but the path's CAs do not allow it: the policies valid \
             for the whole path are [{valid}]"
        )
    } else if has == ANY_POLICY {
        "the leaf asserts only anyPolicy; the RGS level comes from an explicit leaf policy"
            .to_string()
    } else {
        format!(
            "leaf policies [{has}] are not in the allowlist [{}]",
            levels.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    Refusal::NoPolicy { detail }
}

/// Algorithm checks on one certificate of the path.
pub(crate) fn check_algorithms(
    pos: &CertPos,
    parsed: &X509Certificate<'_>,
    cert: &X509Ref,
    out: &mut Vec<Refusal>,
) {
    if let Err(detail) = check_signature_algorithm(&parsed.signature_algorithm) {
        out.push(Refusal::WeakAlgorithm {
            cert: pos.clone(),
            detail,
        });
    }
    if let Err(detail) = check_key(cert) {
        out.push(Refusal::WeakAlgorithm {
            cert: pos.clone(),
            detail,
        });
    }
}

/// Algorithm check on a CRL issued by the CA at `pos`.
pub(crate) fn check_crl_algorithm(
    pos: &CertPos,
    crl: &CertificateRevocationList<'_>,
    out: &mut Vec<Refusal>,
) {
    if let Err(detail) = check_signature_algorithm(&crl.signature_algorithm) {
        out.push(Refusal::WeakAlgorithm {
            cert: pos.clone(),
            detail: format!("its CRL is {detail}"),
        });
    }
}

/// RGS leaf profile: X.509 v3; keyUsage present, critical, with nonRepudiation.
pub(crate) fn check_leaf(pos: &CertPos, leaf: &X509Certificate<'_>, out: &mut Vec<Refusal>) {
    if leaf.version() != x509_parser::x509::X509Version::V3 {
        out.push(Refusal::Malformed {
            cert: pos.clone(),
            detail: "the RGS requires an X.509 v3 certificate".into(),
        });
    }
    let detail = match leaf.key_usage() {
        Err(e) => Some(format!("unreadable keyUsage extension: {e}")),
        Ok(None) => Some("no keyUsage extension (nonRepudiation is required)".into()),
        Ok(Some(ku)) if !ku.value.non_repudiation() => Some(
            "keyUsage lacks nonRepudiation (contentCommitment), required for signatures".into(),
        ),
        Ok(Some(ku)) if !ku.critical => Some("keyUsage is not marked critical".into()),
        Ok(Some(_)) => None,
    };
    if let Some(detail) = detail {
        out.push(Refusal::KeyUsage {
            cert: pos.clone(),
            detail,
        });
    }
}

/// RGS CA profile: critical basicConstraints cA, keyUsage with keyCertSign and cRLSign.
pub(crate) fn check_ca(pos: &CertPos, ca: &X509Certificate<'_>, out: &mut Vec<Refusal>) {
    match ca.basic_constraints() {
        Err(e) => out.push(Refusal::Malformed {
            cert: pos.clone(),
            detail: format!("unreadable basicConstraints: {e}"),
        }),
        Ok(Some(bc)) if bc.value.ca && bc.critical => {}
        Ok(Some(bc)) if bc.value.ca => out.push(Refusal::CaNotCa {
            cert: pos.clone(),
            detail: "basicConstraints is not marked critical".into(),
        }),
        Ok(_) => out.push(Refusal::CaNotCa {
            cert: pos.clone(),
            detail: "basicConstraints cA is not set".into(),
        }),
    }
    let missing = match ca.key_usage() {
        Err(e) => vec![format!("unreadable keyUsage: {e}")],
        Ok(None) => vec!["no keyUsage extension (keyCertSign and cRLSign required)".into()],
        Ok(Some(ku)) => {
            let mut m = Vec::new();
            if !ku.value.key_cert_sign() {
                m.push("keyUsage lacks keyCertSign".to_string());
            }
            if !ku.value.crl_sign() {
                m.push("keyUsage lacks cRLSign".to_string());
            }
            m
        }
    };
    if !missing.is_empty() {
        out.push(Refusal::CaKeyUsage {
            cert: pos.clone(),
            detail: missing.join("; "),
        });
    }
}
