//! CAdES baseline B-B detached signatures (ETSI EN 319 122-1) over CMS SignedData (RFC 5652).
//!
//! Two-phase signing: [`build_signed_attributes`] produces the DER of the signed attributes
//! (content-type id-data, signing-time, message-digest, signing-certificate-v2 and optionally a
//! signature-policy-identifier); the signer signs exactly those bytes with his own key; then
//! [`verify_signature_value`] checks the value and [`assemble`] builds the SignedData.

use super::der_util::{oid, seq, tlv};
use super::{malformed, CryptoError};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tagged};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

pub const ID_DATA: &str = "1.2.840.113549.1.7.1";
pub const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
pub const ID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
pub const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
pub const ID_SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
pub const ID_SIGNING_CERT_V2: &str = "1.2.840.113549.1.9.16.2.47";
pub const ID_SIG_POLICY: &str = "1.2.840.113549.1.9.16.2.15";
pub const ID_SPQ_URI: &str = "1.2.840.113549.1.9.16.5.1";
pub const ID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub const ID_SHA1: &str = "1.3.14.3.2.26";
pub const ID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
pub const ID_RSA: &str = "1.2.840.113549.1.1.1";
pub const ID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
pub const ID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub const ID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
pub const ID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
pub const ID_SHA512_RSA: &str = "1.2.840.113549.1.1.13";
pub const ID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub const ID_MGF1: &str = "1.2.840.113549.1.1.8";
pub const ID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
pub const ID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";

fn o(s: &str) -> ObjectIdentifier {
    // Only called with the constants above, which are valid.
    ObjectIdentifier::new_unwrap(s)
}

/// The signature algorithms paraph produces and accepts (always with SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// ECDSA with SHA-256 (DER-encoded Ecdsa-Sig-Value).
    EcdsaSha256,
}

impl SigAlg {
    /// The algorithm for a public key; RSA below 2048 bits and unknown curves are refused.
    pub fn for_key(key: &PKey<Public>) -> Result<SigAlg, CryptoError> {
        match key.id() {
            Id::RSA if key.bits() >= 2048 => Ok(SigAlg::RsaPkcs1Sha256),
            Id::RSA => Err(CryptoError::Unsupported(format!(
                "RSA-{} (at least 2048 bits)",
                key.bits()
            ))),
            Id::EC => {
                let curve = key
                    .ec_key()?
                    .group()
                    .curve_name()
                    .map(|n| n.as_raw())
                    .unwrap_or(0);
                use openssl::nid::Nid;
                if [Nid::X9_62_PRIME256V1, Nid::SECP384R1, Nid::SECP521R1]
                    .iter()
                    .any(|n| n.as_raw() == curve)
                {
                    Ok(SigAlg::EcdsaSha256)
                } else {
                    Err(CryptoError::Unsupported(
                        "EC curve other than P-256, P-384, P-521".into(),
                    ))
                }
            }
            other => Err(CryptoError::Unsupported(format!("key type {other:?}"))),
        }
    }

    pub fn oid(self) -> &'static str {
        match self {
            SigAlg::RsaPkcs1Sha256 => ID_SHA256_RSA,
            SigAlg::EcdsaSha256 => ID_ECDSA_SHA256,
        }
    }

    /// A name for clients: `RSA_PKCS1_SHA256` or `ECDSA_SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::RsaPkcs1Sha256 => "RSA_PKCS1_SHA256",
            SigAlg::EcdsaSha256 => "ECDSA_SHA256",
        }
    }

    fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: o(self.oid()),
            // RFC 4055: sha256WithRSAEncryption carries NULL parameters; ECDSA none (RFC 5758).
            parameters: match self {
                SigAlg::RsaPkcs1Sha256 => Some(Any::null()),
                SigAlg::EcdsaSha256 => None,
            },
        }
    }
}

/// A signature policy to reference (CAdES-EPES): OID, SHA-256 of the policy document, URI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignaturePolicy {
    pub oid: String,
    pub sha256: Vec<u8>,
    pub uri: String,
}

fn attribute(oid_str: &str, value_der: &[u8]) -> Result<Attribute, CryptoError> {
    let value = Any::from_der(value_der).map_err(|e| malformed("attribute value", e))?;
    let values = SetOfVec::try_from(vec![value]).map_err(|e| malformed("attribute", e))?;
    Ok(Attribute {
        oid: o(oid_str),
        values,
    })
}

fn signing_time_der(unix: i64) -> Result<Vec<u8>, CryptoError> {
    let secs = u64::try_from(unix).map_err(|_| malformed("signing time", "before 1970"))?;
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map_err(|e| malformed("signing time", e))?;
    // RFC 5652: UTCTime up to 2049, GeneralizedTime from 2050.
    let t = if dt.year() < 2050 {
        x509_cert::time::Time::UtcTime(
            der::asn1::UtcTime::from_date_time(dt).map_err(|e| malformed("signing time", e))?,
        )
    } else {
        x509_cert::time::Time::GeneralTime(der::asn1::GeneralizedTime::from_date_time(dt))
    };
    t.to_der().map_err(|e| malformed("signing time", e))
}

/// ESSCertIDv2 with the default hash (SHA-256, hence omitted) and IssuerSerial
/// (RFC 5035), wrapped as SigningCertificateV2.
fn signing_certificate_v2(cert: &Certificate, cert_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(cert_der);
    let issuer = cert
        .tbs_certificate
        .issuer
        .to_der()
        .map_err(|e| malformed("certificate", e))?;
    let serial = cert
        .tbs_certificate
        .serial_number
        .to_der()
        .map_err(|e| malformed("certificate", e))?;
    // GeneralNames ::= SEQUENCE OF GeneralName; directoryName [4] EXPLICIT Name.
    let general_names = seq(&[&tlv(0xA4, &issuer)]);
    let issuer_serial = seq(&[&general_names, &serial]);
    let ess = seq(&[&tlv(0x04, &hash), &issuer_serial]);
    Ok(seq(&[&seq(&[&ess])]))
}

