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
