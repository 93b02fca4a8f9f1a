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
/// The default SigPolicyHash (base64 SHA-256) of policy 1.2.250.1.131.1.5.18.21.1.7.
///
/// Public producers disagree on this value. The signing stack of ADULLACT, which most French
/// local-authority platforms that feed Helios use, sends this one with [`POLICY_DEFAULT_URI`]
/// and the description "Politique de signature Helios de la DGFiP": it is what Helios has been
/// receiving from the field, so it is the default. Another public library uses the SHA-256 of
/// the PDF now published at that address, [`POLICY_PUBLISHED_PDF_HASH`]. Both stay a setting
/// (`[pes] policy_hash`, per tenant), and a validator compares a signature's hash with it.
pub const POLICY_DEFAULT_HASH: &str = "roF9+cfRHNPtVJolhdqfIqGMVuUXX8aR4rpiquf0u5E=";
/// The SHA-256 (base64) of the policy PDF currently published at [`POLICY_DEFAULT_URI`], which
/// some producers send instead of [`POLICY_DEFAULT_HASH`].
pub const POLICY_PUBLISHED_PDF_HASH: &str = "GbP1WjbTrHp6h9zlsz5RN7AqkJbnDNDOAQzgm1qzIJ4=";
/// The SPURI sent with [`POLICY_DEFAULT_HASH`].
pub const POLICY_DEFAULT_URI: &str = "https://www.collectivites-locales.gouv.fr/files/files/finances_locales/dematerialisation/ps_helios_dgfip.pdf";
/// The policy description sent with [`POLICY_DEFAULT_HASH`].
pub const POLICY_DEFAULT_DESCRIPTION: &str = "Politique de signature Helios de la DGFiP";

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
    /// Most signatures (bordereaux) in one flow: each is one item to sign in one answer.
    pub max_bordereaux: usize,
    /// A tenant's own settings (`[pes.tenants.NAME]`), each field unset taking the value
    /// above.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tenants: std::collections::BTreeMap<String, PesTenantSettings>,
}

/// What one tenant sets of its own PES signatures; an unset field is the server's `[pes]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PesTenantSettings {
    pub policy_oid: Option<String>,
    pub policy_description: Option<String>,
    pub policy_hash: Option<String>,
    pub policy_uri: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub role: Option<String>,
}

impl Default for PesSettings {
    fn default() -> Self {
        PesSettings {
            policy_oid: POLICY_DEFAULT_OID.into(),
            policy_description: POLICY_DEFAULT_DESCRIPTION.into(),
            // Public producers disagree on the policy document's digest: the field's value by
            // default (see `POLICY_DEFAULT_HASH`), configurable.
            policy_hash: POLICY_DEFAULT_HASH.into(),
            policy_uri: POLICY_DEFAULT_URI.into(),
            city: String::new(),
            postal_code: String::new(),
            country: "France".into(),
            role: "Ordonnateur".into(),
            max_bordereaux: 1000,
            tenants: Default::default(),
        }
    }
}

impl PesSettings {
    /// The settings of `tenant`: its own fields over the server's, without the other
    /// tenants'.
    pub fn for_tenant(&self, tenant: &str) -> PesSettings {
        let mut out = PesSettings {
            tenants: Default::default(),
            ..self.clone()
        };
        if let Some(t) = self.tenants.get(tenant) {
            let set = |field: &mut String, value: &Option<String>| {
                if let Some(v) = value {
                    *field = v.clone();
                }
            };
            set(&mut out.policy_oid, &t.policy_oid);
            set(&mut out.policy_description, &t.policy_description);
            set(&mut out.policy_hash, &t.policy_hash);
            set(&mut out.policy_uri, &t.policy_uri);
            set(&mut out.city, &t.city);
            set(&mut out.postal_code, &t.postal_code);
            set(&mut out.country, &t.country);
            set(&mut out.role, &t.role);
        }
        out
    }

    /// These settings with the claimed role of a step that sets one.
    pub fn with_role(mut self, role: Option<&str>) -> PesSettings {
        if let Some(r) = role {
            self.role = r.to_owned();
        }
        self
    }

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

/// What the structural and cryptographic check of one `ds:Signature` of a flow found; the
/// certificate path is validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct SignatureCheck {
    /// The `Id` of the element it signs (the bordereau), or of the signature when unknown.
    pub reference: String,
    pub cert_der: Option<Vec<u8>>,
    /// `(sub-indication, message)` of the first defect found.
    pub defect: Option<(&'static str, String)>,
    pub signing_time: Option<String>,
    pub policy_oid: Option<String>,
    /// Base64 SigPolicyHash as the signature states it.
    pub policy_hash: Option<String>,
    pub claimed_role: Option<String>,
    pub signature_value: Vec<u8>,
}

fn child<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &str,
    local: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().name() == local && c.tag_name().namespace() == Some(ns)
    })
}