fn policy_der(p: &SignaturePolicy) -> Result<Vec<u8>, CryptoError> {
    let hash_alg = seq(&[&oid(ID_SHA256)?]);
    let hash = seq(&[&hash_alg, &tlv(0x04, &p.sha256)]);
    let mut parts: Vec<Vec<u8>> = vec![oid(&p.oid)?, hash];
    if !p.uri.is_empty() {
        if !p.uri.is_ascii() {
            return Err(malformed("signature policy", "the URI must be ASCII"));
        }
        let q = seq(&[&oid(ID_SPQ_URI)?, &tlv(0x16, p.uri.as_bytes())]);
        parts.push(seq(&[&q]));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(seq(&refs))
}

/// The DER (a SET OF Attribute, tag 0x31) of the CAdES signed attributes for `content_sha256`
/// signed by `signer_cert_der` at `signing_time`: exactly the bytes the signer signs.
pub fn build_signed_attributes(
    content_sha256: &[u8; 32],
    signing_time: i64,
    signer_cert_der: &[u8],
    policy: Option<&SignaturePolicy>,
) -> Result<Vec<u8>, CryptoError> {
    signed_attributes(content_sha256, Some(signing_time), signer_cert_der, policy)
}

/// The DER signed attributes of a PAdES signature (EN 319 142-1): as for CAdES but without
/// signing-time (the time is the signature dictionary's /M); `byte_range_sha256` is the digest
/// of the PDF bytes the /ByteRange covers.
pub fn build_pades_signed_attributes(
    byte_range_sha256: &[u8; 32],
    signer_cert_der: &[u8],
    policy: Option<&SignaturePolicy>,
) -> Result<Vec<u8>, CryptoError> {
    signed_attributes(byte_range_sha256, None, signer_cert_der, policy)
}

/// content-type id-data, signing-time when given, message-digest, signing-certificate-v2 and
/// the policy when given, as a DER SET OF.
fn signed_attributes(
    digest: &[u8; 32],
    signing_time: Option<i64>,
    signer_cert_der: &[u8],
    policy: Option<&SignaturePolicy>,
) -> Result<Vec<u8>, CryptoError> {
    let cert = Certificate::from_der(signer_cert_der).map_err(|e| malformed("certificate", e))?;
    let mut attrs = vec![attribute(ID_CONTENT_TYPE, &oid(ID_DATA)?)?];
    if let Some(t) = signing_time {
        attrs.push(attribute(ID_SIGNING_TIME, &signing_time_der(t)?)?);
    }
    attrs.push(attribute(ID_MESSAGE_DIGEST, &tlv(0x04, digest))?);
    attrs.push(attribute(
        ID_SIGNING_CERT_V2,
        &signing_certificate_v2(&cert, signer_cert_der)?,
    )?);
    if let Some(p) = policy {
        attrs.push(attribute(ID_SIG_POLICY, &policy_der(p)?)?);
    }
    // DER: a SET OF is sorted by encoding; SetOfVec sorts.
    let set = SetOfVec::try_from(attrs).map_err(|e| malformed("signed attributes", e))?;
    set.to_der().map_err(|e| malformed("signed attributes", e))
}

/// Signs `data` with a private key (client side, and the server's seal).
pub fn sign_with_key(key: &PKey<Private>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut s = Signer::new(MessageDigest::sha256(), key)?;
    s.update(data)?;
    Ok(s.sign_to_vec()?)
}

/// Checks a signature value over `signed_attrs_der` with the certificate's public key.
pub fn verify_signature_value(
    cert_der: &[u8],
    signed_attrs_der: &[u8],
    signature: &[u8],
) -> Result<SigAlg, CryptoError> {
    let key = certificate_public_key(cert_der)?;
    let alg = SigAlg::for_key(&key)?;
    let mut v = Verifier::new(MessageDigest::sha256(), &key)?;
    v.update(signed_attrs_der)?;
    // A malformed ECDSA value makes OpenSSL return an error rather than `false`: both refuse.
    match v.verify(signature) {
        Ok(true) => Ok(alg),
        _ => Err(CryptoError::BadSignature),
    }
}

/// Most public keys kept by [`certificate_public_key`].
const KEY_CACHE_CAPACITY: usize = 1024;

type KeyCache = std::collections::HashMap<[u8; 32], openssl::pkey::PKey<openssl::pkey::Public>>;

/// The public key of a DER certificate. Decoding a certificate and its key through OpenSSL 3's
/// provider machinery costs far more than the signature check itself, and officers sign with
/// the same certificate again and again, so decoded keys are kept by the SHA-256 of the exact
/// certificate bytes (a different byte is a different entry; the map is emptied when full).
/// The key is only what the certificate says: trusting the certificate is path validation's job.
pub fn certificate_public_key(
    cert_der: &[u8],
) -> Result<openssl::pkey::PKey<openssl::pkey::Public>, CryptoError> {
    use sha2::Digest as _;
    static CACHE: std::sync::Mutex<Option<KeyCache>> = std::sync::Mutex::new(None);
    let id: [u8; 32] = sha2::Sha256::digest(cert_der).into();
    if let Some(k) = CACHE
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&id).cloned()))
    {
        return Ok(k);
    }
    let cert = openssl::x509::X509::from_der(cert_der)
        .map_err(|e| super::malformed_by_openssl("certificate", &e))?;
    let key = cert.public_key()?;
    if let Ok(mut m) = CACHE.lock() {
        let m = m.get_or_insert_with(Default::default);
        if m.len() >= KEY_CACHE_CAPACITY {
            m.clear();
        }
        m.insert(id, key.clone());
    }
    Ok(key)
}

/// One signer of a SignedData to assemble.
#[derive(Debug, Clone)]
pub struct SignerPart {
    pub cert_der: Vec<u8>,
    pub signed_attrs_der: Vec<u8>,
    pub signature: Vec<u8>,
    pub alg: SigAlg,
}

