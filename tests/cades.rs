//! CAdES B-B building and parsing, checked against OpenSSL's own CMS verifier.

use paraph::crypto::cades::{self, check_signer, SignerDefect};
use paraph::crypto::{
    assemble, build_signed_attributes, parse, sign_with_key, SigAlg, SignaturePolicy, SignerPart,
};
use sha2::Digest;
use std::path::Path;

const T: i64 = 1_780_000_000; // 2026-05-28

fn pem_cert_der(name: &str) -> Vec<u8> {
    let pem = std::fs::read(Path::new("certs-test").join(format!("{name}.cert.pem"))).unwrap();
    openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap()
}

fn key(name: &str) -> openssl::pkey::PKey<openssl::pkey::Private> {
    let pem = std::fs::read(Path::new("certs-test").join(format!("{name}.key.pem"))).unwrap();
    openssl::pkey::PKey::private_key_from_pem(&pem).unwrap()
}

fn crl_der(name: &str) -> Vec<u8> {
    let pem = std::fs::read(Path::new("certs-test").join(name)).unwrap();
    openssl::x509::X509Crl::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap()
}

fn sign(name: &str, data: &[u8], policy: Option<&SignaturePolicy>) -> SignerPart {
    let cert = pem_cert_der(name);
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    let attrs = build_signed_attributes(&digest, T, &cert, policy).unwrap();
    let sig = sign_with_key(&key(name), &attrs).unwrap();
    let alg = paraph::crypto::verify_signature_value(&cert, &attrs, &sig).unwrap();
    SignerPart {
        cert_der: cert,
        signed_attrs_der: attrs,
        signature: sig,
        alg,
    }
}

