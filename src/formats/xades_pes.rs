//! XAdES-EPES enveloped signatures of PES V2 flows (`PES_Aller`), one per bordereau.
//!
//! A flow is read in its declared encoding (UTF-8 or ISO-8859-1), checked (root `PES_Aller`,
//! an `Id` on every bordereau, or on `PES_Aller` for a whole-file signature when no bordereau
//! has one, no signature already there), and each target's exclusive canonical form is
//! digested. A signature is prepared per target as its canonical `SignedInfo`; once the values
//! come back, each `ds:Signature` is inserted as the last child of its target. The submitted
//! bytes are never rewritten elsewhere: inserted text is pure ASCII (every other character is a
//! character reference), so it is valid in either encoding.

use super::c14n::exc_c14n;
use super::FormatError;
use base64::Engine as _;
use sha2::{Digest, Sha256};

pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XAD: &str = "http://uri.etsi.org/01903/v1.1.1#";
pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ALG_ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const ALG_ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const TYPE_SIGNED_PROPERTIES: &str = "http://uri.etsi.org/01903/v1.1.1#SignedProperties";
/// The Helios policy that specifies SHA-1: refused.
pub const POLICY_SHA1_OID: &str = "1.2.250.1.131.1.5.18.21.1.4";
/// The Helios policy with SHA-256, the default.
pub const POLICY_DEFAULT_OID: &str = "1.2.250.1.131.1.5.18.21.1.7";

/// The signature policy and the claims a PES signature carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PesSettings {
    /// OID of the signature policy (without `urn:oid:`).
    pub policy_oid: String,
    pub policy_description: String,
    /// Base64 SHA-256 of the policy document (producers disagree: configurable).
    pub policy_hash: String,
    pub policy_uri: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    /// The claimed role of the ordonnateur.
    pub role: String,
}

impl Default for PesSettings {
    fn default() -> Self {
        PesSettings {
            policy_oid: POLICY_DEFAULT_OID.into(),
            policy_description: "Politique de signature Helios de la DGFiP".into(),
            // Public producers disagree on the policy document's digest: the operator sets it.
            policy_hash: String::new(),
            policy_uri: String::new(),
            city: String::new(),
            postal_code: String::new(),
            country: "France".into(),
            role: "Ordonnateur".into(),
        }
    }
}

impl PesSettings {
    /// Refuses a policy paraph must not sign under, or one it cannot write.
    pub fn check(&self) -> Result<(), FormatError> {
        if self.policy_oid.trim() == POLICY_SHA1_OID {
            return Err(FormatError::Refused(format!(
                "signature policy {POLICY_SHA1_OID} specifies SHA-1: configure policy {POLICY_DEFAULT_OID}"
            )));
        }
        if self.policy_oid.is_empty()
            || !self
                .policy_oid
                .split('.')
                .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(FormatError::Refused(format!(
                "signature policy OID '{}' is not an OID",
                self.policy_oid
            )));
        }
        match base64::engine::general_purpose::STANDARD.decode(&self.policy_hash) {
            Ok(h) if h.len() == 32 => {}
            Ok(h) if h.is_empty() => {
                return Err(FormatError::Refused(
                    "the PES signature policy hash is not configured (setting pes.policy_hash)"
                        .into(),
                ))
            }
            _ => {
                return Err(FormatError::Refused(
                    "the PES signature policy hash must be the base64 of a SHA-256 digest".into(),
                ))
            }
        }
        if self.role.trim().is_empty() {
            return Err(FormatError::Refused("the claimed role is empty".into()));
        }
        Ok(())
    }
}

/// How the flow's text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Latin1,
}

/// A flow decoded to text, with what maps text offsets back to its bytes.
pub struct Flow {
    pub text: String,
    pub encoding: Encoding,
    /// Bytes before the text (a UTF-8 byte-order mark).
    skip: usize,
}