fn signer_info(p: &SignerPart) -> Result<SignerInfo, CryptoError> {
    let cert = Certificate::from_der(&p.cert_der).map_err(|e| malformed("certificate", e))?;
    let signed_attrs = SetOfVec::<Attribute>::from_der(&p.signed_attrs_der)
        .map_err(|e| malformed("signed attributes", e))?;
    Ok(SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: AlgorithmIdentifierOwned {
            oid: o(ID_SHA256),
            parameters: None,
        },
        signed_attrs: Some(signed_attrs),
        signature_algorithm: p.alg.identifier(),
        signature: OctetString::new(p.signature.clone()).map_err(|e| malformed("signature", e))?,
        unsigned_attrs: None,
    })
}

/// Assembles a detached SignedData (ContentInfo DER) with one SignerInfo per part, the given
/// certificates (signers' and their chains) and CRLs (validation material).
///
/// Certificates and CRLs go in as the DER they are given in (each must be one SEQUENCE), not
/// decoded and encoded again: they come from validated chains and trust settings, and a chain
/// of certificates and CRLs re-encoded for every signature was a tenth of a completion's CPU.
/// Each SET OF is in DER order (its members' encodings sorted), duplicates dropped.
pub fn assemble(
    parts: &[SignerPart],
    certs: &[Vec<u8>],
    crls: &[Vec<u8>],
) -> Result<Vec<u8>, CryptoError> {
    assemble_with(parts, certs, crls, true)
}

/// [`assemble`] with the SignerInfos in the order of `parts` (a document's signatures in
/// circuit order), not in DER order: that one SET OF is then BER, as every CMS parser reads
/// it (OpenSSL, pyHanko), so that tools listing the signers list them in the circuit's order.
pub fn assemble_in_order(
    parts: &[SignerPart],
    certs: &[Vec<u8>],
    crls: &[Vec<u8>],
) -> Result<Vec<u8>, CryptoError> {
    assemble_with(parts, certs, crls, false)
}

fn assemble_with(
    parts: &[SignerPart],
    certs: &[Vec<u8>],
    crls: &[Vec<u8>],
    der_order: bool,
) -> Result<Vec<u8>, CryptoError> {
    let signer_infos = parts
        .iter()
        .map(|p| {
            signer_info(p)?
                .to_der()
                .map_err(|e| malformed("SignerInfo", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let encoded = |v: Result<Vec<u8>, der::Error>| v.map_err(|e| malformed("SignedData", e));
    let digest_algorithms = encoded(
        SetOfVec::try_from(vec![AlgorithmIdentifierOwned {
            oid: o(ID_SHA256),
            parameters: None,
        }])
        .and_then(|s| s.to_der()),
    )?;
    let encap_content_info = encoded(
        EncapsulatedContentInfo {
            econtent_type: o(ID_DATA),
            econtent: None,
        }
        .to_der(),
    )?;
    let mut body = encoded(CmsVersion::V1.to_der())?;
    body.extend_from_slice(&digest_algorithms);
    body.extend_from_slice(&encap_content_info);
    let certs = set_members(certs, "certificate")?;
    if !certs.is_empty() {
        // certificates [0] IMPLICIT CertificateSet
        body.extend_from_slice(&tlv(0xa0, &certs.concat()));
    }
    let crls = set_members(crls, "CRL")?;
    if !crls.is_empty() {
        // crls [1] IMPLICIT RevocationInfoChoices
        body.extend_from_slice(&tlv(0xa1, &crls.concat()));
    }
    let signer_infos: Vec<&[u8]> = signer_infos.iter().map(Vec::as_slice).collect();
    let signer_infos = if der_order {
        der_set_order(signer_infos)
    } else {
        signer_infos
    };
    body.extend_from_slice(&tlv(0x31, &signer_infos.concat()));
    let signed_data = tlv(0x30, &body);
    Ok(seq(&[&oid(ID_SIGNED_DATA)?, &tlv(0xa0, &signed_data)]))
}

/// The same SignedData with exactly `crls` as its CRLs (in DER order, duplicates dropped; none
/// removes the field): every other field is kept as the bytes it came in.
///
/// paraph stores and answers a signature's CMS without the CRLs it was validated with (they are
/// kept once, by hash) and puts them back where a whole CMS is needed: for any `certs`,
/// `with_crls(&assemble(parts, certs, &[])?, crls)` is `assemble(parts, certs, crls)` byte for
/// byte, so the digest the audit log recorded of the whole CMS can be recomputed.
pub fn with_crls(cms_der: &[u8], crls: &[Vec<u8>]) -> Result<Vec<u8>, CryptoError> {
    use der::asn1::AnyRef;
    use der::{Reader, SliceReader};
    let ci = AnyRef::from_der(cms_der).map_err(|e| malformed("CMS", e))?;
    if ci.tag() != der::Tag::Sequence {
        return Err(malformed("CMS", "not a SEQUENCE"));
    }
    let mut r = SliceReader::new(ci.value()).map_err(|e| malformed("CMS", e))?;
    let content_type: ObjectIdentifier = r.decode().map_err(|e| malformed("CMS", e))?;
    if content_type != o(ID_SIGNED_DATA) {
        return Err(malformed("CMS", "not a SignedData"));
    }
    let content: AnyRef<'_> = r.decode().map_err(|e| malformed("CMS", e))?;
    r.finish(()).map_err(|e| malformed("CMS", e))?;
    if content.tag()
        != (der::Tag::ContextSpecific {
            constructed: true,
            number: der::TagNumber::new(0),
        })
    {
        return Err(malformed("CMS", "content is not [0] EXPLICIT"));
    }
    let sd = AnyRef::from_der(content.value()).map_err(|e| malformed("SignedData", e))?;
    if sd.tag() != der::Tag::Sequence {
        return Err(malformed("SignedData", "not a SEQUENCE"));
    }
    let mut r = SliceReader::new(sd.value()).map_err(|e| malformed("SignedData", e))?;
    let crl_tag = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::new(1),
    };
    let mut items = Vec::new();
    while !r.is_finished() {
        let item: AnyRef<'_> = r.decode().map_err(|e| malformed("SignedData", e))?;
        if item.tag() != crl_tag {
            items.push(item);
        }
    }
    // version, digestAlgorithms, encapContentInfo, [certificates], signerInfos (the last).
    let Some((signer_infos, head)) = items.split_last() else {
        return Err(malformed("SignedData", "no signerInfos"));
    };
    if head.len() < 3 || signer_infos.tag() != der::Tag::Set {
        return Err(malformed("SignedData", "no signerInfos"));
    }
    let mut body = Vec::with_capacity(sd.value().len() + crls.iter().map(Vec::len).sum::<usize>());
    for item in head {
        body.extend_from_slice(&item.to_der().map_err(|e| malformed("SignedData", e))?);
    }
    // crls [1] IMPLICIT RevocationInfoChoices, just before the signerInfos.
    let members = set_members(crls, "CRL")?;
    if !members.is_empty() {
        body.extend_from_slice(&tlv(0xa1, &members.concat()));
    }
    body.extend_from_slice(
        &signer_infos
            .to_der()
            .map_err(|e| malformed("SignedData", e))?,
    );
    let signed_data = tlv(0x30, &body);
    Ok(seq(&[&oid(ID_SIGNED_DATA)?, &tlv(0xa0, &signed_data)]))
}

/// The members of a SET OF certificates or CRLs, each checked to be one DER SEQUENCE, in DER
/// order without duplicates.
fn set_members<'a>(items: &'a [Vec<u8>], what: &'static str) -> Result<Vec<&'a [u8]>, CryptoError> {
    let mut members = Vec::with_capacity(items.len());
    for item in items {
        let any = der::AnyRef::from_der(item).map_err(|e| malformed(what, e))?;
        if any.tag() != der::Tag::Sequence {
            return Err(malformed(what, "not a SEQUENCE"));
        }
        members.push(item.as_slice());
    }
    Ok(der_set_order(members))
}

/// DER's order for the members of a SET OF (X.690 11.6): their encodings in ascending order,
/// here without duplicates.
fn der_set_order(mut members: Vec<&[u8]>) -> Vec<&[u8]> {
    members.sort_unstable();
    members.dedup();
    members
}

/// What the CAdES attribute checks found on one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeCheck {
    Ok,
    /// A required attribute is missing or duplicated, or has the wrong value type.
    Format(String),
}

/// One SignerInfo, decoded.
#[derive(Debug, Clone)]
pub struct ParsedSigner {
    /// The signer certificate found in the SignedData by issuer and serial, if present.
    pub cert_der: Option<Vec<u8>>,
    pub signed_attrs_der: Vec<u8>,
    pub signature: Vec<u8>,
    pub digest_oid: String,
    pub signature_oid: String,
    /// DER of the signature algorithm's parameters (RSASSA-PSS), if any.
    pub signature_params: Option<Vec<u8>>,
    pub message_digest: Option<Vec<u8>>,
    pub signing_time: Option<i64>,
    /// The first ESSCertIDv2 of signing-certificate-v2: its hash algorithm and hash.
    pub signing_cert_hash: Option<Vec<u8>>,
    pub signing_cert_hash_oid: String,
    pub policy_oid: Option<String>,
    pub attributes: AttributeCheck,
}

#[derive(Debug, Clone)]
pub struct ParsedCms {
    pub signers: Vec<ParsedSigner>,
    pub certs: Vec<Vec<u8>>,
    pub crls: Vec<Vec<u8>>,
}

fn single<'a>(attrs: &'a SetOfVec<Attribute>, id: &str) -> Result<Option<&'a Any>, String> {
    let found: Vec<&Attribute> = attrs.iter().filter(|a| a.oid == o(id)).collect();
    match found.as_slice() {
        [] => Ok(None),
        [a] if a.values.len() == 1 => Ok(a.values.iter().next()),
        _ => Err(format!("attribute {id} must appear once with one value")),
    }
}

