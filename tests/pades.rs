//! PDF documents signed in PAdES baseline B-B through a real server: the format chosen at
//! submission and every refusal (not parsable, encrypted, certified DocMDP P=1), two officers
//! signing with `paraph sign` and the tenant seal, each as an incremental update that keeps
//! every earlier byte, a preparation bound to the revision it was computed on, and the result
//! checked by pyHanko and poppler's pdfsig when they are installed. The PDFs are built here.

mod common;
use common::cli::Cli;
use common::*;
use paraph::proto::{self, StepKind as K, StepMode as M};
use std::path::Path;
use std::process::Command;
use tonic::Code;

/// A PDF of `pages` pages, each with a line of text; `xref_stream` writes its cross-reference
/// section as a stream (PDF 1.5) instead of a table; `extra_catalog` goes into the catalog and
/// `extra_trailer` into the trailer, `extra_objects` are appended as numbered objects after the
/// pages.
fn pdf(
    pages: usize,
    xref_stream: bool,
    extra_catalog: &str,
    extra_trailer: &str,
    extra_objects: &[&str],
) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut obj = |out: &mut Vec<u8>, n: usize, body: &str| {
        offsets.push((n, out.len()));
        out.extend_from_slice(format!("{n} 0 obj\n{body}\nendobj\n").as_bytes());
    };
    // 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    obj(
        &mut out,
        1,
        &format!("<< /Type /Catalog /Pages 2 0 R {extra_catalog} >>"),
    );
    obj(
        &mut out,
        2,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        ),
    );
    obj(
        &mut out,
        3,
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    );
    for i in 0..pages {
        let p = 4 + 2 * i;
        obj(
            &mut out,
            p,
            &format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                p + 1
            ),
        );
        let text = format!(
            "BT /F1 14 Tf 72 760 Td (Contrat de service - page {}) Tj ET",
            i + 1
        );
        obj(
            &mut out,
            p + 1,
            &format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        );
    }
    let mut next = 4 + 2 * pages;
    for body in extra_objects {
        obj(&mut out, next, body);
        next += 1;
    }
    let size = next;
    let xref_at = out.len();
    if xref_stream {
        let mut data = vec![0u8, 0, 0, 0, 0, 0xff, 0xff];
        let mut sorted = offsets.clone();
        sorted.sort();
        for (_, off) in &sorted {
            data.push(1);
            data.extend_from_slice(&(*off as u32).to_be_bytes());
            data.extend_from_slice(&[0, 0]);
        }
        // The stream's own entry.
        data.push(1);
        data.extend_from_slice(&(xref_at as u32).to_be_bytes());
        data.extend_from_slice(&[0, 0]);
        out.extend_from_slice(
            format!(
                "{size} 0 obj\n<< /Type /XRef /Size {} /W [1 4 2] /Root 1 0 R /Length {} {extra_trailer} >>\nstream\n",
                size + 1,
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    } else {
        out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f\r\n").as_bytes());
        let mut sorted = offsets.clone();
        sorted.sort();
        for (_, off) in &sorted {
            out.extend_from_slice(format!("{off:010} 00000 n\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {size} /Root 1 0 R {extra_trailer} >>\n").as_bytes(),
        );
    }
    out.extend_from_slice(format!("startxref\n{xref_at}\n%%EOF\n").as_bytes());
    out
}

/// A PDF as PDF producers of version 1.5 and later write it: the catalog, the page tree, the
/// font and every page dictionary inside one object stream, the content streams outside, and
/// a cross-reference stream with compressed (type 2) entries. Pages are rotated by `rotate`.
fn pdf_with_object_streams(pages: usize, rotate: u32) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    // Objects 1 catalog, 2 pages, 3 font, 4.. pages (in the stream), then contents, then the
    // object stream, then the xref stream.
    let contents_first = 4 + pages;
    let objstm = contents_first + pages;
    let xref = objstm + 1;
    let mut inner: Vec<(usize, String)> = vec![
        (1, "<< /Type /Catalog /Pages 2 0 R >>".into()),
        (
            2,
            format!(
                "<< /Type /Pages /Kids [{}] /Count {pages} >>",
                (0..pages)
                    .map(|i| format!("{} 0 R", 4 + i))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        (
            3,
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into(),
        ),
    ];
    for i in 0..pages {
        inner.push((
            4 + i,
            format!(
                "<< /Type /Page /Parent 2 0 R /Rotate {rotate} /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                contents_first + i
            ),
        ));
    }
    let mut offsets = std::collections::BTreeMap::new();
    for i in 0..pages {
        let n = contents_first + i;
        offsets.insert(n, out.len());
        let text = format!(
            "BT /F1 14 Tf 72 760 Td (Deliberation - page {}) Tj ET",
            i + 1
        );
        out.extend_from_slice(
            format!(
                "{n} 0 obj\n<< /Length {} >>\nstream\n{text}\nendstream\nendobj\n",
                text.len()
            )
            .as_bytes(),
        );
    }
    let mut header = String::new();
    let mut body = String::new();
    for (n, o) in &inner {
        header.push_str(&format!("{n} {} ", body.len()));
        body.push_str(o);
        body.push('\n');
    }
    let stream = format!("{header}\n{body}");
    offsets.insert(objstm, out.len());
    out.extend_from_slice(
        format!(
            "{objstm} 0 obj\n<< /Type /ObjStm /N {} /First {} /Length {} >>\nstream\n{stream}\nendstream\nendobj\n",
            inner.len(),
            header.len() + 1,
            stream.len()
        )
        .as_bytes(),
    );
    let xref_at = out.len();
    offsets.insert(xref, xref_at);
    let mut data = vec![0u8, 0, 0, 0, 0, 0xff, 0xff];
    for n in 1..=xref {
        if let Some(k) = inner.iter().position(|(m, _)| *m == n) {
            data.push(2);
            data.extend_from_slice(&(objstm as u32).to_be_bytes());
            data.extend_from_slice(&(k as u16).to_be_bytes());
        } else {
            data.push(1);
            data.extend_from_slice(&(offsets[&n] as u32).to_be_bytes());
            data.extend_from_slice(&[0, 0]);
        }
    }
    out.extend_from_slice(
        format!(
            "{xref} 0 obj\n<< /Type /XRef /Size {} /W [1 4 2] /Root 1 0 R /Length {} >>\nstream\n",
            xref + 1,
            data.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&data);
    out.extend_from_slice(format!("\nendstream\nendobj\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    out
}

/// A PDF of `pages` scanned pages: each draws its own 100 KiB grey image (incompressible
/// noise, unfiltered) under a line of text; 50 pages make about 5 MB.
fn pdf_scans(pages: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut obj = |out: &mut Vec<u8>, body: &[u8]| {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    // 1 catalog, 2 pages, 3 font, then (page, content, image) triples.
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 3 * i)).collect();
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
    let mut seed: u32 = 0x2545_f491;
    for i in 0..pages {
        let p = 4 + 3 * i;
        obj(
            &mut out,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 {} 0 R >> >> /Contents {} 0 R >>",
                p + 2,
                p + 1
            )
            .as_bytes(),
        );
        let text = format!(
            "q 400 0 0 400 97 300 cm /Im1 Do Q BT /F1 14 Tf 72 760 Td (Contrat scanne - page {}) Tj ET",
            i + 1
        );
        obj(
            &mut out,
            format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()).as_bytes(),
        );
        let mut image = format!(
            "<< /Type /XObject /Subtype /Image /Width 320 /Height 320 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length {} >>\nstream\n",
            320 * 320
        )
        .into_bytes();
        for _ in 0..320 * 320 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            image.push(128 + (seed >> 26) as u8);
        }
        image.extend_from_slice(b"\nendstream");
        obj(&mut out, &image);
    }
    let xref_at = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", offsets.len() + 1).as_bytes(),
    );
    for off in &offsets {
        out.extend_from_slice(format!("{off:010} 00000 n\r\n").as_bytes());
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

fn simple_pdf() -> Vec<u8> {
    pdf(1, false, "", "", &[])
}

async fn submit_pdf(
    srv: &TestServer,
    org: &Org,
    circuit: &str,
    format: &str,
    content: &[u8],
) -> Result<proto::Document, tonic::Status> {
    let file = ("Contrat de maintenance", "contrat.pdf");
    submit_file(srv, org, circuit, file, format, content).await
}

async fn content_of(srv: &TestServer, org: &Org, id: &str) -> Vec<u8> {
    srv.content(org.token("audit"), id).await
}

fn cli_sign(cli: &Cli, token: &str, id: &str, p12: &str) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    cli.command(
        token,
        &["sign", id, "--p12", &format!("{root}/certs-test/{p12}")],
    )
    .env("PARAPH_P12_PASSWORD", "paraph-test")
    .output()
    .unwrap()
}

fn certs_path(name: &str) -> String {
    format!("{}/certs-test/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The /ByteRange arrays of a signed PDF, in file order.
fn byte_ranges(pdf: &[u8]) -> Vec<[usize; 4]> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/ByteRange")
        .map(|(i, _)| {
            let rest = &text[i..];
            let open = rest.find('[').unwrap();
            let close = rest.find(']').unwrap();
            let v: Vec<usize> = rest[open + 1..close]
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_pades_for_a_pdf_and_bad_pdfs_are_refused_at_submission() {
    let (srv, org) = start_with_seal("default").await;
    create_circuit(&srv, &org, "c", vec![sign_step(&["alice"], 2)]).await;
    let d = submit_pdf(&srv, &org, "c", "auto", &simple_pdf())
        .await
        .unwrap();
    assert_eq!(d.signature_format, "pades");
    let d = submit_pdf(&srv, &org, "c", "pades", &pdf(3, true, "", "", &[]))
        .await
        .unwrap();
    assert_eq!(d.signature_format, "pades");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not parsable",
            b"%PDF-1.7\nthis is not a PDF at all\n".to_vec(),
            "does not parse",
        ),
        (
            "encrypted",
            pdf(
                1,
                false,
                "",
                "/Encrypt 99 0 R /ID [<00112233445566778899AABBCCDDEEFF> <00112233445566778899AABBCCDDEEFF>]",
                &[],
            ),
            "encrypted",
        ),
        (
            "certified DocMDP P=1",
            {
                let pages = 1;
                let sig = 4 + 2 * pages;
                pdf(
                    pages,
                    false,
                    &format!("/Perms << /DocMDP {sig} 0 R >>"),
                    "",
                    &["<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /ByteRange [0 0 0 0] /Contents <00> /Reference [<< /Type /SigRef /TransformMethod /DocMDP /TransformParams << /Type /TransformParams /P 1 /V /1.2 >> >>] >>"],
                )
            },
            "DocMDP P=1",
        ),
    ];
    for (what, content, needle) in cases {
        for format in ["auto", "pades"] {
            let e = submit_pdf(&srv, &org, "c", format, &content)
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
            assert!(e.message().contains(needle), "{what}: {}", e.message());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preparation_is_bound_to_its_revision_and_a_stale_one_is_refused() {
    let (srv, org) = start_with_seal("default").await;
    create_circuit(&srv, &org, "two", vec![sign_step(&["alice", "dave"], 2)]).await;
    let original = simple_pdf();
    let d = submit_pdf(&srv, &org, "two", "auto", &original)
        .await
        .unwrap();
    let pa = prepare(
        &srv,
        &org,
        "alice",
        &d.id,
        "officer-l2-p256",
        &["signing-ca"],
    )
    .await
    .unwrap();
    let pd = prepare(
        &srv,
        &org,
        "dave",
        &d.id,
        "officer-l2-rsa3072",
        &["signing-ca"],
    )
    .await
    .unwrap();
    assert_eq!(pa.signature_format, "pades");
    // PAdES signed attributes: no signing-time (1.2.840.113549.1.9.5).
    let signing_time_oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05,
    ];
    assert!(!pa
        .signed_attributes
        .windows(signing_time_oid.len())
        .any(|w| w == signing_time_oid));
    let va = paraph::crypto::sign_with_key(&key("officer-l2-p256"), &pa.signed_attributes).unwrap();
    complete(&srv, &org, "alice", &pa.id, va).await.unwrap();
    let vd =
        paraph::crypto::sign_with_key(&key("officer-l2-rsa3072"), &pd.signed_attributes).unwrap();
    let e = complete(&srv, &org, "dave", &pd.id, vd).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("prepare again"), "{}", e.message());
    // Prepared again on the revision alice's signature made, it lands.
    sign(&srv, &org, "dave", &d.id, "officer-l2-rsa3072")
        .await
        .unwrap();
    let signed = content_of(&srv, &org, &d.id).await;
    assert!(signed.starts_with(&original));
    let ranges = byte_ranges(&signed);
    assert_eq!(ranges.len(), 2);
    // The last signature covers the whole file but its /Contents.
    let last = ranges[1];
    assert_eq!(last[2] + last[3], signed.len());
    // The first still covers exactly its own revision.
    let first = ranges[0];
    assert!(first[2] + first[3] < signed.len());
    assert_eq!(signed[first[1]], b'<');
}

/// The last page of `file` rendered in grey by poppler's pdftoppm (None when it is not
/// installed).
fn render_last_page(file: &Path) -> Option<Vec<u8>> {
    let info = Command::new("pdfinfo").arg(file).output().ok()?;
    let info = String::from_utf8_lossy(&info.stdout);
    let pages: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .map(|n| n.trim().parse().unwrap())?;
    let out = Command::new("pdftoppm")
        .args([
            "-gray",
            "-r",
            "36",
            "-f",
            &pages.to_string(),
            "-l",
            &pages.to_string(),
        ])
        .arg(file)
        .output()
        .ok()?;
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stdout.is_empty());
    Some(out.stdout)
}

/// pyHanko's report on `file`, or None when pyHanko's command line is not installed.
fn pyhanko_validate(dir: &Path, file: &Path) -> Option<(bool, String)> {
    let out = Command::new("pyhanko")
        .args(["sign", "validate", "--pretty-print", "--trust"])
        .arg(certs_path("root-ca.cert.pem"))
        .arg("--trust-replace")
        .arg("--other-certs")
        .arg(certs_path("signing-ca.cert.pem"))
        .arg("--no-revocation-check")
        .arg(file)
        .current_dir(dir)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// pdfsig's report on `file` with an NSS database trusting the test root, or None when
/// poppler's pdfsig or NSS's certutil is not installed.
fn pdfsig_report(dir: &Path, file: &Path) -> Option<String> {
    let db = dir.join("nss");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let pw = dir.join("nss-password");
    std::fs::write(&pw, "\n").unwrap();
    let init = Command::new("certutil")
        .args(["-N", "-d", &db_arg, "-f"])
        .arg(&pw)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    assert!(init.status.success(), "{init:?}");
    for (nick, file, trust) in [
        ("paraph-test-root", "root-ca.cert.pem", "CT,C,C"),
        ("paraph-test-signing", "signing-ca.cert.pem", ",,"),
    ] {
        let o = Command::new("certutil")
            .args(["-A", "-d", &db_arg, "-n", nick, "-t", trust, "-i"])
            .arg(certs_path(file))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }
    let out = Command::new("pdfsig")
        .arg("-nssdir")
        .arg(&db_arg)
        .arg(file)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_officers_and_the_seal_sign_one_pdf_incrementally_and_validators_accept_it() {
    let (srv, org) = start_with_seal("default").await;
    create_circuit(
        &srv,
        &org,
        "contrat",
        vec![
            visa(&["carol"]),
            sign_step(&["alice"], 2),
            sign_step(&["bob"], 2),
            step(K::Seal, &[], M::All, 0),
        ],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    let samples = vec![
        ("one page, xref table", simple_pdf()),
        ("50 pages, xref table", pdf(50, false, "", "", &[])),
        ("50 scanned pages, 5 MB", pdf_scans(50)),
        ("3 pages, xref stream", pdf(3, true, "", "", &[])),
        (
            "2 rotated pages in an object stream, compressed xref entries",
            pdf_with_object_streams(2, 90),
        ),
        (
            "an existing filled-in form field",
            pdf(
                1,
                false,
                "/AcroForm << /Fields [6 0 R] >>",
                "",
                &["<< /FT /Tx /T (Nom) /V (Dupont) >>"],
            ),
        ),
    ];
    for (what, original) in samples {
        let d = submit_pdf(&srv, &org, "contrat", "auto", &original)
            .await
            .unwrap();
        assert_eq!(d.signature_format, "pades", "{what}");
        approve(&srv, &org, "carol", &d.id, None).await.unwrap();
        for (who, p12) in [
            ("alice", "officer-l2-p256.p12"),
            ("bob", "officer-l3-p384.p12"),
        ] {
            let out = cli_sign(&cli, org.token(who), &d.id, p12);
            assert!(
                out.status.success(),
                "{what}: {who}: paraph sign failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
        assert_eq!(state(&doc), proto::DocumentState::Completed, "{what}");
        assert_eq!(doc.revision_sha256.len(), 3, "{what}");
        let signed = content_of(&srv, &org, &d.id).await;
        assert!(signed.starts_with(&original), "{what}");
        let ranges = byte_ranges(&signed);
        assert_eq!(ranges.len(), 3, "{what}");
        let text = String::from_utf8_lossy(&signed);
        for reason in ["(Signature)", "(Cachet)"] {
            assert!(text.contains(reason), "{what}: {reason}");
        }
        assert!(text.contains("/SubFilter /ETSI.CAdES.detached"), "{what}");
        // The stamps show each officer's certificate level (alice level 2, bob level 3).
        for level in ["(RGS ** - PAdES)", "(RGS *** - PAdES)"] {
            assert!(text.contains(level), "{what}: {level}");
        }
        let file = tmp.path().join(format!("signed-{}.pdf", d.id));
        std::fs::write(&file, &signed).unwrap();
        if let Some((ok, report)) = pyhanko_validate(tmp.path(), &file) {
            assert!(ok, "{what}: pyHanko: {report}");
            for (line, n) in [
                ("The signature is cryptographically sound.", 3),
                ("The signer's certificate is trusted.", 3),
                ("The signature is judged VALID.", 3),
                ("The signature covers the entire file.", 1),
                (
                    "All modifications relate to signing and form filling operations, and they \
                     appear to be compatible with the current document modification policy.",
                    2,
                ),
            ] {
                assert_eq!(report.matches(line).count(), n, "{what}: {line}: {report}");
            }
        }
        // paraph validate --data: one report per signature, in order.
        let validate = |bytes: &[u8]| {
            std::fs::write(&file, bytes).unwrap();
            let v = cli
                .command(
                    org.token("alice"),
                    &["validate", "--data", file.to_str().unwrap(), "--json"],
                )
                .output()
                .unwrap();
            let report: serde_json::Value = serde_json::from_slice(&v.stdout)
                .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&v.stderr)));
            (v.status.code(), report)
        };
        let (code, report) = validate(&signed);
        assert_eq!(code, Some(0), "{what}: {report}");
        assert_eq!(report["indication"], "TOTAL_PASSED", "{what}: {report}");
        let signers = report["signers"].as_array().unwrap();
        assert_eq!(signers.len(), 3, "{what}: {report}");
        for (i, s) in signers.iter().enumerate() {
            let m = s["message"].as_str().unwrap();
            // Revision 1 is the submitted PDF.
            assert!(m.contains(&format!("revision {} of 4", i + 2)), "{m}");
            if i < 2 {
                assert!(m.contains("covers its whole revision"), "{m}");
            } else {
                assert!(m.contains("covers the whole document"), "{m}");
            }
            assert!(s["signing_time"].is_string(), "{report}");
        }
        assert_eq!(signers[0]["level"], 2, "{report}");
        // A byte changed inside the seal's revision: only the seal fails, named.
        let mut edited = signed.clone();
        let reason = signed.windows(8).rposition(|w| w == b"(Cachet)").unwrap();
        assert!(reason > ranges[1][2] + ranges[1][3], "{what}");
        edited[reason + 1] = b'K';
        let (code, report) = validate(&edited);
        assert_eq!(code, Some(6), "{what}: {report}");
        assert_eq!(report["indication"], "TOTAL_FAILED", "{what}: {report}");
        let signers = report["signers"].as_array().unwrap();
        assert_eq!(signers[0]["indication"], "TOTAL_PASSED", "{report}");
        assert_eq!(signers[1]["indication"], "TOTAL_PASSED", "{report}");
        assert_eq!(signers[2]["sub_indication"], "HASH_FAILURE", "{report}");
        let seal_field = signers[2]["reference"].as_str().unwrap();
        assert!(
            signers[2]["message"]
                .as_str()
                .unwrap()
                .starts_with(seal_field),
            "{report}"
        );
        // A byte changed in the submitted PDF fails every signature.
        let mut edited = signed.clone();
        let page = signed.windows(7).position(|w| w == b"page 1)").unwrap();
        edited[page] = b'P';
        let (code, report) = validate(&edited);
        assert_eq!(code, Some(6), "{what}: {report}");
        assert!(
            report["signers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["sub_indication"] == "HASH_FAILURE"),
            "{report}"
        );
        std::fs::write(&file, &signed).unwrap();
        // The stamps are drawn: the last page renders differently once signed.
        let before = tmp.path().join(format!("original-{}.pdf", d.id));
        std::fs::write(&before, &original).unwrap();
        if let (Some(a), Some(b)) = (render_last_page(&before), render_last_page(&file)) {
            assert_ne!(a, b, "{what}: the stamps do not show on the last page");
        }
        if let Some(report) = pdfsig_report(tmp.path(), &file) {
            assert_eq!(
                report
                    .matches("Signature Validation: Signature is Valid.")
                    .count(),
                3,
                "{what}: pdfsig: {report}"
            );
        }
    }
}

/// A PDF whose pages have the given content streams and /Rotate, 595 × 842 points, with a
/// cross-reference table.
fn pdf_pages(pages: &[(&str, u32)]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut obj = |out: &mut Vec<u8>, body: &str| {
        offsets.push(out.len());
        let n = offsets.len();
        out.extend_from_slice(format!("{n} 0 obj\n{body}\nendobj\n").as_bytes());
    };
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 4 + 2 * i))
        .collect();
    obj(&mut out, "<< /Type /Catalog /Pages 2 0 R >>");
    obj(
        &mut out,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        ),
    );
    obj(
        &mut out,
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    );
    for (i, (text, rotate)) in pages.iter().enumerate() {
        obj(
            &mut out,
            &format!(
                "<< /Type /Page /Parent 2 0 R /Rotate {rotate} /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            ),
        );
        obj(
            &mut out,
            &format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        );
    }
    let xref_at = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", offsets.len() + 1).as_bytes(),
    );
    for off in &offsets {
        out.extend_from_slice(format!("{off:010} 00000 n\r\n").as_bytes());
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

/// Each signature widget of a signed PDF, in the order of the AcroForm's fields: its page
/// number (1-based), /Rect, whether it has an appearance, and that appearance's /Matrix.
struct Widget {
    page: u32,
    rect: [f32; 4],
    appearance: bool,
    matrix: Vec<f32>,
    reference: Option<String>,
}

fn widgets(signed: &[u8]) -> Vec<Widget> {
    let doc = lopdf::Document::load_mem(signed).unwrap();
    let pages: std::collections::BTreeMap<lopdf::ObjectId, u32> =
        doc.get_pages().into_iter().map(|(n, id)| (id, n)).collect();
    let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    let catalog = doc.get_dictionary(root).unwrap();
    let acro = match catalog.get(b"AcroForm").unwrap() {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).unwrap(),
        o => o.as_dict().unwrap(),
    };
    let num = |o: &lopdf::Object| o.as_float().unwrap_or_else(|_| o.as_i64().unwrap() as f32);
    acro.get(b"Fields")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| doc.get_dictionary(f.as_reference().unwrap()).unwrap())
        .filter(|f| f.get(b"FT").and_then(|t| t.as_name()).ok() == Some(b"Sig"))
        .map(|f| {
            let ap = f.get(b"AP").ok().map(|ap| {
                ap.as_dict()
                    .unwrap()
                    .get(b"N")
                    .unwrap()
                    .as_reference()
                    .unwrap()
            });
            let matrix = ap
                .map(|id| {
                    let s = doc.get_object(id).unwrap().as_stream().unwrap();
                    s.dict
                        .get(b"Matrix")
                        .map(|m| m.as_array().unwrap().iter().map(num).collect())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let sig = doc
                .get_dictionary(f.get(b"V").unwrap().as_reference().unwrap())
                .unwrap();
            let r: Vec<f32> = f
                .get(b"Rect")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(num)
                .collect();
            Widget {
                page: pages[&f.get(b"P").unwrap().as_reference().unwrap()],
                rect: [r[0], r[1], r[2], r[3]],
                appearance: ap.is_some(),
                matrix,
                reference: sig.get(b"Reference").ok().map(|r| format!("{r:?}")),
            }
        })
        .collect()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1.5
}

/// Page `page` of `file` rendered in grey at 72 dpi (one pixel a point): width, height, pixels.
fn render_page(file: &Path, page: u32) -> (usize, usize, Vec<u8>) {
    let out = Command::new("pdftoppm")
        .args([
            "-gray",
            "-r",
            "72",
            "-f",
            &page.to_string(),
            "-l",
            &page.to_string(),
        ])
        .arg(file)
        .output()
        .expect("poppler-utils (pdftoppm) is installed by .ci/run");
    assert!(out.status.success(), "{out:?}");
    // PGM: "P5\nW H\n255\n" then the pixels.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while out.stdout[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !out.stdout[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&out.stdout[start..at]).into_owned());
    }
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, out.stdout[at + 1..].to_vec())
}

/// The box (x0, y0, x1, y1, in pixels from the top left) where two renderings differ.
fn changed_box(a: &(usize, usize, Vec<u8>), b: &(usize, usize, Vec<u8>)) -> Option<[usize; 4]> {
    assert_eq!((a.0, a.1), (b.0, b.1));
    let mut r: Option<[usize; 4]> = None;
    for y in 0..a.1 {
        for x in 0..a.0 {
            let i = y * a.0 + x;
            if a.2[i] != b.2[i] {
                let c = r.get_or_insert([x, y, x, y]);
                c[0] = c[0].min(x);
                c[1] = c[1].min(y);
                c[2] = c[2].max(x);
                c[3] = c[3].max(y);
            }
        }
    }
    r
}

/// Dark pixels (text) inside a box: the share of its rows and of its columns that hold some.
/// Upright lines of text leave blank rows between them and few blank columns.
fn text_profile(img: &(usize, usize, Vec<u8>), b: [usize; 4]) -> (f32, f32) {
    let dark = |x: usize, y: usize| img.2[y * img.0 + x] < 110;
    let rows = (b[1] + 3..b[3] - 2)
        .filter(|&y| (b[0] + 3..b[2] - 2).any(|x| dark(x, y)))
        .count() as f32
        / (b[3] - b[1] - 5) as f32;
    let cols = (b[0] + 3..b[2] - 2)
        .filter(|&x| (b[1] + 3..b[3] - 2).any(|y| dark(x, y)))
        .count() as f32
        / (b[2] - b[0] - 5) as f32;
    (rows, cols)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_go_on_the_tag_else_the_step_coordinates_upright_on_rotated_pages_or_nowhere() {
    let (srv, org) = start_with_seal("default").await;
    // alice: no placement (her tag is in the text); bob: page -1 at (300, 500), 200 × 60 (the
    // PDF has no #signature_2#); dave: a stamp on the rotated page 2; the seal: invisible.
    let mut bob = sign_step(&["bob"], 2);
    bob.stamp = Some(proto::StampPlacement {
        page: -1,
        x: 300,
        y: 500,
        width: 200,
        height: 60,
    });
    let mut dave = sign_step(&["dave"], 2);
    dave.stamp = Some(proto::StampPlacement {
        page: 2,
        x: 100,
        y: 100,
        width: 200,
        height: 60,
    });
    let mut seal = step(K::Seal, &[], M::All, 0);
    seal.invisible = true;
    create_circuit(
        &srv,
        &org,
        "placed",
        vec![sign_step(&["alice"], 2), bob, dave, seal],
    )
    .await;
    let original = pdf_pages(&[
        ("BT /F1 14 Tf 72 760 Td (Convention - page 1) Tj ET", 0),
        ("BT /F1 14 Tf 72 760 Td (Annexe, page tournee) Tj ET", 90),
        (
            "BT /F1 14 Tf 72 760 Td (Fait a Lyon) Tj /F1 12 Tf 0 -360 Td [(Le maire : ) -10 (#signa) 20 (ture#)] TJ ET",
            0,
        ),
    ]);
    let d = submit_pdf(&srv, &org, "placed", "auto", &original)
        .await
        .unwrap();
    for (who, stem) in [
        ("alice", "officer-l2-p256"),
        ("bob", "officer-l3-p384"),
        ("dave", "officer-l2-rsa3072"),
    ] {
        sign(&srv, &org, who, &d.id, stem).await.unwrap();
    }
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert_eq!(state(&doc), proto::DocumentState::Completed);
    let signed = content_of(&srv, &org, &d.id).await;
    let w = widgets(&signed);
    assert_eq!(w.len(), 4);
    // alice on her tag (page 3; the tag's baseline at y 400 after "Le maire : ", 12 pt): the
    // stamp's top left corner at the tag's, 180 × 56.
    assert_eq!(w[0].page, 3);
    assert!(w[0].appearance);
    assert!(
        w[0].rect[0] > 72.0 && w[0].rect[0] < 160.0,
        "{:?}",
        w[0].rect
    );
    assert!(close(w[0].rect[3], 412.0), "{:?}", w[0].rect);
    assert!(close(w[0].rect[2] - w[0].rect[0], 180.0) && close(w[0].rect[3] - w[0].rect[1], 56.0));
    // bob at the step's coordinates on the last page.
    assert_eq!(w[1].page, 3);
    assert_eq!(w[1].rect, [300.0, 500.0, 500.0, 560.0]);
    // dave on page 2, turned 90°: 60 wide and 200 high in the page's own space, the
    // appearance turned back so that the reader sees it upright.
    assert_eq!(w[2].page, 2);
    assert!(close(w[2].rect[2] - w[2].rect[0], 60.0), "{:?}", w[2].rect);
    assert!(close(w[2].rect[3] - w[2].rect[1], 200.0), "{:?}", w[2].rect);
    assert_eq!(w[2].matrix, vec![0.0, 1.0, -1.0, 0.0, 0.0, 0.0]);
    // The seal: invisible, an empty rectangle and no appearance.
    assert_eq!(w[3].rect, [0.0; 4]);
    assert!(!w[3].appearance);

    let tmp = tempfile::tempdir().unwrap();
    let before = tmp.path().join("original.pdf");
    let after = tmp.path().join("signed.pdf");
    std::fs::write(&before, &original).unwrap();
    std::fs::write(&after, &signed).unwrap();
    // What a reader sees: on page 3, alice's stamp over the tag and bob's at (300, 500)
    // (842 - 560 = 282 pixels from the top); on the rotated page 2, dave's stamp 200 wide and
    // 60 high, its lines of text horizontal.
    let (a3, b3) = (render_page(&before, 3), render_page(&after, 3));
    let boxed = changed_box(&a3, &b3).unwrap();
    assert!(boxed[0] <= 160 && boxed[2] >= 499, "{boxed:?}");
    assert!(boxed[1] <= 283 && boxed[3] >= 842 - 357, "{boxed:?}");
    let (a2, b2) = (render_page(&before, 2), render_page(&after, 2));
    assert_eq!((b2.0, b2.1), (842, 595), "page 2 is displayed in landscape");
    let boxed = changed_box(&a2, &b2).unwrap();
    let (bw, bh) = (boxed[2] - boxed[0], boxed[3] - boxed[1]);
    assert!(bw.abs_diff(200) <= 2 && bh.abs_diff(60) <= 2, "{boxed:?}");
    // Displayed at (100, 100) from the bottom left: 595 - 160 = 435 pixels from the top.
    assert!(
        boxed[0].abs_diff(100) <= 2 && boxed[1].abs_diff(435) <= 2,
        "{boxed:?}"
    );
    let (rows, cols) = text_profile(&b2, boxed);
    assert!(
        rows < 0.8 && cols > rows,
        "text not upright: rows {rows}, columns {cols}"
    );
    if let Some((ok, report)) = pyhanko_validate(tmp.path(), &after) {
        assert!(ok, "pyHanko: {report}");
        assert_eq!(
            report.matches("The signature is judged VALID.").count(),
            4,
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_seal_certifies_the_pdf_and_certification_elsewhere_is_refused() {
    let (srv, org) = start_with_seal("default").await;
    // Refused at circuit creation: certify on a signature step, on a seal that is not last,
    // a stamp on a visa, a stamp of no size, page 0.
    let mut certify_sig = sign_step(&["alice"], 2);
    certify_sig.certify = true;
    let mut seal_certify = step(K::Seal, &[], M::All, 0);
    seal_certify.certify = true;
    let mut visa_stamp = visa(&["carol"]);
    visa_stamp.invisible = true;
    let mut tiny = sign_step(&["alice"], 2);
    tiny.stamp = Some(proto::StampPlacement {
        page: 1,
        x: 0,
        y: 0,
        width: 0,
        height: 60,
    });
    let mut page0 = sign_step(&["alice"], 2);
    page0.stamp = Some(proto::StampPlacement {
        page: 0,
        x: 0,
        y: 0,
        width: 100,
        height: 60,
    });
    for (steps, field) in [
        (vec![certify_sig], "steps[0].certify"),
        (
            vec![seal_certify.clone(), sign_step(&["alice"], 2)],
            "steps[0].certify",
        ),
        // A certification is the PDF's first signature: after a signature step, refused.
        (
            vec![sign_step(&["alice"], 2), seal_certify.clone()],
            "steps[1].certify",
        ),
        (
            vec![visa_stamp, sign_step(&["alice"], 2)],
            "steps[0].visible",
        ),
        (vec![tiny], "steps[0].stamp.width"),
        (vec![page0], "steps[0].stamp.page"),
    ] {
        let e = srv
            .circuits(org.token("boss"), None)
            .create_circuit(proto::CreateCircuitRequest {
                name: "bad".into(),
                fallback: String::new(),
                steps,
                idempotency_key: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    // Visas, then the commune's certifying seal.
    let c = create_circuit(
        &srv,
        &org,
        "certified",
        vec![visa(&["carol"]), visa(&["alice"]), seal_certify],
    )
    .await;
    assert!(c.steps[2].certify, "the circuit keeps the certification");
    let d = submit_pdf(&srv, &org, "certified", "auto", &simple_pdf())
        .await
        .unwrap();
    approve(&srv, &org, "carol", &d.id, None).await.unwrap();
    approve(&srv, &org, "alice", &d.id, None).await.unwrap();
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert_eq!(state(&doc), proto::DocumentState::Completed);
    let signed = content_of(&srv, &org, &d.id).await;
    let w = widgets(&signed);
    assert_eq!(w.len(), 1);
    let r = w[0].reference.as_deref().unwrap();
    assert!(r.contains("DocMDP") && r.contains("P"), "{r}");
    let text = String::from_utf8_lossy(&signed);
    let perms = text
        .rfind("/Perms")
        .expect("the catalog names the certification");
    assert!(
        text[perms..].starts_with("/Perms <</DocMDP "),
        "{}",
        &text[perms..perms + 40]
    );
    // A signed PDF cannot go through a circuit that certifies: refused at submission.
    let e = submit_pdf(&srv, &org, "certified", "auto", &signed)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("steps[2].certify"), "{}", e.message());
    // Nor through one whose stamp goes on a page it does not have.
    let mut far = sign_step(&["alice"], 2);
    far.stamp = Some(proto::StampPlacement {
        page: -2,
        x: 10,
        y: 10,
        width: 100,
        height: 40,
    });
    create_circuit(&srv, &org, "far", vec![far]).await;
    let e = submit_pdf(&srv, &org, "far", "auto", &simple_pdf())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("steps[0].stamp.page"),
        "{}",
        e.message()
    );
    // The certified PDF can still be signed (P=2 allows signatures) by a plain circuit, with
    // an invisible signature (readers refuse a new visible one after a certification).
    create_circuit(&srv, &org, "after", vec![sign_step(&["alice"], 2)]).await;
    let d2 = submit_pdf(&srv, &org, "after", "auto", &signed)
        .await
        .unwrap();
    sign(&srv, &org, "alice", &d2.id, "officer-l2-p256")
        .await
        .unwrap();
    let signed_after = content_of(&srv, &org, &d2.id).await;
    let w = widgets(&signed_after);
    assert_eq!(w.len(), 2);
    assert_eq!(w[1].rect, [0.0; 4]);
    assert!(!w[1].appearance);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("certified.pdf");
    std::fs::write(&file, &signed).unwrap();
    let after = tmp.path().join("certified-then-signed.pdf");
    std::fs::write(&after, &signed_after).unwrap();
    if let Some((ok, report)) = pyhanko_validate(tmp.path(), &file) {
        assert!(ok, "pyHanko: {report}");
        assert_eq!(
            report.matches("The signature is judged VALID.").count(),
            1,
            "{report}"
        );
        // pyHanko reads the seal as a certification allowing form filling and signing.
        assert_eq!(pyhanko_docmdp(&file), ["FILL_FORMS"]);
        let (ok, report) = pyhanko_validate(tmp.path(), &after).unwrap();
        assert!(ok, "pyHanko: {report}");
        assert_eq!(
            report.matches("The signature is judged VALID.").count(),
            2,
            "{report}"
        );
        assert_eq!(pyhanko_docmdp(&after), ["FILL_FORMS", "None"]);
    }
}

/// The DocMDP permission pyHanko reads for each signature of `file` (`FILL_FORMS` for a
/// certification with P=2, `None` for an approval signature).
fn pyhanko_docmdp(file: &Path) -> Vec<String> {
    let script = [
        "import sys",
        "from pyhanko.pdf_utils.reader import PdfFileReader",
        "r = PdfFileReader(open(sys.argv[1], 'rb'))",
        "for s in r.embedded_signatures:",
        "    p = s.docmdp_level",
        "    print(p.name if p is not None else 'None')",
    ]
    .join("\n");
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `signed` with one more incremental update that replaces object `id` by `body`.
fn append_update(signed: &[u8], id: u32, body: &str) -> Vec<u8> {
    let doc = lopdf::Document::load_mem(signed).unwrap();
    let size = doc.trailer.get(b"Size").unwrap().as_i64().unwrap();
    let text = String::from_utf8_lossy(signed);
    let at = text.rfind("startxref").unwrap();
    let prev: usize = text[at + 9..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!text.contains("/Type /XRef") && !text.contains("/Type/XRef"));
    let mut out = signed.to_vec();
    let offset = out.len();
    out.extend_from_slice(format!("{id} 0 obj\n{body}\nendobj\n").as_bytes());
    let xref = out.len();
    out.extend_from_slice(
        format!(
            "xref\n{id} 1\n{offset:010} 00000 n\r\ntrailer\n<< /Size {size} /Root 1 0 R /Prev {prev} >>\nstartxref\n{xref}\n%%EOF\n"
        )
        .as_bytes(),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_changed_after_signing_is_reported_naming_the_signature() {
    let (srv, org) = start_with_seal("default").await;
    create_circuit(&srv, &org, "one", vec![sign_step(&["alice"], 2)]).await;
    let d = submit_pdf(&srv, &org, "one", "auto", &simple_pdf())
        .await
        .unwrap();
    sign(&srv, &org, "alice", &d.id, "officer-l2-p256")
        .await
        .unwrap();
    let signed = content_of(&srv, &org, &d.id).await;
    let field = {
        let text = String::from_utf8_lossy(&signed);
        let at = text.find("/T <").unwrap() + 4;
        let end = text[at..].find('>').unwrap();
        String::from_utf8(hex::decode(&text[at..at + end]).unwrap()).unwrap()
    };
    // Object 5 is the page's content stream: an update that rewrites the amount.
    let forged = "BT /F1 14 Tf 72 760 Td (Contrat de service - 1 000 000 EUR) Tj ET";
    let edited = append_update(
        &signed,
        5,
        &format!(
            "<< /Length {} >>\nstream\n{forged}\nendstream",
            forged.len()
        ),
    );
    // A harmless update (the page's /Annots and the AcroForm untouched, a new object that
    // nothing uses) changes nothing the signature covers.
    let harmless = append_update(&signed, 40, "<< /Unused true >>");
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    let validate = |name: &str, bytes: &[u8]| {
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let v = cli
            .command(
                org.token("alice"),
                &["validate", "--data", file.to_str().unwrap(), "--json"],
            )
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&v.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&v.stderr)));
        (v.status.code(), report, file)
    };
    let (code, report, _) = validate("harmless.pdf", &harmless);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    let (code, report, file) = validate("edited.pdf", &edited);
    assert_eq!(code, Some(6), "{report}");
    let s = &report["signers"][0];
    assert_eq!(s["indication"], "TOTAL_FAILED", "{report}");
    assert_eq!(s["sub_indication"], "MODIFIED_AFTER_SIGNING", "{report}");
    assert_eq!(s["reference"], field.as_str(), "{report}");
    let m = s["message"].as_str().unwrap();
    assert!(m.starts_with(&field), "{m}");
    assert!(
        m.contains("modified after signing: object 5 0 (a page's contents)"),
        "{m}"
    );
    // pyHanko's own difference analysis agrees.
    if let Some((ok, report)) = pyhanko_validate(tmp.path(), &file) {
        assert!(!ok, "pyHanko accepted the edited PDF: {report}");
        assert!(
            !report.contains("The signature is judged VALID."),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seal_signs_with_the_pades_settings_of_the_server() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.seals.insert(
            "default".into(),
            paraph::config::SealSettings {
                p12: "certs-test/seal.p12".into(),
                password_env: None,
                password_file: None,
                password: Some("paraph-test".into()),
            },
        );
        s.pades.location = "Mairie de Saint-Étienne".into();
    })
    .await;
    let org = Org::create(&srv, "default").await;
    trust_and_bind_officers(&srv, &org).await;
    create_circuit(
        &srv,
        &org,
        "sealed",
        vec![sign_step(&["alice"], 2), step(K::Seal, &[], M::All, 0)],
    )
    .await;
    let d = submit_pdf(&srv, &org, "sealed", "auto", &simple_pdf())
        .await
        .unwrap();
    sign(&srv, &org, "alice", &d.id, "officer-l2-p256")
        .await
        .unwrap();
    let signed = content_of(&srv, &org, &d.id).await;
    // /Location as a UTF-16BE text string, in the officer's signature and the seal's.
    let location: String = "Mairie de Saint-Étienne"
        .encode_utf16()
        .map(|u| format!("{u:04X}"))
        .collect();
    let text = String::from_utf8_lossy(&signed);
    assert_eq!(
        text.matches(&format!("/Location <FEFF{location}>")).count(),
        2,
        "{}",
        text.len()
    );
}