impl Flow {
    /// Decodes `bytes` in the encoding its prolog declares (UTF-8 when none).
    pub fn decode(bytes: &[u8]) -> Result<Flow, FormatError> {
        let (skip, body) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => (3, rest),
            None => (0, bytes),
        };
        let encoding = match declared_encoding(body) {
            None => Encoding::Utf8,
            Some(e) => match e.to_ascii_lowercase().as_str() {
                "utf-8" | "utf8" => Encoding::Utf8,
                "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "iso_8859-1" => {
                    Encoding::Latin1
                }
                _ => {
                    return Err(FormatError::Invalid(format!(
                        "encoding '{e}' is not supported (UTF-8 or ISO-8859-1)"
                    )))
                }
            },
        };
        let text = match encoding {
            Encoding::Utf8 => std::str::from_utf8(body)
                .map_err(|e| {
                    FormatError::Invalid(format!(
                        "not valid UTF-8 at byte {}",
                        e.valid_up_to() + skip
                    ))
                })?
                .to_owned(),
            Encoding::Latin1 => body.iter().map(|&b| char::from(b)).collect(),
        };
        Ok(Flow {
            text,
            encoding,
            skip,
        })
    }

    /// The byte offset in the original flow of a text offset.
    pub fn byte_offset(&self, text_offset: usize) -> usize {
        self.skip
            + match self.encoding {
                Encoding::Utf8 => text_offset,
                Encoding::Latin1 => self.text[..text_offset].chars().count(),
            }
    }

    pub fn parse(&self) -> Result<roxmltree::Document<'_>, FormatError> {
        roxmltree::Document::parse_with_options(
            &self.text,
            roxmltree::ParsingOptions {
                allow_dtd: false,
                ..Default::default()
            },
        )
        .map_err(|e| FormatError::Invalid(format!("not well-formed XML: {e}")))
    }
}

/// The `encoding` of an XML declaration, if any.
fn declared_encoding(body: &[u8]) -> Option<String> {
    if !body.starts_with(b"<?xml") {
        return None;
    }
    let end = body.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&body[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + 8..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let rest = &rest[1..];
    Some(rest[..rest.find(quote)?].to_owned())
}

/// The local name of the root element, when `bytes` are XML in a supported encoding.
pub fn root_name(bytes: &[u8]) -> Option<String> {
    let head = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *head != b'<' && !bytes.starts_with(b"\xEF\xBB\xBF") {
        return None;
    }
    let flow = Flow::decode(bytes).ok()?;
    let doc = flow.parse().ok()?;
    Some(doc.root_element().tag_name().name().to_owned())
}

/// An element to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its `Id`.
    pub id: String,
    /// `Bordereau` or `PES_Aller`.
    pub element: String,
    /// SHA-256 of its exclusive canonical form.
    pub digest: [u8; 32],
    /// Byte offset, in the flow, of its end tag: where the signature goes.
    pub insert_at: usize,
}