/// A certificate carried in a SignedData: its DER and what identifies a signer.
struct CarriedCert {
    der: Vec<u8>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    key_id: Option<Vec<u8>>,
}

impl CarriedCert {
    fn read(der: Vec<u8>) -> Option<CarriedCert> {
        use x509_parser::extensions::ParsedExtension;
        let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
        let issuer = c.issuer().as_raw().to_vec();
        let serial = c.raw_serial().to_vec();
        let key_id = c
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        Some(CarriedCert {
            issuer,
            serial,
            key_id,
            der,
        })
    }
}

fn parse_signer(si: &SignerInfo, certs: &[CarriedCert]) -> Result<ParsedSigner, CryptoError> {
    let cert_der = match &si.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            let issuer = ias
                .issuer
                .to_der()
                .map_err(|e| malformed("SignerInfo", e))?;
            certs
                .iter()
                .find(|c| c.issuer == issuer && c.serial == ias.serial_number.as_bytes())
                .map(|c| c.der.clone())
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => certs
            .iter()
            .find(|c| c.key_id.as_deref() == Some(ski.0.as_bytes()))
            .map(|c| c.der.clone()),
    };
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| malformed("SignerInfo", "no signed attributes (CAdES requires them)"))?;
    let signed_attrs_der = attrs
        .to_der()
        .map_err(|e| malformed("signed attributes", e))?;
    let mut problems = Vec::new();
    let mut get = |id: &str, name: &str, required: bool| match single(attrs, id) {
        Ok(Some(v)) => Some(v.clone()),
        Ok(None) => {
            if required {
                problems.push(format!("missing {name}"));
            }
            None
        }
        Err(e) => {
            problems.push(format!("{name}: {e}"));
            None
        }
    };
    let content_type = get(ID_CONTENT_TYPE, "content-type", true);
    let md = get(ID_MESSAGE_DIGEST, "message-digest", true);
    let st = get(ID_SIGNING_TIME, "signing-time", true);
    let scv2 = get(ID_SIGNING_CERT_V2, "signing-certificate-v2", true);
    let pol = get(ID_SIG_POLICY, "signature-policy-identifier", false);
    if let Some(ct) = &content_type {
        if ct.decode_as::<ObjectIdentifier>().ok() != Some(o(ID_DATA)) {
            problems.push("content-type is not id-data".into());
        }
    }
    let message_digest = md
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec());
    let signing_time = st
        .and_then(|v| x509_cert::time::Time::from_der(&v.to_der().ok()?).ok())
        .map(|t| t.to_unix_duration().as_secs() as i64);
    // SigningCertificateV2 ::= SEQ { SEQ OF ESSCertIDv2 }, ESSCertIDv2 ::= SEQ { [alg] hash ... }
    let (signing_cert_hash_oid, signing_cert_hash) = scv2
        .and_then(|v| {
            let outer: Vec<Any> = v.decode_as().ok()?;
            let certs: Vec<Any> = outer.first()?.decode_as().ok()?;
            let ess: Vec<Any> = certs.first()?.decode_as().ok()?;
            // Default hash algorithm (SHA-256) is omitted: the first element is the hash.
            let first = ess.first()?;
            if first.tag() == der::Tag::OctetString {
                let hash = first.decode_as::<OctetString>().ok()?.as_bytes().to_vec();
                Some((ID_SHA256.to_string(), Some(hash)))
            } else {
                // An explicit AlgorithmIdentifier (checked when the hash is compared).
                let alg: AlgorithmIdentifierOwned = first.decode_as().ok()?;
                let hash = ess
                    .get(1)?
                    .decode_as::<OctetString>()
                    .ok()
                    .map(|x| x.as_bytes().to_vec());
                Some((alg.oid.to_string(), hash))
            }
        })
        .unwrap_or_else(|| (ID_SHA256.to_string(), None));
    let policy_oid = pol.and_then(|v| {
        let parts: Vec<Any> = v.decode_as().ok()?;
        parts
            .first()?
            .decode_as::<ObjectIdentifier>()
            .ok()
            .map(|o| o.to_string())
    });
    let attributes = if problems.is_empty() {
        AttributeCheck::Ok
    } else {
        AttributeCheck::Format(problems.join("; "))
    };
    Ok(ParsedSigner {
        cert_der,
        signed_attrs_der,
        signature: si.signature.as_bytes().to_vec(),
        digest_oid: si.digest_alg.oid.to_string(),
        signature_oid: si.signature_algorithm.oid.to_string(),
        signature_params: si
            .signature_algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.to_der().ok()),
        message_digest,
        signing_time,
        signing_cert_hash,
        signing_cert_hash_oid,
        policy_oid,
        attributes,
    })
}