fn path<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    steps: &[(&str, &str)],
) -> Option<roxmltree::Node<'a, 'i>> {
    steps.iter().try_fold(n, |n, (ns, l)| child(n, ns, l))
}

fn text_of(n: Option<roxmltree::Node<'_, '_>>) -> Option<String> {
    n.map(|n| {
        n.descendants()
            .filter(|d| d.is_text())
            .filter_map(|d| d.text())
            .collect::<String>()
    })
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// Checks every enveloped signature of a PES flow: the references (the signed element with the
/// enveloped-signature and exclusive C14N transforms, the SignedProperties), their digests, the
/// signature value over the exclusive canonical SignedInfo with the KeyInfo certificate, the
/// SigningCertificate against that certificate, a UTC SigningTime and a claimed role.
pub fn check_signatures(bytes: &[u8]) -> Result<Vec<SignatureCheck>, FormatError> {
    let flow = Flow::decode(bytes)?;
    let doc = flow.parse()?;
    if doc.root_element().tag_name().name() != "PES_Aller" {
        return Err(FormatError::Invalid(format!(
            "the root element is '{}', not PES_Aller",
            doc.root_element().tag_name().name()
        )));
    }
    let mut out = Vec::new();
    for sig in doc.descendants().filter(|n| {
        n.is_element()
            && n.tag_name().name() == "Signature"
            && n.tag_name().namespace() == Some(NS_DS)
    }) {
        out.push(check_one(&doc, sig, &flow.text));
    }
    Ok(out)
}

fn check_one(
    doc: &roxmltree::Document<'_>,
    sig: roxmltree::Node<'_, '_>,
    src: &str,
) -> SignatureCheck {
    let mut c = SignatureCheck {
        reference: sig.attribute("Id").unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if let Err((code, msg)) = check_into(doc, sig, src, &mut c) {
        c.defect = Some((code, msg));
    }
    c
}

fn check_into(
    doc: &roxmltree::Document<'_>,
    sig: roxmltree::Node<'_, '_>,
    src: &str,
    c: &mut SignatureCheck,
) -> Result<(), (&'static str, String)> {
    let fmt = |m: String| ("FORMAT_FAILURE", m);
    let si = child(sig, NS_DS, "SignedInfo").ok_or_else(|| fmt("no SignedInfo".into()))?;
    let c14n = child(si, NS_DS, "CanonicalizationMethod").and_then(|n| n.attribute("Algorithm"));
    if c14n != Some(ALG_EXC_C14N) {
        return Err(fmt(format!(
            "SignedInfo is canonicalized with {}, not exclusive C14N",
            c14n.unwrap_or("nothing")
        )));
    }
    let method = child(si, NS_DS, "SignatureMethod").and_then(|n| n.attribute("Algorithm"));
    if !matches!(method, Some(ALG_RSA_SHA256) | Some(ALG_ECDSA_SHA256)) {
        return Err((
            "WEAK_ALGORITHM",
            format!("signature method {}", method.unwrap_or("none")),
        ));
    }
    let refs: Vec<_> = si
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "Reference")
        .collect();
    if refs.len() != 2 {
        return Err(fmt(format!("{} references, not 2", refs.len())));
    }
    let by_id = |id: &str| {
        doc.descendants()
            .find(|n| n.is_element() && n.attribute("Id") == Some(id))
    };
    let mut sp_node = None;
    for r in &refs {
        let uri = r.attribute("URI").unwrap_or_default();
        let id = uri.strip_prefix('#').ok_or_else(|| {
            fmt(format!(
                "reference '{uri}' is not a same-document reference"
            ))
        })?;
        let target = by_id(id).ok_or_else(|| fmt(format!("no element with Id '{id}'")))?;
        let transforms: Vec<&str> = path(*r, &[(NS_DS, "Transforms")])
            .map(|t| {
                t.children()
                    .filter(|n| n.is_element())
                    .filter_map(|n| n.attribute("Algorithm"))
                    .collect()
            })
            .unwrap_or_default();
        let digest_alg = child(*r, NS_DS, "DigestMethod").and_then(|n| n.attribute("Algorithm"));
        if digest_alg != Some(ALG_SHA256) {
            return Err((
                "WEAK_ALGORITHM",
                format!("digest {} for '{id}'", digest_alg.unwrap_or("none")),
            ));
        }
        let stated = text_of(child(*r, NS_DS, "DigestValue"))
            .and_then(|t| b64_decode(&t))
            .ok_or_else(|| fmt(format!("no digest value for '{id}'")))?;
        let is_sp = r.attribute("Type") == Some(TYPE_SIGNED_PROPERTIES);
        let canonical = if is_sp {
            if transforms.iter().any(|t| *t != ALG_EXC_C14N) {
                return Err(fmt(format!("unexpected transform on '{id}'")));
            }
            sp_node = Some(target);
            exc_c14n(target, src, None)
        } else {
            if transforms != [ALG_ENVELOPED, ALG_EXC_C14N] {
                return Err(fmt(format!(
                    "the reference to '{id}' does not use the enveloped-signature and exclusive C14N transforms"
                )));
            }
            c.reference = id.to_owned();
            if !target.descendants().any(|d| d == sig) {
                return Err(fmt(format!("the signature is not inside '{id}'")));
            }
            exc_c14n(target, src, Some(sig.id()))
        };
        if Sha256::digest(&canonical).as_slice() != stated.as_slice() {
            return Err((
                "HASH_FAILURE",
                if is_sp {
                    format!(
                        "the SignedProperties of '{}' do not match their digest",
                        c.reference
                    )
                } else {
                    format!("'{id}' was modified after it was signed")
                },
            ));
        }
    }
    let sp = sp_node.ok_or_else(|| fmt("no SignedProperties reference".into()))?;
    let cert_text = text_of(path(
        sig,
        &[
            (NS_DS, "KeyInfo"),
            (NS_DS, "X509Data"),
            (NS_DS, "X509Certificate"),
        ],
    ))
    .ok_or_else(|| {
        (
            "NO_SIGNING_CERTIFICATE_FOUND",
            "no X509Certificate in KeyInfo".to_string(),
        )
    })?;
    let cert = b64_decode(&cert_text).ok_or_else(|| fmt("the certificate is not base64".into()))?;
    c.cert_der = Some(cert.clone());
    let value = text_of(child(sig, NS_DS, "SignatureValue"))
        .and_then(|t| b64_decode(&t))
        .ok_or_else(|| fmt("no signature value".into()))?;
    c.signature_value = value.clone();
    let ssp = child(sp, NS_XAD, "SignedSignatureProperties")
        .ok_or_else(|| fmt("no SignedSignatureProperties".into()))?;
    c.signing_time = text_of(child(ssp, NS_XAD, "SigningTime"));
    c.policy_oid = text_of(path(
        ssp,
        &[
            (NS_XAD, "SignaturePolicyIdentifier"),
            (NS_XAD, "SignaturePolicyId"),
            (NS_XAD, "SigPolicyId"),
            (NS_XAD, "Identifier"),
        ],
    ))
    .map(|s| s.trim().trim_start_matches("urn:oid:").to_owned());
    c.policy_hash = text_of(path(
        ssp,
        &[
            (NS_XAD, "SignaturePolicyIdentifier"),
            (NS_XAD, "SignaturePolicyId"),
            (NS_XAD, "SigPolicyHash"),
            (NS_XAD, "DigestValue"),
        ],
    ))
    .map(|s| s.trim().to_owned());
    c.claimed_role = text_of(path(
        ssp,
        &[
            (NS_XAD, "SignerRole"),
            (NS_XAD, "ClaimedRoles"),
            (NS_XAD, "ClaimedRole"),
        ],
    ));
    // The value over the canonical SignedInfo with the KeyInfo certificate.
    let signer = SignerCert::from_der(&cert).map_err(|e| fmt(e.to_string()))?;
    let der_value = match signer.ec_field_bytes {
        None => value,
        Some(n) => {
            if value.len() != 2 * n {
                return Err((
                    "SIG_CRYPTO_FAILURE",
                    "the ECDSA value is not r||s of the curve's size".into(),
                ));
            }
            let r = openssl::bn::BigNum::from_slice(&value[..n]);
            let s = openssl::bn::BigNum::from_slice(&value[n..]);
            match (r, s) {
                (Ok(r), Ok(s)) => openssl::ecdsa::EcdsaSig::from_private_components(r, s)
                    .and_then(|e| e.to_der())
                    .map_err(|e| ("SIG_CRYPTO_FAILURE", e.to_string()))?,
                _ => return Err(("SIG_CRYPTO_FAILURE", "bad ECDSA value".into())),
            }
        }
    };
    crate::crypto::verify_signature_value(&cert, &exc_c14n(si, src, None), &der_value).map_err(
        |_| {
            (
                "SIG_CRYPTO_FAILURE",
                format!(
                    "the signature value of '{}' does not verify with its certificate",
                    c.reference
                ),
            )
        },
    )?;
    let cert_digest = text_of(path(
        ssp,
        &[
            (NS_XAD, "SigningCertificate"),
            (NS_XAD, "Cert"),
            (NS_XAD, "CertDigest"),
            (NS_XAD, "DigestValue"),
        ],
    ))
    .and_then(|t| b64_decode(&t));
    if cert_digest.as_deref() != Some(Sha256::digest(&cert).as_slice()) {
        return Err(fmt(
            "the SigningCertificate does not match the KeyInfo certificate (SHA-256)".into(),
        ));
    }
    match &c.signing_time {
        Some(t) if t.trim().ends_with('Z') => {}
        Some(t) => return Err(fmt(format!("SigningTime '{t}' is not in UTC"))),
        None => return Err(fmt("no SigningTime".into())),
    }
    if c.claimed_role
        .as_deref()
        .is_none_or(|r| r.trim().is_empty())
    {
        return Err(fmt("no ClaimedRole".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PesSettings {
        PesSettings {
            policy_hash: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            ..Default::default()
        }
    }

    fn signed(flow: &[u8], stem: &str) -> Vec<u8> {
        let pem = std::fs::read(format!("certs-test/{stem}.cert.pem")).unwrap();
        let der = openssl::x509::X509::from_pem(&pem)
            .unwrap()
            .to_der()
            .unwrap();
        let key = openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(format!("certs-test/{stem}.key.pem")).unwrap(),
        )
        .unwrap();
        let cert = SignerCert::from_der(&der).unwrap();
        let prepared = prepare(flow, &cert, "2026-01-01T00:00:00Z", &settings()).unwrap();
        let values: Vec<Vec<u8>> = prepared
            .iter()
            .map(|p| {
                let v = crate::crypto::sign_with_key(&key, &p.signed_info).unwrap();
                xmldsig_value(&cert, &v).unwrap()
            })
            .collect();
        insert(flow, &prepared, &values).unwrap()
    }

    const FLOW: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<PES_Aller>\r\n <PES_DepenseAller>\r\n  <Bordereau Id=\"B1\">\r\n   <Piece><Nom V=\"\u{e9}t\u{e9} &amp; co\"/></Piece>\r\n  </Bordereau>\r\n  <Bordereau Id=\"B2\"><Piece/></Bordereau>\r\n </PES_DepenseAller>\r\n</PES_Aller>\r\n";

    fn latin1(s: &str) -> Vec<u8> {
        s.chars().map(|c| c as u32 as u8).collect()
    }

    #[test]
    fn a_signed_flow_checks_and_an_edit_is_found() {
        for stem in ["officer-l2-p256", "officer-l1-rsa2048"] {
            let flow = latin1(FLOW);
            let out = signed(&flow, stem);
            let checks = check_signatures(&out).unwrap();
            assert_eq!(checks.len(), 2);
            for (c, id) in checks.iter().zip(["B1", "B2"]) {
                assert_eq!(c.reference, id);
                assert!(c.defect.is_none(), "{stem} {id}: {:?}", c.defect);
                assert_eq!(c.claimed_role.as_deref(), Some("Ordonnateur"));
            }
            let edited = String::from_utf8_lossy(&out).replace("co\"", "cie\"");
            let checks = check_signatures(edited.as_bytes()).unwrap();
            assert_eq!(checks[0].defect.as_ref().map(|d| d.0), Some("HASH_FAILURE"));
            assert!(checks[1].defect.is_none());
        }
    }

    #[test]
    fn the_sha1_policy_is_refused() {
        let s = PesSettings {
            policy_oid: POLICY_SHA1_OID.into(),
            ..settings()
        };
        assert!(s.check().unwrap_err().to_string().contains("SHA-1"));
    }
}

/// What an officer reads of a bordereau before signing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BordereauSummary {
    pub id: String,
    /// `Exer` (the budget year).
    pub exercise: String,
    /// `PES_DepenseAller` (mandates) or `PES_RecetteAller` (titles).
    pub kind: String,
    pub pieces: usize,
    /// `MtBordHT` when the bordereau states it, else the sum of its lines' `MtHT`, in cents.
    pub total_cents: i64,
    /// The first beneficiaries (`Tiers/InfoTiers/Nom`), at most `max_names`.
    pub beneficiaries: Vec<String>,
    /// Whether it carries a signature.
    pub signed: bool,
}

/// Parses an amount `123.45` into cents.
fn cents(v: &str) -> Option<i64> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: i64 = int.parse().ok()?;
    let f: i64 = format!("{frac:0<2}").parse().ok()?;
    i.checked_mul(100)?.checked_add(if i < 0 { -f } else { f })
}

/// A readable summary of every bordereau of a PES flow, in document order.
pub fn summary(bytes: &[u8], max_names: usize) -> Result<Vec<BordereauSummary>, FormatError> {
    let flow = Flow::decode(bytes)?;
    let doc = flow.parse()?;
    let root = doc.root_element();
    let v = |n: roxmltree::Node<'_, '_>, local: &str| {
        n.descendants()
            .find(|d| d.is_element() && d.tag_name().name() == local)
            .and_then(|d| d.attribute("V"))
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for part in root.children().filter(|n| {
        n.is_element() && matches!(n.tag_name().name(), "PES_DepenseAller" | "PES_RecetteAller")
    }) {
        for b in part
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "Bordereau")
        {
            let pieces: Vec<_> = b
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "Piece")
                .collect();
            let stated = b
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "BlocBordereau")
                .and_then(|bb| v(bb, "MtBordHT"))
                .and_then(|m| cents(&m));
            let total_cents = stated.unwrap_or_else(|| {
                pieces
                    .iter()
                    .flat_map(|p| p.descendants())
                    .filter(|d| d.is_element() && d.tag_name().name() == "MtHT")
                    .filter_map(|d| d.attribute("V").and_then(cents))
                    .sum()
            });
            let mut beneficiaries: Vec<String> = Vec::new();
            for p in &pieces {
                for t in p
                    .descendants()
                    .filter(|d| d.is_element() && d.tag_name().name() == "InfoTiers")
                {
                    if let Some(n) = v(t, "Nom") {
                        if beneficiaries.len() < max_names && !beneficiaries.contains(&n) {
                            beneficiaries.push(n);
                        }
                    }
                }
            }
            out.push(BordereauSummary {
                id: b.attribute("Id").unwrap_or_default().to_owned(),
                exercise: v(b, "Exer").unwrap_or_default(),
                kind: part.tag_name().name().to_owned(),
                pieces: pieces.len(),
                total_cents,
                beneficiaries,
                signed: b.children().any(|c| {
                    c.is_element()
                        && c.tag_name().name() == "Signature"
                        && c.tag_name().namespace() == Some(NS_DS)
                }),
            });
        }
    }
    Ok(out)
}