/// Checks a PES flow and lists what to sign, in document order.
pub fn targets(bytes: &[u8]) -> Result<Vec<Target>, FormatError> {
    let flow = Flow::decode(bytes)?;
    let doc = flow.parse()?;
    let root = doc.root_element();
    if root.tag_name().name() != "PES_Aller" {
        return Err(FormatError::Invalid(format!(
            "the root element is '{}', not PES_Aller",
            root.tag_name().name()
        )));
    }
    let bordereaux: Vec<_> = root
        .children()
        .filter(|n| {
            n.is_element() && matches!(n.tag_name().name(), "PES_DepenseAller" | "PES_RecetteAller")
        })
        .flat_map(|p| p.children())
        .filter(|n| n.is_element() && n.tag_name().name() == "Bordereau")
        .collect();
    let with_id = bordereaux
        .iter()
        .filter(|b| b.attribute("Id").is_some())
        .count();
    let nodes = if with_id > 0 {
        if let Some((i, _)) = bordereaux
            .iter()
            .enumerate()
            .find(|(_, b)| b.attribute("Id").is_none())
        {
            return Err(FormatError::Invalid(format!(
                "bordereau #{} has no Id attribute (every bordereau to sign needs one)",
                i + 1
            )));
        }
        bordereaux
    } else if root.attribute("Id").is_some() {
        vec![root]
    } else {
        return Err(FormatError::Invalid(
            "no bordereau has an Id attribute, nor has PES_Aller: nothing can be referenced".into(),
        ));
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let id = n.attribute("Id").unwrap_or_default().to_owned();
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(FormatError::Invalid(format!(
                "{} Id '{id}' is not usable as a reference",
                n.tag_name().name()
            )));
        }
        if !seen.insert(id.clone()) {
            return Err(FormatError::Invalid(format!("Id '{id}' appears twice")));
        }
        if n.children().any(|c| {
            c.is_element()
                && c.tag_name().name() == "Signature"
                && c.tag_name().namespace() == Some(NS_DS)
        }) {
            return Err(FormatError::Invalid(format!(
                "{} '{id}' is already signed",
                n.tag_name().name()
            )));
        }
        let range = n.range();
        let inner = &flow.text[range.clone()];
        if inner.ends_with("/>") {
            return Err(FormatError::Invalid(format!(
                "{} '{id}' is empty",
                n.tag_name().name()
            )));
        }
        let end_tag = inner.rfind("</").ok_or_else(|| {
            FormatError::Invalid(format!("{} '{id}' has no end tag", n.tag_name().name()))
        })?;
        out.push(Target {
            id,
            element: n.tag_name().name().to_owned(),
            digest: Sha256::digest(exc_c14n(n, &flow.text, None)).into(),
            insert_at: flow.byte_offset(range.start + end_tag),
        });
    }
    Ok(out)
}

/// The signer's certificate as the signature shows it.
#[derive(Debug, Clone)]
pub struct SignerCert {
    pub der: Vec<u8>,
    pub issuer: String,
    pub serial_decimal: String,
    /// `Some(n)`: ECDSA with field size `n` bytes (values are raw r||s); `None`: RSA.
    pub ec_field_bytes: Option<usize>,
}

impl SignerCert {
    pub fn from_der(der: &[u8]) -> Result<SignerCert, FormatError> {
        let bad =
            |e: &dyn std::fmt::Display| FormatError::Invalid(format!("signer certificate: {e}"));
        let x = openssl::x509::X509::from_der(der).map_err(|e| bad(&e))?;
        let serial = x
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_dec_str().map(|s| s.to_string()))
            .map_err(|e| bad(&e))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e))?;
        let issuer = parsed.issuer().to_string();
        let key = x.public_key().map_err(|e| bad(&e))?;
        let ec_field_bytes = match key.ec_key() {
            Ok(ec) => Some((ec.group().degree() as usize).div_ceil(8)),
            Err(_) => None,
        };
        Ok(SignerCert {
            der: der.to_vec(),
            issuer,
            serial_decimal: serial,
            ec_field_bytes,
        })
    }
}

/// One prepared signature: its target, the canonical SignedInfo to sign, and the signature
/// element to insert once the value is known (with an empty `SignatureValue`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    pub id: String,
    pub insert_at: usize,
    pub digest_b64: String,
    pub signed_info: Vec<u8>,
    pub template: String,
}

const VALUE_SLOT: &str = "<ds:SignatureValue></ds:SignatureValue>";

/// Appends `s` escaped for XML text or a double-quoted attribute, every non-ASCII character as
/// a character reference.
fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_ascii() && !c.is_ascii_control() || c == '\n' => out.push(c),
            c => out.push_str(&format!("&#x{:X};", c as u32)),
        }
    }
}