/// Parses a CMS ContentInfo holding a SignedData (DER).
///
/// The certificates and CRLs it carries are kept as the DER they came in (each one TLV),
/// without decoding them here: they are material for path validation, which decodes (and
/// caches) what it uses. Only what identifies the signer certificate is read from each.
pub fn parse(cms_der: &[u8]) -> Result<ParsedCms, CryptoError> {
    use der::asn1::AnyRef;
    use der::{Reader, SliceReader, TagNumber};
    let ci = AnyRef::from_der(cms_der).map_err(|e| malformed("CMS", e))?;
    if ci.tag() != der::Tag::Sequence {
        return Err(malformed("CMS", "not a SEQUENCE"));
    }
    let mut r = SliceReader::new(ci.value()).map_err(|e| malformed("CMS", e))?;
    let content_type: ObjectIdentifier = r.decode().map_err(|e| malformed("CMS", e))?;
    if content_type != o(ID_SIGNED_DATA) {
        return Err(malformed("CMS", "not a SignedData"));
    }
    let content: AnyRef<'_> = r.decode().map_err(|e| malformed("CMS", e))?;
    r.finish(()).map_err(|e| malformed("CMS", e))?;
    let context = |n: u8, constructed: bool| der::Tag::ContextSpecific {
        constructed,
        number: TagNumber::new(n),
    };
    if content.tag() != context(0, true) {
        return Err(malformed("CMS", "content is not [0] EXPLICIT"));
    }
    let sd = AnyRef::from_der(content.value()).map_err(|e| malformed("SignedData", e))?;
    if sd.tag() != der::Tag::Sequence {
        return Err(malformed("SignedData", "not a SEQUENCE"));
    }
    let mut r = SliceReader::new(sd.value()).map_err(|e| malformed("SignedData", e))?;
    let _version: der::asn1::Int = r.decode().map_err(|e| malformed("SignedData", e))?;
    let _digest_algorithms: SetOfVec<AlgorithmIdentifierOwned> =
        r.decode().map_err(|e| malformed("SignedData", e))?;
    let _encap: EncapsulatedContentInfo = r.decode().map_err(|e| malformed("SignedData", e))?;
    let members = |set: AnyRef<'_>, what: &'static str| -> Result<Vec<Vec<u8>>, CryptoError> {
        let mut inner = SliceReader::new(set.value()).map_err(|e| malformed(what, e))?;
        let mut out = Vec::new();
        while !inner.is_finished() {
            let item: AnyRef<'_> = inner.decode().map_err(|e| malformed(what, e))?;
            // Other choices (attribute certificates, other revocation formats) are skipped.
            if item.tag() == der::Tag::Sequence {
                out.push(item.to_der().map_err(|e| malformed(what, e))?);
            }
        }
        Ok(out)
    };
    let mut certs = Vec::new();
    let mut crls = Vec::new();
    let mut signer_infos = None;
    while !r.is_finished() {
        let item: AnyRef<'_> = r.decode().map_err(|e| malformed("SignedData", e))?;
        match item.tag() {
            t if t == context(0, true) && signer_infos.is_none() && crls.is_empty() => {
                certs = members(item, "certificate")?;
            }
            t if t == context(1, true) && signer_infos.is_none() => {
                crls = members(item, "CRL")?;
            }
            der::Tag::Set if signer_infos.is_none() => {
                // In the order of the file (a SetOfVec would sort them into DER order): the
                // signers of a document's whole CMS are in circuit order.
                let mut inner =
                    SliceReader::new(item.value()).map_err(|e| malformed("SignerInfos", e))?;
                let mut infos: Vec<SignerInfo> = Vec::new();
                while !inner.is_finished() {
                    infos.push(inner.decode().map_err(|e| malformed("SignerInfos", e))?);
                }
                signer_infos = Some(infos);
            }
            _ => return Err(malformed("SignedData", "unexpected field")),
        }
    }
    let signer_infos = signer_infos.ok_or_else(|| malformed("SignedData", "no signerInfos"))?;
    let carried: Vec<CarriedCert> = certs
        .iter()
        .cloned()
        .filter_map(CarriedCert::read)
        .collect();
    let signers = signer_infos
        .iter()
        .map(|si| parse_signer(si, &carried))
        .collect::<Result<Vec<_>, _>>()?;
    if signers.is_empty() {
        return Err(malformed("SignedData", "no SignerInfo"));
    }
    Ok(ParsedCms {
        signers,
        certs,
        crls,
    })
}

