//! Reading certificates and CRLs (PEM or DER) and summarising them for people.

use super::{malformed, malformed_by_openssl, CryptoError};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::x509::{X509Crl, X509NameRef, X509};

/// What a person needs to recognise a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Serial number in uppercase hex.
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    pub not_before: i64,
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    pub issuer: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub revoked: usize,
}

/// Seconds since the epoch of an ASN.1 time.
pub fn unix_of(t: &Asn1TimeRef) -> Result<i64, CryptoError> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86400 + i64::from(d.secs))
}

/// `CN=…, O=…` in the certificate's order.
pub fn name_string(n: &X509NameRef) -> String {
    n.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let val = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses one or more certificates given as PEM or DER.
pub fn certs_from(bytes: &[u8]) -> Result<Vec<X509>, CryptoError> {
    if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let v = X509::stack_from_pem(bytes)
            .map_err(|e| malformed_by_openssl("certificate (PEM)", &e))?;
        if v.is_empty() {
            return Err(malformed("certificate (PEM)", "no certificate found"));
        }
        Ok(v)
    } else {
        Ok(vec![X509::from_der(bytes).map_err(|e| {
            malformed_by_openssl("certificate (DER)", &e)
        })?])
    }
}

/// Parses one CRL given as PEM or DER (several PEM blocks give several CRLs).
pub fn crls_from(bytes: &[u8]) -> Result<Vec<X509Crl>, CryptoError> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = std::str::from_utf8(bytes).map_err(|e| malformed("CRL (PEM)", e))?;
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN X509 CRL-----") {
            let end_marker = "-----END X509 CRL-----";
            let end = rest[start..]
                .find(end_marker)
                .ok_or_else(|| malformed("CRL (PEM)", "unterminated PEM block"))?
                + start
                + end_marker.len();
            out.push(
                X509Crl::from_pem(&rest.as_bytes()[start..end])
                    .map_err(|e| malformed_by_openssl("CRL (PEM)", &e))?,
            );
            rest = &rest[end..];
        }
        if out.is_empty() {
            return Err(malformed("CRL (PEM)", "no CRL found"));
        }
        Ok(out)
    } else {
        Ok(vec![
            X509Crl::from_der(bytes).map_err(|e| malformed_by_openssl("CRL (DER)", &e))?
        ])
    }
}

pub fn summarize_cert(c: &X509) -> Result<CertSummary, CryptoError> {
    use sha2::Digest;
    let der = c.to_der()?;
    Ok(CertSummary {
        subject: name_string(c.subject_name()),
        issuer: name_string(c.issuer_name()),
        serial: c.serial_number().to_bn()?.to_hex_str()?.to_string(),
        sha256: hex::encode(sha2::Sha256::digest(&der)),
        not_before: unix_of(c.not_before())?,
        not_after: unix_of(c.not_after())?,
    })
}

pub fn summarize_crl(c: &X509Crl) -> Result<CrlSummary, CryptoError> {
    Ok(CrlSummary {
        issuer: name_string(c.issuer_name()),
        this_update: unix_of(c.last_update())?,
        next_update: c.next_update().map(unix_of).transpose()?,
        revoked: c.get_revoked().map(|r| r.len()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pem_and_der_and_refuses_garbage() {
        let pem = std::fs::read("certs-test/chain.pem").unwrap();
        let certs = certs_from(&pem).unwrap();
        assert_eq!(certs.len(), 2);
        let der = certs[0].to_der().unwrap();
        assert_eq!(certs_from(&der).unwrap().len(), 1);
        assert!(certs_from(b"garbage").is_err());
        assert!(
            certs_from(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        let s = summarize_cert(&certs[0]).unwrap();
        assert!(s.subject.contains("CN="), "{}", s.subject);
        assert_eq!(s.not_before, 1_546_300_800); // 2019-01-01
        let crls = crls_from(&std::fs::read("certs-test/crls.pem").unwrap()).unwrap();
        assert_eq!(crls.len(), 2);
        let revoked: usize = crls.iter().map(|c| summarize_crl(c).unwrap().revoked).sum();
        assert_eq!(revoked, 1);
        assert!(crls_from(b"nope").is_err());
    }
}
