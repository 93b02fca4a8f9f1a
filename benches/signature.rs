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
        owner: String::new(),
    }
}

/// A PES V2 flow of 4 bordereaux holding `pieces` pieces in all (ISO-8859-1), each piece with
/// `lines` lines of mandate (one line is about 140 bytes, the rest of a piece about 290).
fn pes_flow(pieces: usize, lines: usize) -> Vec<u8> {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<PES_Aller><EnTetePES><IdColl V=\"1\"/></EnTetePES><PES_DepenseAller>\n",
    );
    for b in 0..4 {
        x.push_str(&format!(
            "<Bordereau Id=\"B{b}\"><BlocBordereau><Exer V=\"2026\"/></BlocBordereau>\n"
        ));
        for p in 0..pieces / 4 {
            x.push_str(&format!(
                "<Piece><BlocPiece><InfoPce><IdPce V=\"{p}\"/><Obj V=\"Fournitures \u{e9}cole\"/></InfoPce></BlocPiece><LigneDePiece><BlocLignePiece><InfoLignePiece><MtHT V=\"120.50\"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V=\"B\u{e9}r\u{e9}nice Lef\u{e8}vre\"/></InfoTiers></Tiers></LigneDePiece>"
            ));
            for l in 1..lines {
                x.push_str(&format!(
                    "<LigneDePiece><BlocLignePiece><InfoLignePiece><IdLigne V=\"{l}\"/><Nature V=\"6067\"/><Fonction V=\"212\"/><MtHT V=\"{l}.50\"/><TvaIntraCom V=\"0\"/></InfoLignePiece></BlocLignePiece></LigneDePiece>"
                ));
            }
            x.push_str("</Piece>\n");
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
    // The default policy settings (the Helios policy hash shipped by default).
    let pes = PesSettings::default();
    let small = pes_flow(500, 1);
    // A few MB: 500 pieces of 40 lines each.
    let large = pes_flow(500, 40);
    for (label, stem, flow) in [
        ("ecdsa-p256", "officer-l3-p256", &small),
        ("rsa-2048", "officer-l3-rsa2048", &small),
        ("ecdsa-p256", "officer-l3-p256", &large),
        ("rsa-2048", "officer-l3-rsa2048", &large),
    ] {
        let cert = pem_der(&format!("{stem}.cert.pem"));
        let key = openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(format!("certs-test/{stem}.key.pem")).unwrap(),
        )
        .unwrap();
        let input = PrepareInput {
            content: flow,
            content_sha256: sha2::Sha256::digest(flow).into(),
            signing_time: AT,
            cert_der: &cert,
            cades_policy: None,
            pes: &pes,
            pades: &Default::default(),
            reason: String::new(),
            level: None,
            pdf: &Default::default(),
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
        c.bench_function(
            &format!("pes/complete/500 pieces, {} bytes/{label}", flow.len()),
            |b| b.iter(|| XadesPes.complete(flow, &cert, &prepared, &values).unwrap()),
        );
    }
}

/// A PDF of `pages` pages of about `page_bytes` bytes of content each (cross-reference table).
fn pdf(pages: usize, page_bytes: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    let mut obj = |out: &mut Vec<u8>, body: &[u8]| {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    obj(&mut out, b"<< /Type /Catalog /Pages 2 0 R >>");
    obj(
        &mut out,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .as_bytes(),
    );
    obj(
        &mut out,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    );
    let line = "BT /F1 9 Tf 40 800 Td (Article 12 - Le prestataire s'engage a maintenir les feux.) Tj ET\n";
    let text = line.repeat(page_bytes / line.len());
    for i in 0..pages {
        obj(
            &mut out,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .as_bytes(),
        );
        obj(
            &mut out,
            format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()).as_bytes(),
        );
    }
    let xref_at = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", offsets.len() + 1).as_bytes(),
    );
    for o in &offsets {
        out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// The server's CPU for a PAdES signature on a 50-page, 5 MB PDF: PrepareSignature's format
/// work (parse, build the incremental update, digest the byte range, signed attributes) and
/// CompleteSignature's (verify the value, embed the CMS).
fn bench_pades(c: &mut Criterion) {
    use paraph::formats::{pades::PadesSettings, Format, Pades, PrepareInput};
    let doc = pdf(50, 100 * 1024);
    let cert = pem_der("officer-l3-p256.cert.pem");
    let key = openssl::pkey::PKey::private_key_from_pem(
        &std::fs::read("certs-test/officer-l3-p256.key.pem").unwrap(),
    )
    .unwrap();
    let pades = PadesSettings::default();
    let pes = Default::default();
    let input = PrepareInput {
        content: &doc,
        content_sha256: sha2::Sha256::digest(&doc).into(),
        signing_time: AT,
        cert_der: &cert,
        cades_policy: None,
        pes: &pes,
        pades: &pades,
        reason: "Signature".into(),
        level: Some(3),
        pdf: &Default::default(),
    };
    let prepared = Pades.prepare(&input).unwrap();
    let value = crypto::sign_with_key(&key, &prepared.items[0].data).unwrap();
    let cms = vec![0x30u8; 6000];
    c.bench_function(
        &format!("pades/prepare/50 pages, {} bytes", doc.len()),
        |b| b.iter(|| Pades.prepare(&input).unwrap()),
    );
    c.bench_function(
        &format!("pades/complete/50 pages, {} bytes", doc.len()),
        |b| {
            b.iter(|| {
                Pades
                    .complete(&doc, &cert, &prepared, std::slice::from_ref(&value))
                    .unwrap();
                Pades.embed_cms(&doc, &prepared, &cms).unwrap()
            })
        },
    );
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
        c.bench_function(&format!("complete/validate_chain/first/{label}"), |b| {
            b.iter(|| {
                paraph::validation::forget_remembered_passes();
                validate_chain(&trust, &cert, &[], &[], AT, Some(3)).unwrap()
            })
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
        // The same, with the remembered pass forgotten before each call: a chain's first
        // validation (decoded material is still kept).
        c.bench_function(&format!("validate_signature/first/{label}"), |b| {
            b.iter(|| {
                paraph::validation::forget_remembered_passes();
                let r = paraph::validation::validate_cms(&trust, &data, &cms, AT, &[], None);
                assert_eq!(r.indication, paraph::validation::Indication::TotalPassed);
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench, bench_pades
}
criterion_main!(benches);
