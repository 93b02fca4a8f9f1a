//! What kind of file the user gave: certificate, CRL, PKCS#12, private or public key, CMS
//! signature or certificate request, recognised from PEM labels or by parsing DER. Used to
//! say "this is a PKCS#12 file, not a certificate" instead of a parser's internals when a file
//! of the wrong kind is given.

use openssl::pkey::PKey;

/// The kinds of files the command line reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Certificate,
    Crl,
    Pkcs12,
    PrivateKey,
    PublicKey,
    CertificateRequest,
    Cms,
}

impl FileKind {
    /// The kind with its article, for messages: "a certificate", "a PKCS#12 file", …
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Certificate => "a certificate",
            FileKind::Crl => "a CRL",
            FileKind::Pkcs12 => "a PKCS#12 file",
            FileKind::PrivateKey => "a private key",
            FileKind::PublicKey => "a public key",
            FileKind::CertificateRequest => "a certificate request",
            FileKind::Cms => "a CMS (PKCS#7) signature",
        }
    }
}

/// The kind of the first PEM block of `bytes`, when it is PEM.
fn pem_kind(bytes: &[u8]) -> Option<FileKind> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let label = &text[start..start + text[start..].find("-----")?];
    Some(match label {
        "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => FileKind::Certificate,
        "X509 CRL" => FileKind::Crl,
        "PUBLIC KEY" | "RSA PUBLIC KEY" => FileKind::PublicKey,
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => FileKind::CertificateRequest,
        "PKCS7" | "CMS" => FileKind::Cms,
        "PKCS12" => FileKind::Pkcs12,
        l if l.ends_with("PRIVATE KEY") => FileKind::PrivateKey,
        _ => return None,
    })
}

/// The DER encoding of the OID of CMS SignedData (1.2.840.113549.1.7.2).
const SIGNED_DATA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];

/// The kind of a DER file, by parsing it as each kind in turn.
fn der_kind(bytes: &[u8]) -> Option<FileKind> {
    if x509_parser::parse_x509_certificate(bytes).is_ok() {
        return Some(FileKind::Certificate);
    }
    if x509_parser::parse_x509_crl(bytes).is_ok() {
        return Some(FileKind::Crl);
    }
    if bytes.get(..24).is_some_and(|head| {
        head.windows(SIGNED_DATA_OID.len())
            .any(|w| w == SIGNED_DATA_OID)
    }) {
        return Some(FileKind::Cms);
    }
    if openssl::pkcs12::Pkcs12::from_der(bytes).is_ok() {
        return Some(FileKind::Pkcs12);
    }
    if openssl::x509::X509Req::from_der(bytes).is_ok() {
        return Some(FileKind::CertificateRequest);
    }
    if PKey::private_key_from_der(bytes).is_ok() {
        return Some(FileKind::PrivateKey);
    }
    if PKey::public_key_from_der(bytes).is_ok() {
        return Some(FileKind::PublicKey);
    }
    None
}

/// What `bytes` hold, when it is one of the kinds known here.
pub fn sniff(bytes: &[u8]) -> Option<FileKind> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        pem_kind(bytes)
    } else {
        der_kind(bytes)
    }
}

/// "this is a PKCS#12 file, not a certificate" when `bytes` are recognisably of another kind
/// than `wanted`; `None` when they are of that kind or of no kind known here.
pub fn wrong_kind(bytes: &[u8], wanted: FileKind) -> Option<String> {
    match sniff(bytes) {
        Some(found) if found != wanted => Some(format!(
            "this is {}, not {}",
            found.describe(),
            wanted.describe()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_file(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/certs-test/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn files_of_the_test_pki_are_recognised() {
        assert_eq!(
            sniff(&cert_file("root-ca.cert.pem")),
            Some(FileKind::Certificate)
        );
        assert_eq!(sniff(&cert_file("crls.pem")), Some(FileKind::Crl));
        assert_eq!(
            sniff(&cert_file("officer-l2-p256.p12")),
            Some(FileKind::Pkcs12)
        );
        assert_eq!(
            wrong_kind(&cert_file("officer-l2-p256.p12"), FileKind::Certificate).as_deref(),
            Some("this is a PKCS#12 file, not a certificate")
        );
        assert_eq!(
            wrong_kind(&cert_file("root-ca.cert.pem"), FileKind::Certificate),
            None
        );
        assert_eq!(wrong_kind(b"garbage", FileKind::Certificate), None);
    }
}