/// The signed content, or its SHA-256 alone when that is all the caller has.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Data(&'a [u8]),
    Sha256(&'a [u8; 32]),
}

impl<'a> From<&'a [u8; 32]> for Content<'a> {
    fn from(d: &'a [u8; 32]) -> Content<'a> {
        Content::Sha256(d)
    }
}

impl Content<'_> {
    /// The content's digest with the algorithm `oid` (SHA-256, SHA-384, SHA-512); `None` for
    /// any other algorithm, or one that cannot be computed from what is at hand.
    fn digest(&self, oid: &str) -> Option<Vec<u8>> {
        use sha2::Digest;
        match (self, oid) {
            (Content::Sha256(d), ID_SHA256) => Some(d.to_vec()),
            (Content::Data(d), ID_SHA256) => Some(sha2::Sha256::digest(d).to_vec()),
            (Content::Data(d), ID_SHA384) => Some(sha2::Sha384::digest(d).to_vec()),
            (Content::Data(d), ID_SHA512) => Some(sha2::Sha512::digest(d).to_vec()),
            _ => None,
        }
    }
}

/// The digest algorithms a signer may use (RGS: at least 256 bits).
fn message_digest(oid: &str) -> Option<MessageDigest> {
    match oid {
        ID_SHA256 => Some(MessageDigest::sha256()),
        ID_SHA384 => Some(MessageDigest::sha384()),
        ID_SHA512 => Some(MessageDigest::sha512()),
        _ => None,
    }
}

/// How a SignerInfo's signature value is to be verified, from its signatureAlgorithm and
/// digestAlgorithm, checked against the key type of the certificate: an algorithm of another
/// key family (an RSA value labelled ECDSA) or a hash that differs from the digest algorithm is
/// a defect, never a pass.
enum Scheme {
    RsaPkcs1(MessageDigest),
    RsaPss { md: MessageDigest, salt: i32 },
    Ecdsa(MessageDigest),
}

fn scheme(s: &ParsedSigner, key: &PKey<Public>) -> Result<Scheme, SignerDefect> {
    let md = message_digest(&s.digest_oid).ok_or_else(|| {
        SignerDefect::WeakAlgorithm(if s.digest_oid == ID_SHA1 {
            "SHA-1 digest".into()
        } else {
            format!(
                "digest algorithm {} (SHA-256, SHA-384 or SHA-512 required)",
                s.digest_oid
            )
        })
    })?;
    let is_rsa = key.id() == Id::RSA;
    let is_ec = key.id() == Id::EC;
    let same_hash = |hash_oid: &str, family: &str| {
        if hash_oid == s.digest_oid {
            Ok(())
        } else {
            Err(SignerDefect::SigCrypto(format!(
                "signature algorithm {family} uses hash {hash_oid} but the digest algorithm is {}",
                s.digest_oid
            )))
        }
    };
    let wrong_key = |family: &str| {
        Err(SignerDefect::SigCrypto(format!(
            "signature algorithm {} ({family}) does not match the certificate's {} key",
            s.signature_oid,
            if is_rsa {
                "RSA"
            } else if is_ec {
                "EC"
            } else {
                "unsupported"
            }
        )))
    };
    match s.signature_oid.as_str() {
        ID_RSA | ID_SHA256_RSA | ID_SHA384_RSA | ID_SHA512_RSA => {
            if !is_rsa {
                return wrong_key("RSA PKCS#1 v1.5");
            }
            match s.signature_oid.as_str() {
                ID_SHA256_RSA => same_hash(ID_SHA256, "sha256WithRSAEncryption")?,
                ID_SHA384_RSA => same_hash(ID_SHA384, "sha384WithRSAEncryption")?,
                ID_SHA512_RSA => same_hash(ID_SHA512, "sha512WithRSAEncryption")?,
                _ => {}
            }
            Ok(Scheme::RsaPkcs1(md))
        }
        ID_ECDSA_SHA256 | ID_ECDSA_SHA384 | ID_ECDSA_SHA512 => {
            if !is_ec {
                return wrong_key("ECDSA");
            }
            let hash = match s.signature_oid.as_str() {
                ID_ECDSA_SHA256 => ID_SHA256,
                ID_ECDSA_SHA384 => ID_SHA384,
                _ => ID_SHA512,
            };
            same_hash(hash, "ECDSA")?;
            Ok(Scheme::Ecdsa(md))
        }
        ID_RSASSA_PSS => {
            if !is_rsa {
                return wrong_key("RSASSA-PSS");
            }
            let (hash, mgf_hash, salt) = pss_params(s.signature_params.as_deref())?;
            same_hash(&hash, "RSASSA-PSS")?;
            if mgf_hash != hash {
                return Err(SignerDefect::Format(format!(
                    "RSASSA-PSS with MGF1 hash {mgf_hash} different from its hash {hash}"
                )));
            }
            Ok(Scheme::RsaPss { md, salt })
        }
        other => Err(SignerDefect::WeakAlgorithm(format!(
            "signature algorithm {other} (RSA PKCS#1 v1.5, RSASSA-PSS or ECDSA required)"
        ))),
    }
}