fn openssl_verify(dir: &Path, cms: &[u8], data: &[u8], policy_oid: &str) -> (bool, String) {
    std::fs::write(dir.join("sig.p7s"), cms).unwrap();
    std::fs::write(dir.join("data.bin"), data).unwrap();
    let mut anchors = std::fs::read("certs-test/root-ca.cert.pem").unwrap();
    anchors.extend(std::fs::read("certs-test/crls.pem").unwrap());
    std::fs::write(dir.join("anchors.pem"), anchors).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(dir.join("sig.p7s"))
        .arg("-content")
        .arg(dir.join("data.bin"))
        .arg("-CAfile")
        .arg(dir.join("anchors.pem"))
        .args([
            "-purpose",
            "any",
            "-crl_check_all",
            "-explicit_policy",
            "-policy",
            policy_oid,
            "-attime",
            &T.to_string(),
            "-out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cades_b_b_verifies_with_openssl_for_every_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"%PDF-1.7 mandat de paiement 2026-001";
    let policy = SignaturePolicy {
        oid: "1.2.250.1.131.1.5.18.21.1.7".into(),
        sha256: vec![0x11; 32],
        uri: "https://example.invalid/policy.pdf".into(),
    };
    for (name, level_oid, alg) in [
        (
            "officer-l1-rsa2048",
            "1.3.6.1.4.1.99999.1.1.1",
            SigAlg::RsaPkcs1Sha256,
        ),
        (
            "officer-l2-rsa3072",
            "1.3.6.1.4.1.99999.1.1.2",
            SigAlg::RsaPkcs1Sha256,
        ),
        (
            "officer-l2-p256",
            "1.3.6.1.4.1.99999.1.1.2",
            SigAlg::EcdsaSha256,
        ),
        (
            "officer-l3-p384",
            "1.3.6.1.4.1.99999.1.1.3",
            SigAlg::EcdsaSha256,
        ),
    ] {
        let part = sign(name, data, Some(&policy));
        assert_eq!(part.alg, alg);
        let chain = vec![part.cert_der.clone(), pem_cert_der("signing-ca")];
        let crls = vec![crl_der("root-ca.crl.pem"), crl_der("signing-ca.crl.pem")];
        let cms = assemble(std::slice::from_ref(&part), &chain, &crls).unwrap();
        let (ok, err) = openssl_verify(dir.path(), &cms, data, level_oid);
        assert!(ok, "{name}: {err}");
        // Altered content: refused by OpenSSL too.
        let (ok, _) = openssl_verify(dir.path(), &cms, b"%PDF-1.7 autre contenu", level_oid);
        assert!(!ok);
        // Our parser reads back exactly what we wrote.
        let parsed = parse(&cms).unwrap();
        assert_eq!(parsed.signers.len(), 1);
        assert_eq!(parsed.certs.len(), 2);
        assert_eq!(parsed.crls.len(), 2);
        let s = &parsed.signers[0];
        assert_eq!(s.signing_time, Some(T));
        assert_eq!(s.policy_oid.as_deref(), Some(policy.oid.as_str()));
        assert_eq!(s.cert_der.as_deref(), Some(part.cert_der.as_slice()));
        let digest: [u8; 32] = sha2::Sha256::digest(data).into();
        check_signer(s, &digest, &part.cert_der).unwrap();
        let other: [u8; 32] = sha2::Sha256::digest(b"x").into();
        assert_eq!(
            check_signer(s, &other, &part.cert_der),
            Err(SignerDefect::HashFailure)
        );
        // The signing-certificate-v2 binds the signer: another certificate does not match.
        let wrong = pem_cert_der("officer2-l2-p256");
        assert!(matches!(
            check_signer(s, &digest, &wrong),
            Err(SignerDefect::Format(_))
        ));
    }
}

#[test]
fn several_signers_in_one_signed_data_all_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"contrat de maintenance";
    let parts = vec![
        sign("officer-l2-p256", data, None),
        sign("officer-l1-rsa2048", data, None),
        sign("officer3-l3-p256", data, None),
    ];
    let mut certs: Vec<Vec<u8>> = parts.iter().map(|p| p.cert_der.clone()).collect();
    certs.push(pem_cert_der("signing-ca"));
    let crls = vec![crl_der("root-ca.crl.pem"), crl_der("signing-ca.crl.pem")];
    let cms = assemble(&parts, &certs, &crls).unwrap();
    // openssl checks every SignerInfo; the explicit policy set covers all three levels.
    std::fs::write(dir.path().join("sig.p7s"), &cms).unwrap();
    let parsed = parse(&cms).unwrap();
    assert_eq!(parsed.signers.len(), 3);
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    for s in &parsed.signers {
        check_signer(s, &digest, s.cert_der.as_ref().unwrap()).unwrap();
    }
    let (ok, err) = openssl_verify(dir.path(), &cms, data, "1.3.6.1.4.1.99999.1.1.2");
    // -policy with a single OID: officer-l1 and l3 carry other OIDs, so this must fail…
    assert!(!ok, "{err}");
    // …and succeed once every signer's policy is acceptable.
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(dir.path().join("sig.p7s"))
        .arg("-content")
        .arg(dir.path().join("data.bin"))
        .arg("-CAfile")
        .arg(dir.path().join("anchors.pem"))
        .args([
            "-purpose",
            "any",
            "-crl_check_all",
            "-explicit_policy",
            "-policy",
            "1.3.6.1.4.1.99999.1.1.1",
            "-policy",
            "1.3.6.1.4.1.99999.1.1.2",
            "-policy",
            "1.3.6.1.4.1.99999.1.1.3",
            "-attime",
            &T.to_string(),
            "-out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tampering_is_detected() {
    let data = b"mandat";
    let part = sign("officer-l2-p256", data, None);
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    // A signature value over altered attributes.
    let mut attrs = part.signed_attrs_der.clone();
    let n = attrs.len();
    attrs[n - 1] ^= 1;
    assert!(
        paraph::crypto::verify_signature_value(&part.cert_der, &attrs, &part.signature).is_err()
    );
    // A value replayed onto another preparation (other content, same signer).
    let other = sign("officer-l2-p256", b"autre mandat", None);
    assert!(paraph::crypto::verify_signature_value(
        &part.cert_der,
        &other.signed_attrs_der,
        &part.signature
    )
    .is_err());
    // Flipped byte in the assembled signature value.
    let mut p2 = part.clone();
    let last = p2.signature.len() - 3;
    p2.signature[last] ^= 0x40;
    let cms = assemble(&[p2], std::slice::from_ref(&part.cert_der), &[]).unwrap();
    let s = &parse(&cms).unwrap().signers[0];
    assert_eq!(
        check_signer(s, &digest, &part.cert_der),
        Err(SignerDefect::SigCrypto(
            "the signature value does not verify".into()
        ))
    );
    // Garbage is a clean error.
    assert!(parse(b"not a cms").is_err());
    assert!(parse(&[0x30, 0x03, 0x06, 0x01, 0x00]).is_err());
    assert!(build_signed_attributes(&digest, T, b"garbage", None).is_err());
    let _ = cades::ID_DATA;
}
