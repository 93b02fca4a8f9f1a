//! The server's CPU cost of a signature: `CompleteSignature` (verify the value, validate the
//! chain with CRLs under the RGS profile, assemble the CMS) and `ValidateSignature` (parse,
//! check attributes and value, validate the chain). Run: `cargo bench --bench signature`.

use criterion::{criterion_group, criterion_main, Criterion};
use paraph::crypto::{self, SignerPart};
use paraph::validation::{validate_chain, Der, TrustSettings};
use sha2::Digest;

const AT: i64 = 1_780_000_000;

fn pem_der(file: &str) -> Vec<u8> {
    let pem = std::fs::read(format!("certs-test/{file}")).unwrap();
    openssl::x509::X509::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap()
}

fn trust() -> TrustSettings {
    let crls =
        paraph::crypto::certs::crls_from(&std::fs::read("certs-test/crls.pem").unwrap()).unwrap();
    TrustSettings {
        anchors: vec![Der(pem_der("root-ca.cert.pem"))],
        intermediates: vec![Der(pem_der("signing-ca.cert.pem"))],
        crls: crls.iter().map(|c| Der(c.to_der().unwrap())).collect(),
        policy_levels: [
            ("1.3.6.1.4.1.99999.1.1.1", 1),
            ("1.3.6.1.4.1.99999.1.1.2", 2),
            ("1.3.6.1.4.1.99999.1.1.3", 3),
        ]
        .iter()
        .map(|(o, l)| (o.to_string(), *l))
        .collect(),
        signature_policy: None,
        generation: 1,
    }
}

/// A PES V2 flow of 4 bordereaux holding `pieces` pieces in all (ISO-8859-1).
fn pes_flow(pieces: usize) -> Vec<u8> {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<PES_Aller><EnTetePES><IdColl V=\"1\"/></EnTetePES><PES_DepenseAller>\n",
    );
    for b in 0..4 {
        x.push_str(&format!(
            "<Bordereau Id=\"B{b}\"><BlocBordereau><Exer V=\"2026\"/></BlocBordereau>\n"
        ));
        for p in 0..pieces / 4 {
            x.push_str(&format!(
                "<Piece><BlocPiece><InfoPce><IdPce V=\"{p}\"/><Obj V=\"Fournitures \u{e9}cole\"/></InfoPce></BlocPiece><LigneDePiece><BlocLignePiece><InfoLignePiece><MtHT V=\"120.50\"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V=\"B\u{e9}r\u{e9}nice Lef\u{e8}vre\"/></InfoTiers></Tiers></LigneDePiece></Piece>\n"
            ));
        }
        x.push_str("</Bordereau>\n");
    }
    x.push_str("</PES_DepenseAller></PES_Aller>\n");
    x.chars().map(|c| c as u32 as u8).collect()
}

/// The server's CPU for a PES of 500 pieces: PrepareSignature's format work (parse, exclusive
/// C14N and digest of every bordereau, XAdES properties, canonical SignedInfo) and
/// CompleteSignature's (verify every value, insert the signatures).
fn bench_pes(c: &mut Criterion) {
    use paraph::formats::{xades_pes::PesSettings, Format, PrepareInput, XadesPes};
    let flow = pes_flow(500);
    let pes = PesSettings {
        policy_hash: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ..Default::default()
    };
    for (label, stem) in [
        ("ecdsa-p256", "officer-l3-p256"),
        ("rsa-2048", "officer-l3-rsa2048"),
    ] {
        let cert = pem_der(&format!("{stem}.cert.pem"));
        let key = openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(format!("certs-test/{stem}.key.pem")).unwrap(),
        )
        .unwrap();
        let input = PrepareInput {
            content: &flow,
            content_sha256: sha2::Sha256::digest(&flow).into(),
            signing_time: AT,
            cert_der: &cert,
            cades_policy: None,
            pes: &pes,
            pades: &Default::default(),
            reason: String::new(),
        };
        let prepared = XadesPes.prepare(&input).unwrap();
        let values: Vec<Vec<u8>> = prepared
            .items
            .iter()
            .map(|i| crypto::sign_with_key(&key, &i.data).unwrap())
            .collect();
        c.bench_function(
            &format!("pes/prepare/500 pieces, {} bytes/{label}", flow.len()),
            |b| b.iter(|| XadesPes.prepare(&input).unwrap()),
        );
        c.bench_function(&format!("pes/complete/500 pieces/{label}"), |b| {
            b.iter(|| XadesPes.complete(&flow, &cert, &prepared, &values).unwrap())
        });
    }
}