/// RSASSA-PSS-params (RFC 4055): the hash, the MGF1 hash and the salt length. Absent fields
/// take their defaults (SHA-1, MGF1 with SHA-1, 20), which then fail the hash checks.
fn pss_params(der: Option<&[u8]>) -> Result<(String, String, i32), SignerDefect> {
    let bad = |m: &str| SignerDefect::Format(format!("RSASSA-PSS parameters: {m}"));
    let der = der.ok_or_else(|| bad("absent"))?;
    let fields: Vec<Any> = Any::from_der(der)
        .and_then(|a| a.decode_as())
        .map_err(|e| bad(&e.to_string()))?;
    let (mut hash, mut mgf, mut salt) = (ID_SHA1.to_string(), ID_SHA1.to_string(), 20i32);
    for f in fields {
        let inner = || -> Result<Any, SignerDefect> {
            Any::from_der(f.value()).map_err(|e| bad(&e.to_string()))
        };
        match f.tag() {
            der::Tag::ContextSpecific { number, .. } if number.value() == 0 => {
                let alg: AlgorithmIdentifierOwned =
                    inner()?.decode_as().map_err(|e| bad(&e.to_string()))?;
                hash = alg.oid.to_string();
            }
            der::Tag::ContextSpecific { number, .. } if number.value() == 1 => {
                let alg: AlgorithmIdentifierOwned =
                    inner()?.decode_as().map_err(|e| bad(&e.to_string()))?;
                if alg.oid != o(ID_MGF1) {
                    return Err(bad("mask generation function is not MGF1"));
                }
                let h: AlgorithmIdentifierOwned = alg
                    .parameters
                    .ok_or_else(|| bad("MGF1 without its hash"))?
                    .decode_as()
                    .map_err(|e| bad(&e.to_string()))?;
                mgf = h.oid.to_string();
            }
            der::Tag::ContextSpecific { number, .. } if number.value() == 2 => {
                let n: u32 = inner()?.decode_as().map_err(|e| bad(&e.to_string()))?;
                salt = i32::try_from(n).map_err(|_| bad("salt length out of range"))?;
            }
            der::Tag::ContextSpecific { number, .. } if number.value() == 3 => {
                let n: u32 = inner()?.decode_as().map_err(|e| bad(&e.to_string()))?;
                if n != 1 {
                    return Err(bad("trailer field is not 1"));
                }
            }
            _ => return Err(bad("unexpected field")),
        }
    }
    Ok((hash, mgf, salt))
}

/// Verifies a signer fully at the cryptographic level: CAdES attributes present once each,
/// message digest of the content, signing-certificate-v2 matching `cert_der`, algorithms
/// (digest SHA-256/384/512; RSA PKCS#1 v1.5, RSASSA-PSS or ECDSA matching the certificate's
/// key and that digest), and the signature value. Trust in the certificate is `pki`'s question.
pub fn check_signer<'a>(
    s: &ParsedSigner,
    content: impl Into<Content<'a>>,
    cert_der: &[u8],
) -> Result<(), SignerDefect> {
    if let AttributeCheck::Format(f) = &s.attributes {
        return Err(SignerDefect::Format(f.clone()));
    }
    // signing-certificate-v2 binds the certificate with SHA-256 (the default), SHA-384 or
    // SHA-512; any other hash is a format defect like a mismatch.
    let cert_hash = Content::Data(cert_der).digest(&s.signing_cert_hash_oid);
    if cert_hash.is_none() || s.signing_cert_hash != cert_hash {
        return Err(SignerDefect::Format(
            "signing-certificate-v2 does not match the signer certificate".into(),
        ));
    }
    let key = certificate_public_key(cert_der)
        .map_err(|e| SignerDefect::Format(format!("signer certificate: {e}")))?;
    let scheme = scheme(s, &key)?;
    let content = content.into();
    let digest = content.digest(&s.digest_oid).ok_or_else(|| {
        SignerDefect::WeakAlgorithm(format!(
            "digest algorithm {} cannot be checked here (SHA-256 only without the content)",
            s.digest_oid
        ))
    })?;
    if s.message_digest.as_deref() != Some(&digest[..]) {
        return Err(SignerDefect::HashFailure);
    }
    let verified = (|| -> Result<bool, openssl::error::ErrorStack> {
        let (md, pss) = match scheme {
            Scheme::RsaPkcs1(md) | Scheme::Ecdsa(md) => (md, None),
            Scheme::RsaPss { md, salt } => (md, Some(salt)),
        };
        let mut v = Verifier::new(md, &key)?;
        if let Some(salt) = pss {
            v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
            v.set_rsa_mgf1_md(md)?;
            v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(salt))?;
        }
        v.update(&s.signed_attrs_der)?;
        v.verify(&s.signature)
    })();
    match verified {
        Ok(true) => Ok(()),
        _ => Err(SignerDefect::SigCrypto(
            "the signature value does not verify".into(),
        )),
    }
}

/// Why a signer fails before any question of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerDefect {
    Format(String),
    HashFailure,
    /// The value does not verify, or its algorithm does not fit the key or the digest.
    SigCrypto(String),
    WeakAlgorithm(String),
}

#[cfg(test)]
mod assembly_tests {
    use super::*;
    use cms::cert::CertificateChoices;
    use cms::content_info::ContentInfo;
    use cms::revocation::RevocationInfoChoice;
    use cms::revocation::RevocationInfoChoices;
    use cms::signed_data::SignedData;
    use cms::signed_data::{CertificateSet, SignerInfos};
    use sha2::Digest;

