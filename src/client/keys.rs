//! The one signing interface of `paraph sign`: "give me the certificate chain, sign these bytes
//! with this mechanism". Two implementations: a PKCS#12 file ([`super::signing::Signer`]) and a
//! PKCS#11 token ([`super::pkcs11::TokenKey`]). Every format (CAdES, PES/XAdES, PAdES) signs
//! through it: the server prepares the bytes, the key signs them with SHA-256.
//!
//! Signature values leave a key in the form the server's CompleteSignature takes: RSA as the
//! plain signature block, ECDSA as the DER `Ecdsa-Sig-Value` (the CMS form; the server turns it
//! into r||s itself where XMLDSig wants that). A token returns ECDSA as r||s, so
//! [`ecdsa_raw_to_der`] converts it.

use super::error::CliError;
use sha2::Digest as _;

/// What kind of key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    /// An elliptic-curve key, with the byte length of its field (32 for P-256, 48 for P-384).
    Ec(usize),
}

impl KeyKind {
    /// `RSA` or `EC P-256` (for listings).
    pub fn describe(self, bits: Option<usize>) -> String {
        match (self, bits) {
            (KeyKind::Rsa, Some(b)) => format!("RSA {b}"),
            (KeyKind::Rsa, None) => "RSA".into(),
            (KeyKind::Ec(32), _) => "EC P-256".into(),
            (KeyKind::Ec(48), _) => "EC P-384".into(),
            (KeyKind::Ec(66), _) => "EC P-521".into(),
            (KeyKind::Ec(n), _) => format!("EC ({} bits)", n * 8),
        }
    }
}

/// A signature mechanism, always over SHA-256 of the bytes given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
    /// ECDSA with SHA-256 (value returned as DER).
    EcdsaSha256,
}

impl Mechanism {
    /// The mechanism for the algorithm a preparation names, checked against the key's kind.
    pub fn for_server(algorithm: &str, kind: KeyKind) -> Result<Mechanism, CliError> {
        let (m, fits) = match algorithm {
            "RSA_PKCS1_SHA256" => (Mechanism::RsaPkcs1Sha256, kind == KeyKind::Rsa),
            "RSA_PSS_SHA256" => (Mechanism::RsaPssSha256, kind == KeyKind::Rsa),
            "ECDSA_SHA256" => (Mechanism::EcdsaSha256, matches!(kind, KeyKind::Ec(_))),
            other => {
                return Err(CliError::Local(format!(
                    "the server asks for signature algorithm {other:?}, which this client does \
                     not support"
                )))
            }
        };
        if !fits {
            return Err(CliError::Local(format!(
                "the server asks for {algorithm} but the key is not of that type"
            )));
        }
        Ok(m)
    }
}