fn e(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    esc(s, &mut o);
    o
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Prepares one signature per target of `bytes`.
pub fn prepare(
    bytes: &[u8],
    cert: &SignerCert,
    signing_time: &str,
    settings: &PesSettings,
) -> Result<Vec<Prepared>, FormatError> {
    settings.check()?;
    let mut out = Vec::new();
    for t in targets(bytes)? {
        let sig_id = format!("{}_SIG", t.id);
        let sp_id = format!("{}_SIG_SP", t.id);
        let sig_alg = if cert.ec_field_bytes.is_some() {
            ALG_ECDSA_SHA256
        } else {
            ALG_RSA_SHA256
        };
        let mut sp = String::new();
        sp.push_str(&format!(
            "<xad:SignedProperties Id=\"{}\"><xad:SignedSignatureProperties>",
            e(&sp_id)
        ));
        sp.push_str(&format!(
            "<xad:SigningTime>{signing_time}</xad:SigningTime>"
        ));
        sp.push_str(&format!(
            "<xad:SigningCertificate><xad:Cert><xad:CertDigest><xad:DigestMethod Algorithm=\"{ALG_SHA256}\"></xad:DigestMethod><xad:DigestValue>{}</xad:DigestValue></xad:CertDigest><xad:IssuerSerial><ds:X509IssuerName>{}</ds:X509IssuerName><ds:X509SerialNumber>{}</ds:X509SerialNumber></xad:IssuerSerial></xad:Cert></xad:SigningCertificate>",
            b64(&Sha256::digest(&cert.der)),
            e(&cert.issuer),
            cert.serial_decimal
        ));
        sp.push_str(&format!(
            "<xad:SignaturePolicyIdentifier><xad:SignaturePolicyId><xad:SigPolicyId><xad:Identifier>urn:oid:{}</xad:Identifier><xad:Description>{}</xad:Description></xad:SigPolicyId><xad:SigPolicyHash><xad:DigestMethod Algorithm=\"{ALG_SHA256}\"></xad:DigestMethod><xad:DigestValue>{}</xad:DigestValue></xad:SigPolicyHash>",
            e(&settings.policy_oid),
            e(&settings.policy_description),
            e(&settings.policy_hash)
        ));
        if !settings.policy_uri.is_empty() {
            sp.push_str(&format!(
                "<xad:SigPolicyQualifiers><xad:SigPolicyQualifier><xad:SPURI>{}</xad:SPURI></xad:SigPolicyQualifier></xad:SigPolicyQualifiers>",
                e(&settings.policy_uri)
            ));
        }
        sp.push_str("</xad:SignaturePolicyId></xad:SignaturePolicyIdentifier>");
        sp.push_str("<xad:SignatureProductionPlace>");
        if !settings.city.is_empty() {
            sp.push_str(&format!("<xad:City>{}</xad:City>", e(&settings.city)));
        }
        if !settings.postal_code.is_empty() {
            sp.push_str(&format!(
                "<xad:PostalCode>{}</xad:PostalCode>",
                e(&settings.postal_code)
            ));
        }
        sp.push_str(&format!(
            "<xad:CountryName>{}</xad:CountryName></xad:SignatureProductionPlace>",
            e(&settings.country)
        ));
        sp.push_str(&format!(
            "<xad:SignerRole><xad:ClaimedRoles><xad:ClaimedRole>{}</xad:ClaimedRole></xad:ClaimedRoles></xad:SignerRole>",
            e(&settings.role)
        ));
        sp.push_str("</xad:SignedSignatureProperties></xad:SignedProperties>");
        let digest_b64 = b64(&t.digest);
        let object = format!(
            "<ds:Object><xad:QualifyingProperties xmlns:xad=\"{NS_XAD}\" Target=\"#{}\">{sp}</xad:QualifyingProperties></ds:Object>",
            e(&sig_id)
        );
        // The SignedProperties digest: canonicalized where it will sit (only the prefixes it
        // uses are rendered, so the standalone parse gives the same form).
        let wrapped = format!("<ds:Signature xmlns:ds=\"{NS_DS}\">{object}</ds:Signature>");
        let sp_c14n = canonical_of(&wrapped, &sp_id)?;
        let signed_info = format!(
            "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"{sig_alg}\"></ds:SignatureMethod><ds:Reference URI=\"#{}\"><ds:Transforms><ds:Transform Algorithm=\"{ALG_ENVELOPED}\"></ds:Transform><ds:Transform Algorithm=\"{ALG_EXC_C14N}\"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"{ALG_SHA256}\"></ds:DigestMethod><ds:DigestValue>{digest_b64}</ds:DigestValue></ds:Reference><ds:Reference Type=\"{TYPE_SIGNED_PROPERTIES}\" URI=\"#{}\"><ds:Transforms><ds:Transform Algorithm=\"{ALG_EXC_C14N}\"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"{ALG_SHA256}\"></ds:DigestMethod><ds:DigestValue>{}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
            e(&t.id),
            e(&sp_id),
            b64(&Sha256::digest(&sp_c14n))
        );
        let template = format!(
            "<ds:Signature xmlns:ds=\"{NS_DS}\" Id=\"{}\">{signed_info}{VALUE_SLOT}<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{object}</ds:Signature>",
            e(&sig_id),
            b64(&cert.der)
        );
        let signed_info = canonical_of_element(&template, "SignedInfo")?;
        out.push(Prepared {
            id: t.id,
            insert_at: t.insert_at,
            digest_b64,
            signed_info,
            template,
        });
    }
    Ok(out)
}

/// The exclusive canonical form of the element with `Id="id"` in `xml`.
fn canonical_of(xml: &str, id: &str) -> Result<Vec<u8>, FormatError> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| FormatError::Internal(format!("signature template: {e}")))?;
    let n = doc
        .descendants()
        .find(|n| n.attribute("Id") == Some(id))
        .ok_or_else(|| FormatError::Internal(format!("no element {id}")))?;
    Ok(exc_c14n(n, xml, None))
}