    fn pem(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-test")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
    fn cert(name: &str) -> Vec<u8> {
        let x = openssl::x509::X509::from_pem(&pem(&format!("{name}.cert.pem"))).expect("PEM");
        x.to_der().expect("DER")
    }
    fn crl(name: &str) -> Vec<u8> {
        let c = openssl::x509::X509Crl::from_pem(&pem(name)).expect("PEM");
        c.to_der().expect("DER")
    }
    fn part(name: &str) -> SignerPart {
        let cert_der = cert(name);
        let digest: [u8; 32] = sha2::Sha256::digest(b"mandat").into();
        let attrs =
            build_signed_attributes(&digest, 1_780_000_000, &cert_der, None).expect("attrs");
        let key = PKey::private_key_from_pem(&pem(&format!("{name}.key.pem"))).expect("key");
        let signature = sign_with_key(&key, &attrs).expect("sign");
        let alg = verify_signature_value(&cert_der, &attrs, &signature).expect("verify");
        SignerPart {
            cert_der,
            signed_attrs_der: attrs,
            signature,
            alg,
        }
    }

    #[test]
    fn certificates_and_crls_go_in_as_given_and_the_result_is_the_decoded_assembly_byte_for_byte() {
        let (p256, rsa, p256b) = (
            part("officer-l2-p256"),
            part("officer-l1-rsa2048"),
            part("officer3-l3-p256"),
        );
        let crls = vec![crl("root-ca.crl.pem"), crl("signing-ca.crl.pem")];
        let mut reversed_crls = crls.clone();
        reversed_crls.reverse();
        type Case = (Vec<SignerPart>, Vec<Vec<u8>>, Vec<Vec<u8>>);
        let cases: Vec<Case> = vec![
            (
                vec![p256.clone()],
                vec![p256.cert_der.clone(), cert("signing-ca")],
                crls.clone(),
            ),
            // Several signers, certificates repeated and out of order, CRLs reversed.
            (
                vec![p256.clone(), rsa.clone(), p256b.clone()],
                vec![
                    cert("signing-ca"),
                    p256b.cert_der.clone(),
                    rsa.cert_der.clone(),
                    cert("signing-ca"),
                    p256.cert_der.clone(),
                    rsa.cert_der.clone(),
                ],
                reversed_crls,
            ),
            (vec![rsa.clone()], Vec::new(), Vec::new()),
        ];
        for (parts, certs, crls) in cases {
            let fast = assemble(&parts, &certs, &crls).expect("assemble");
            let reference = assemble_by_decoding(&parts, &certs, &crls).expect("reference");
            assert_eq!(fast, reference, "{} signers", parts.len());
        }
    }

    #[test]
    fn crls_go_out_of_a_cms_and_back_in_byte_for_byte() {
        let (p256, rsa) = (part("officer-l2-p256"), part("officer-l1-rsa2048"));
        let crls = vec![crl("signing-ca.crl.pem"), crl("root-ca.crl.pem")];
        let certs = vec![
            p256.cert_der.clone(),
            cert("signing-ca"),
            rsa.cert_der.clone(),
        ];
        for parts in [vec![p256.clone()], vec![p256.clone(), rsa.clone()]] {
            let whole = assemble(&parts, &certs, &crls).expect("assemble");
            let bare = assemble(&parts, &certs, &[]).expect("assemble");
            assert_eq!(with_crls(&bare, &crls).expect("in"), whole);
            assert_eq!(with_crls(&whole, &[]).expect("out"), bare);
            assert_eq!(with_crls(&whole, &crls).expect("again"), whole);
            let parsed = parse(&with_crls(&bare, &crls).expect("in")).expect("parse");
            assert_eq!(parsed.crls.len(), 2);
        }
        let err = with_crls(b"\x30\x03\x02\x01\x05", &[]).expect_err("not a CMS");
        assert!(err.to_string().contains("CMS"), "{err}");
    }

    #[test]
    fn material_that_is_not_one_der_sequence_is_refused_by_name() {
        let p = part("officer-l2-p256");
        let garbage = vec![0x30, 0x05, 1, 2];
        let err = assemble(std::slice::from_ref(&p), &[garbage], &[]).expect_err("cut short");
        assert!(err.to_string().contains("certificate"), "{err}");
        let integer = vec![0x02, 0x01, 0x05];
        let err = assemble(std::slice::from_ref(&p), &[], &[integer]).expect_err("an INTEGER");
        assert!(
            err.to_string().contains("CRL") && err.to_string().contains("SEQUENCE"),
            "{err}"
        );
        let mut trailing = p.cert_der.clone();
        trailing.push(0);
        assert!(assemble(std::slice::from_ref(&p), &[trailing], &[]).is_err());
    }

    /// The reference [`assemble`] must match byte for byte: the assembly this module used
    /// before, every certificate and CRL decoded into its type and encoded again by the `cms`
    /// crate.
    fn assemble_by_decoding(
        parts: &[SignerPart],
        certs: &[Vec<u8>],
        crls: &[Vec<u8>],
    ) -> Result<Vec<u8>, CryptoError> {
        let signer_infos = parts
            .iter()
            .map(signer_info)
            .collect::<Result<Vec<_>, _>>()?;
        let mut cert_choices = Vec::new();
        for c in certs {
            let cert = Certificate::from_der(c).map_err(|e| malformed("certificate", e))?;
            if !cert_choices.iter().any(
                |x: &CertificateChoices| matches!(x, CertificateChoices::Certificate(y) if y == &cert),
            ) {
                cert_choices.push(CertificateChoices::Certificate(cert));
            }
        }
        let mut crl_choices = Vec::new();
        for c in crls {
            let crl =
                x509_cert::crl::CertificateList::from_der(c).map_err(|e| malformed("CRL", e))?;
            if !crl_choices.iter().any(
                |x: &RevocationInfoChoice| matches!(x, RevocationInfoChoice::Crl(y) if y == &crl),
            ) {
                crl_choices.push(RevocationInfoChoice::Crl(crl));
            }
        }
        let sd = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![AlgorithmIdentifierOwned {
                oid: o(ID_SHA256),
                parameters: None,
            }])
            .map_err(|e| malformed("SignedData", e))?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: o(ID_DATA),
                econtent: None,
            },
            certificates: if cert_choices.is_empty() {
                None
            } else {
                Some(CertificateSet(
                    SetOfVec::try_from(cert_choices).map_err(|e| malformed("SignedData", e))?,
                ))
            },
            crls: if crl_choices.is_empty() {
                None
            } else {
                Some(RevocationInfoChoices(
                    SetOfVec::try_from(crl_choices).map_err(|e| malformed("SignedData", e))?,
                ))
            },
            signer_infos: SignerInfos(
                SetOfVec::try_from(signer_infos).map_err(|e| malformed("SignedData", e))?,
            ),
        };
        let ci = ContentInfo {
            content_type: o(ID_SIGNED_DATA),
            content: Any::encode_from(&sd).map_err(|e| malformed("SignedData", e))?,
        };
        ci.to_der().map_err(|e| malformed("SignedData", e))
    }
}
