//! A large, legitimate CRL in a tenant's trust set (tens of thousands of revoked serials, signed
//! by the test signing CA): the signatures made with it keep it once, by hash. The store grows
//! by far less than the CRL per signature, `show` and `signatures` answer small messages, the
//! CRL is fetched once by hash (and the files `paraph signatures --out` writes hold it, so
//! OpenSSL validates them offline), and an evidence bundle carries it once and still verifies.

mod common;
use common::signing::*;
use common::*;
use paraph::proto::{self, audit_service_client::AuditServiceClient};
use prost::Message;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Revoked serials in the CRL: about 23 bytes each, so about 1.4 MB.
const REVOKED: u32 = 60_000;

/// A CRL of the test signing CA revoking `REVOKED` made-up serials (none of the officers'),
/// issued before the tests' clock, as DER.
fn large_crl(dir: &Path) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-test");
    let mut index = std::io::BufWriter::new(std::fs::File::create(dir.join("index.txt")).unwrap());
    for i in 0..REVOKED {
        writeln!(
            index,
            "R\t491231235959Z\t250601000000Z\t{:08X}\tunknown\t/CN=revoked {i}",
            0x7100_0000 + i
        )
        .unwrap();
    }
    drop(index);
    std::fs::write(dir.join("crlnumber"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ ca ]\ndefault_ca = big\n[ big ]\ndatabase = {db}\ncrlnumber = {num}\n\
             certificate = {cert}\nprivate_key = {key}\ndefault_md = sha256\n\
             crl_extensions = crl_ext\n[ crl_ext ]\nauthorityKeyIdentifier = keyid\n",
            db = dir.join("index.txt").display(),
            num = dir.join("crlnumber").display(),
            cert = root.join("signing-ca.cert.pem").display(),
            key = root.join("signing-ca.key.pem").display(),
        ),
    )
    .unwrap();
    let out = Command::new("openssl")
        .args(["ca", "-batch", "-config"])
        .arg(dir.join("ca.cnf"))
        .args([
            "-gencrl",
            "-md",
            "sha256",
            "-crl_lastupdate",
            "20251201000000Z",
        ])
        .args(["-crl_nextupdate", "20491201000000Z", "-out"])
        .arg(dir.join("big.crl.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read(dir.join("big.crl.pem")).unwrap();
    openssl::x509::X509Crl::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap()
}

/// Bytes under `dir`, recursively.
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_use(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_crl_is_kept_once_and_answers_and_bundles_stay_small() {
    let pki = tempfile::tempdir().unwrap();
    let crl = large_crl(pki.path());
    let crl_hash = sha256_hex(&crl);
    assert!(crl.len() > 1_000_000, "CRL of {} bytes", crl.len());

    let srv = TestServer::start().await;
    let data_dir = srv.dir.as_ref().unwrap().path().to_path_buf();
    let org = Org::create(&srv, "ville-crl").await;
    let root_crl = openssl::x509::X509Crl::from_pem(&certs("root-ca.crl.pem"))
        .unwrap()
        .to_der()
        .unwrap();
    set_trust(&srv, &org, vec![root_crl, crl.clone()]).await;
    bind(&srv, &org, "alice", &certs("officer-l2-p256.cert.pem"))
        .await
        .unwrap();
    create_circuit(&srv, &org, "signe", vec![sign_step(&["alice"], 2)]).await;

    // Three documents signed; the store is measured after the first (which keeps the CRL
    // once) and after the third.
    let mut ids = Vec::new();
    let mut after_first = 0;
    for n in 0..3 {
        let d = submit(&srv, &org, "signe", &[]).await;
        let done = sign(&srv, &org, "alice", &d.id, "officer-l2-p256")
            .await
            .unwrap();
        assert_eq!(done.state, proto::DocumentState::Completed as i32);
        // The completion answer names the CRLs; its CMS does not carry them.
        let s = done.signature.unwrap();
        assert!(s.crl_sha256.contains(&crl_hash), "{:?}", s.crl_sha256);
        assert!(s.cms.len() < 20_000, "a CMS of {} bytes", s.cms.len());
        if n == 0 {
            after_first = disk_use(&data_dir);
        }
        ids.push(d.id);
    }
    let growth = disk_use(&data_dir).saturating_sub(after_first);
    eprintln!(
        "CRL {} bytes; two more signed documents grew the store by {growth} bytes",
        crl.len()
    );
    assert!(
        growth < crl.len() as u64 / 2,
        "two more signatures grew the store by {growth} bytes with a CRL of {}",
        crl.len()
    );

    // `show` and `signatures` answer, small, and name the CRL by hash.
    let mut docs = srv.docs(org.token("audit"), None);
    for id in &ids {
        let d = docs
            .get_document(proto::GetDocumentRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.id, *id);
        let r = signatures_of(&srv, &org, id).await;
        assert_eq!(r.signatures.len(), 1);
        assert!(
            r.encoded_len() < 50_000,
            "GetSignatures answered {} bytes",
            r.encoded_len()
        );
        assert_eq!(r.crl_sha256.len(), 2);
        assert!(r.crl_sha256.contains(&crl_hash));
    }
    // The CRL by its hash, for a reader of the document; an unknown hash is NOT_FOUND.
    let mut aud = sigs(&srv, org.token("audit"));
    let got = aud
        .get_validation_material(proto::GetValidationMaterialRequest {
            document_id: ids[0].clone(),
            sha256: crl_hash.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.der, crl);
    let e = aud
        .get_validation_material(proto::GetValidationMaterialRequest {
            document_id: ids[0].clone(),
            sha256: "0".repeat(64),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let e = aud
        .get_validation_material(proto::GetValidationMaterialRequest {
            document_id: ids[0].clone(),
            sha256: "xyz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");

    // `paraph signatures --out`: the files hold the CRLs again and OpenSSL validates them.
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paraph"));
    cmd.args(["signatures", &ids[0], "--out"])
        .arg(out_dir.path())
        .env("PARAPH_ADDR", srv.addr.to_string())
        .env("PARAPH_TENANT", &org.tenant)
        .env("PARAPH_TOKEN", org.token("audit"))
        .env_remove("PARAPH_CONFIG")
        .stdin(std::process::Stdio::null());
    // The server answers on this runtime: wait for the command off it.
    let cli = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let p7s = out_dir.path().join(format!("{}-0.p7s", ids[0]));
    let written = std::fs::read(&p7s).unwrap();
    let parsed = paraph::crypto::parse(&written).unwrap();
    assert!(parsed.crls.contains(&crl), "the written CMS holds the CRL");
    std::fs::write(out_dir.path().join("data.bin"), b"%PDF-1.7 test content").unwrap();
    let ok = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&p7s)
        .arg("-content")
        .arg(out_dir.path().join("data.bin"))
        .arg("-CAfile")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-test/root-ca.cert.pem"))
        .args(["-purpose", "any", "-crl_check_all", "-attime"])
        .arg(T0.0.to_string())
        .args(["-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // The evidence bundle of a 21-byte document carries the CRL once and verifies; a bundled
    // CRL altered is refused.
    let mut audit = AuditServiceClient::with_interceptor(srv.channel(), auth(org.token("audit")))
        .max_decoding_message_size(64 * 1024 * 1024);
    let key = audit
        .get_log_key(proto::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    let key = paraph::audit::AuditPublicKey::from_pem(key.public_key_pem.as_bytes()).unwrap();
    let raw = audit
        .export_evidence(proto::ExportEvidenceRequest {
            document_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle;
    eprintln!(
        "evidence bundle of a signed 21-byte document: {} bytes",
        raw.len()
    );
    // Base64 makes the CRL 4/3 of its size in JSON.
    assert!(
        (raw.len() as f64) < 1.5 * crl.len() as f64 + 100_000.0,
        "a bundle of {} bytes for a CRL of {}",
        raw.len(),
        crl.len()
    );
    let bundle = paraph::audit::bundle::EvidenceBundle::from_json(&raw).unwrap();
    assert!(bundle.material.contains_key(&crl_hash));
    let checker =
        paraph::client::evidence::signature_checker(vec![cert_der("root-ca")], Default::default());
    let v = paraph::audit::bundle::verify(&bundle, &key, &checker).unwrap();
    assert_eq!(v.signatures.len(), 1);
    let mut t = bundle.clone();
    let m = t.material.get_mut(&crl_hash).unwrap();
    let n = m.0.len();
    m.0[n - 100] ^= 1;
    let e = paraph::audit::bundle::verify(&t, &key, &checker).unwrap_err();
    assert!(e.to_string().contains("do not match its hash"), "{e}");
}