/// A bordereau's summary with what its signature says, if it has one (see [`bordereaux`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BordereauStatus {
    pub summary: BordereauSummary,
    /// The subject of the certificate the signature carries.
    pub signer: Option<String>,
    pub claimed_role: Option<String>,
    pub signing_time: Option<String>,
    /// `SUB_INDICATION: message` of the first defect of the signature, if any.
    pub defect: Option<String>,
}

/// Every bordereau of a PES flow with its signature's signer, role, time and first defect
/// (its certificate path is not validated here), in document order.
pub fn bordereaux(bytes: &[u8], max_names: usize) -> Result<Vec<BordereauStatus>, FormatError> {
    let summaries = summary(bytes, max_names)?;
    let checks = if summaries.iter().any(|s| s.signed) {
        check_signatures(bytes)?
    } else {
        Vec::new()
    };
    Ok(summaries
        .into_iter()
        .map(|s| {
            let check = checks
                .iter()
                .find(|c| s.signed && !s.id.is_empty() && c.reference == s.id);
            BordereauStatus {
                signer: check
                    .and_then(|c| c.cert_der.as_deref())
                    .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
                    .map(|(_, x)| x.subject().to_string()),
                claimed_role: check.and_then(|c| c.claimed_role.clone()),
                signing_time: check.and_then(|c| c.signing_time.clone()),
                defect: check.and_then(|c| c.defect.as_ref().map(|(k, m)| format!("{k}: {m}"))),
                summary: s,
            }
        })
        .collect())
}