fn canonical_of_element(xml: &str, local: &str) -> Result<Vec<u8>, FormatError> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| FormatError::Internal(format!("signature template: {e}")))?;
    let n = doc
        .descendants()
        .find(|n| n.tag_name().name() == local)
        .ok_or_else(|| FormatError::Internal(format!("no element {local}")))?;
    Ok(exc_c14n(n, xml, None))
}

/// An XML-DSig signature value from what a signer produced: RSA as is, ECDSA converted from
/// DER (`Ecdsa-Sig-Value`) to r||s of the field size.
pub fn xmldsig_value(cert: &SignerCert, value: &[u8]) -> Result<Vec<u8>, FormatError> {
    let Some(n) = cert.ec_field_bytes else {
        return Ok(value.to_vec());
    };
    let sig = openssl::ecdsa::EcdsaSig::from_der(value)
        .map_err(|_| FormatError::Invalid("the ECDSA value is not DER".into()))?;
    let mut out = sig
        .r()
        .to_vec_padded(n as i32)
        .map_err(|e| FormatError::Invalid(format!("ECDSA r: {e}")))?;
    out.extend(
        sig.s()
            .to_vec_padded(n as i32)
            .map_err(|e| FormatError::Invalid(format!("ECDSA s: {e}")))?,
    );
    Ok(out)
}

/// The flow with each prepared signature, its value filled in, inserted as the last child of
/// its target; every other byte as it was.
pub fn insert(
    bytes: &[u8],
    prepared: &[Prepared],
    values: &[Vec<u8>],
) -> Result<Vec<u8>, FormatError> {
    if prepared.len() != values.len() {
        return Err(FormatError::Invalid(format!(
            "{} signature values for {} bordereaux",
            values.len(),
            prepared.len()
        )));
    }
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    order.sort_by_key(|&i| prepared[i].insert_at);
    let extra: usize = prepared.iter().map(|p| p.template.len() + 700).sum();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    let mut at = 0;
    for i in order {
        let p = &prepared[i];
        if p.insert_at < at || p.insert_at > bytes.len() {
            return Err(FormatError::Internal(
                "signature positions out of order".into(),
            ));
        }
        out.extend_from_slice(&bytes[at..p.insert_at]);
        let filled = p.template.replacen(
            VALUE_SLOT,
            &format!("<ds:SignatureValue>{}</ds:SignatureValue>", b64(&values[i])),
            1,
        );
        out.extend_from_slice(filled.as_bytes());
        at = p.insert_at;
    }
    out.extend_from_slice(&bytes[at..]);
    Ok(out)
}