fn bench(c: &mut Criterion) {
    bench_pes(c);
    let trust = trust();
    let data = vec![0x42u8; 64 * 1024];
    let digest: [u8; 32] = sha2::Sha256::digest(&data).into();
    for (label, stem) in [
        ("ecdsa-p256", "officer-l3-p256"),
        ("rsa-2048", "officer-l3-rsa2048"),
    ] {
        let cert = pem_der(&format!("{stem}.cert.pem"));
        let key = openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(format!("certs-test/{stem}.key.pem")).unwrap(),
        )
        .unwrap();
        let attrs = crypto::build_signed_attributes(&digest, AT, &cert, None).unwrap();
        let sig = crypto::sign_with_key(&key, &attrs).unwrap();
        let crls: Vec<Vec<u8>> = trust.crls.iter().map(|d| d.0.clone()).collect();

        c.bench_function(&format!("prepare/build_signed_attributes/{label}"), |b| {
            b.iter(|| crypto::build_signed_attributes(&digest, AT, &cert, None).unwrap())
        });
        c.bench_function(&format!("complete/verify_value/{label}"), |b| {
            b.iter(|| crypto::verify_signature_value(&cert, &attrs, &sig).unwrap())
        });
        c.bench_function(&format!("complete/validate_chain/{label}"), |b| {
            b.iter(|| validate_chain(&trust, &cert, &[], &[], AT, Some(3)).unwrap())
        });
        let ok = validate_chain(&trust, &cert, &[], &[], AT, Some(3)).unwrap();
        let part = SignerPart {
            cert_der: cert.clone(),
            signed_attrs_der: attrs.clone(),
            signature: sig.clone(),
            alg: crypto::verify_signature_value(&cert, &attrs, &sig).unwrap(),
        };
        c.bench_function(&format!("complete/assemble/{label}"), |b| {
            b.iter(|| crypto::assemble(std::slice::from_ref(&part), &ok.chain, &crls).unwrap())
        });
        c.bench_function(&format!("complete/total/{label}"), |b| {
            b.iter(|| {
                let alg = crypto::verify_signature_value(&cert, &attrs, &sig).unwrap();
                let ok = validate_chain(&trust, &cert, &[], &[], AT, Some(3)).unwrap();
                let part = SignerPart {
                    cert_der: cert.clone(),
                    signed_attrs_der: attrs.clone(),
                    signature: sig.clone(),
                    alg,
                };
                crypto::assemble(std::slice::from_ref(&part), &ok.chain, &crls).unwrap()
            })
        });
        let cms = crypto::assemble(std::slice::from_ref(&part), &ok.chain, &crls).unwrap();
        c.bench_function(&format!("validate_signature/parse/{label}"), |b| {
            b.iter(|| crypto::parse(&cms).unwrap())
        });
        let parsed = crypto::parse(&cms).unwrap();
        c.bench_function(&format!("validate_signature/check_signer/{label}"), |b| {
            b.iter(|| {
                paraph::crypto::cades::check_signer(
                    &parsed.signers[0],
                    paraph::crypto::cades::Content::Data(&data),
                    &cert,
                )
                .unwrap()
            })
        });
        c.bench_function(
            &format!("validate_signature/validate_chain_with_carried_crls/{label}"),
            |b| {
                b.iter(|| {
                    validate_chain(&trust, &cert, &parsed.certs, &parsed.crls, AT, None).unwrap()
                })
            },
        );
        c.bench_function(&format!("validate_signature/{label}"), |b| {
            b.iter(|| {
                let r = paraph::validation::validate_cms(&trust, &data, &cms, AT, &[], None);
                assert_eq!(r.indication, paraph::validation::Indication::TotalPassed);
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
