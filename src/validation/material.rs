//! Decoded trust material, kept between validations: certificates and CRLs by the SHA-256 of
//! their exact DER. Decoding a certificate or a CRL through OpenSSL 3 costs far more than
//! checking a signature, and a tenant validates against the same few anchors, intermediates
//! and CRLs again and again.
//!
//! Only decodings are kept here — the same bytes always decode to the same object. (What a
//! path validation concluded is remembered elsewhere, by `chain`, under rules of its own.) A
//! different byte is a different entry; each map is emptied when full.

use crate::pki::Crl;
use openssl::x509::X509;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept per map before it is emptied (a miss costs one decoding).
const CAPACITY: usize = 1024;

/// A CRL with what choosing among CRLs needs, read once.
#[derive(Clone, Debug)]
pub struct CrlInfo {
    pub crl: Crl,
    pub sha256: [u8; 32],
    /// Issuer name (DER), issuing distribution point extension (DER, empty when absent) and
    /// whether it is a delta CRL: the CRL's scope.
    pub issuer: Vec<u8>,
    pub idp: Vec<u8>,
    pub delta: bool,
    pub this_update: i64,
    /// `None` when the CRL has no nextUpdate.
    pub next_update: Option<i64>,
}

/// A certificate with its identity and validity period, read once.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub cert: X509,
    pub sha256: [u8; 32],
    /// notBefore and notAfter, `None` when they cannot be read here (OpenSSL still judges
    /// them; only the verdict cache needs them).
    pub validity: Option<(i64, i64)>,
}

static CERTS: Mutex<Option<HashMap<[u8; 32], CertInfo>>> = Mutex::new(None);
static CRLS: Mutex<Option<HashMap<[u8; 32], CrlInfo>>> = Mutex::new(None);

fn cached<T: Clone>(
    map: &Mutex<Option<HashMap<[u8; 32], T>>>,
    id: [u8; 32],
    decode: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    if let Some(v) = map
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&id).cloned()))
    {
        return Ok(v);
    }
    let v = decode()?;
    if let Ok(mut m) = map.lock() {
        let m = m.get_or_insert_with(HashMap::new);
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(id, v.clone());
    }
    Ok(v)
}

/// The certificate of `der`, decoded once.
pub fn certificate(der: &[u8]) -> Result<X509, String> {
    certificate_info(der).map(|c| c.cert)
}

/// The certificate of `der` with its SHA-256 and validity period, decoded once.
pub fn certificate_info(der: &[u8]) -> Result<CertInfo, String> {
    let id: [u8; 32] = Sha256::digest(der).into();
    cached(&CERTS, id, || {
        let cert = X509::from_der(der).map_err(|e| crate::crypto::openssl_reason(&e))?;
        let validity = x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| {
            (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            )
        });
        Ok(CertInfo {
            cert,
            sha256: id,
            validity,
        })
    })
}

/// The CRL of `der`, decoded once, with its scope and thisUpdate.
pub fn crl(der: &[u8]) -> Result<CrlInfo, String> {
    let id: [u8; 32] = Sha256::digest(der).into();
    cached(&CRLS, id, || {
        let crl = Crl::from_der(der).map_err(|e| e.to_string())?;
        let (_, parsed) = x509_parser::parse_x509_crl(crl.der())
            .map_err(|e| format!("not a well-formed CRL: {e}"))?;
        let mut idp = Vec::new();
        let mut delta = false;
        for ext in parsed.extensions() {
            match ext.oid.to_id_string().as_str() {
                "2.5.29.28" => idp = ext.value.to_vec(),
                "2.5.29.27" => delta = true,
                _ => {}
            }
        }
        Ok(CrlInfo {
            issuer: parsed.issuer().as_raw().to_vec(),
            idp,
            delta,
            this_update: parsed.last_update().timestamp(),
            next_update: parsed.next_update().map(|t| t.timestamp()),
            sha256: id,
            crl,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_give_the_same_decoding_and_other_bytes_another() {
        let pem = std::fs::read("certs-test/root-ca.cert.pem").expect("root");
        let der = X509::from_pem(&pem).expect("PEM").to_der().expect("DER");
        let a = certificate(&der).expect("decode");
        let b = certificate(&der).expect("decode again");
        assert_eq!(a.to_der().expect("DER"), b.to_der().expect("DER"));
        let mut other = der.clone();
        let n = other.len();
        other[n - 1] ^= 1;
        // A flipped byte of the signature still decodes, but as another certificate.
        let c = certificate(&other).expect("decode");
        assert_ne!(c.to_der().expect("DER"), der);
        assert!(certificate(b"garbage").is_err());
        assert!(crl(b"garbage").is_err());
        let crl_pem = std::fs::read("certs-test/signing-ca.crl.pem").expect("CRL");
        let crl_der = openssl::x509::X509Crl::from_pem(&crl_pem)
            .expect("PEM")
            .to_der()
            .expect("DER");
        let info = crl(&crl_der).expect("CRL");
        assert!(!info.delta);
        assert_eq!(info.crl.der(), crl_der.as_slice());
    }
}