/// A signing key with its certificate chain.
pub trait SigningKey: Sync {
    /// DER certificates, the signer's first.
    fn chain(&self) -> &[Vec<u8>];
    /// The kind of the key.
    fn kind(&self) -> KeyKind;
    /// Signs SHA-256 of `data` with `mechanism` (ECDSA values as DER).
    fn sign(&self, mechanism: Mechanism, data: &[u8]) -> Result<Vec<u8>, CliError>;
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// The DER DigestInfo of a SHA-256 digest (RFC 8017 9.2 note 1): what RSA PKCS#1 v1.5 signs
/// when the token is given the raw mechanism (CKM_RSA_PKCS), as most cards support only that.
pub fn sha256_digest_info(digest: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut v = PREFIX.to_vec();
    v.extend_from_slice(digest);
    v
}

/// An ECDSA value as a token returns it (r||s, each half the same length) to the DER
/// `Ecdsa-Sig-Value` SEQUENCE { r INTEGER, s INTEGER } that CMS carries.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, CliError> {
    if raw.is_empty() || raw.len() % 2 != 0 || raw.len() > 2 * 66 {
        return Err(CliError::Local(format!(
            "the token returned an ECDSA signature of {} bytes, not r||s",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let bad = |e: openssl::error::ErrorStack| {
        CliError::Local(format!(
            "ECDSA signature: {}",
            crate::crypto::openssl_reason(&e)
        ))
    };
    let r = openssl::bn::BigNum::from_slice(r).map_err(bad)?;
    let s = openssl::bn::BigNum::from_slice(s).map_err(bad)?;
    openssl::ecdsa::EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.to_der())
        .map_err(bad)
}

/// The DER `Ecdsa-Sig-Value` to r||s with each half `field_len` bytes (the XMLDSig form).
pub fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>, CliError> {
    let bad = |e: openssl::error::ErrorStack| {
        CliError::Local(format!(
            "ECDSA signature: {}",
            crate::crypto::openssl_reason(&e)
        ))
    };
    let sig = openssl::ecdsa::EcdsaSig::from_der(der).map_err(bad)?;
    let len = i32::try_from(field_len).map_err(|_| CliError::Local("field length".into()))?;
    let mut out = sig.r().to_vec_padded(len).map_err(bad)?;
    out.extend(sig.s().to_vec_padded(len).map_err(bad)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::EcKey;
    use openssl::pkey::PKey;

    fn key(file: &str) -> PKey<openssl::pkey::Private> {
        PKey::private_key_from_pem(&std::fs::read(file).unwrap()).unwrap()
    }

    /// OpenSSL's own ECDSA signatures survive DER -> r||s -> DER byte for byte, and a value
    /// built from r||s (what a token returns) verifies with OpenSSL.
    #[test]
    fn ecdsa_raw_and_der_convert_both_ways_against_openssl() {
        for (file, n) in [
            ("certs-test/officer-l2-p256.key.pem", 32),
            ("certs-test/officer-l3-p384.key.pem", 48),
        ] {
            let k = key(file);
            for i in 0..40u32 {
                let data = format!("message {i}");
                let der = crate::crypto::sign_with_key(&k, data.as_bytes()).unwrap();
                let raw = ecdsa_der_to_raw(&der, n).unwrap();
                assert_eq!(raw.len(), 2 * n);
                assert_eq!(ecdsa_raw_to_der(&raw).unwrap(), der, "{file} #{i}");
                // A token-style value: r||s from a raw ECDSA over the digest, converted.
                let ec: EcKey<_> = k.ec_key().unwrap();
                let sig = openssl::ecdsa::EcdsaSig::sign(&sha256(data.as_bytes()), &ec).unwrap();
                let mut token = sig.r().to_vec_padded(n as i32).unwrap();
                token.extend(sig.s().to_vec_padded(n as i32).unwrap());
                let converted = ecdsa_raw_to_der(&token).unwrap();
                let mut v =
                    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &k)
                        .unwrap();
                v.update(data.as_bytes()).unwrap();
                assert!(v.verify(&converted).unwrap(), "{file} #{i}");
                // A flipped bit in s no longer verifies: the conversion keeps every byte.
                let mut broken = token.clone();
                broken[2 * n - 1] ^= 1;
                let mut v =
                    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &k)
                        .unwrap();
                v.update(data.as_bytes()).unwrap();
                assert!(!v
                    .verify(&ecdsa_raw_to_der(&broken).unwrap())
                    .unwrap_or(false));
            }
        }
        assert!(ecdsa_raw_to_der(&[]).is_err());
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ecdsa_der_to_raw(b"garbage", 32).is_err());
    }

    /// The DigestInfo prefix is the one OpenSSL signs under PKCS#1 v1.5 with SHA-256: a raw
    /// RSA signature of it verifies as sha256WithRSAEncryption.
    #[test]
    fn the_sha256_digest_info_is_what_openssl_signs() {
        let k = key("certs-test/officer-l3-rsa2048.key.pem");
        let rsa = k.rsa().unwrap();
        let data = b"the signed attributes";
        let info = sha256_digest_info(&sha256(data));
        let mut raw = vec![0u8; rsa.size() as usize];
        let n = rsa
            .private_encrypt(&info, &mut raw, openssl::rsa::Padding::PKCS1)
            .unwrap();
        raw.truncate(n);
        assert_eq!(raw, crate::crypto::sign_with_key(&k, data).unwrap());
    }

    #[test]
    fn the_server_algorithm_must_fit_the_key() {
        assert_eq!(
            Mechanism::for_server("ECDSA_SHA256", KeyKind::Ec(32)).unwrap(),
            Mechanism::EcdsaSha256
        );
        assert!(Mechanism::for_server("ECDSA_SHA256", KeyKind::Rsa).is_err());
        assert!(Mechanism::for_server("RSA_PKCS1_SHA256", KeyKind::Ec(48)).is_err());
        assert!(Mechanism::for_server("DSA_SHA1", KeyKind::Rsa).is_err());
    }
}
