//! Content in and out, and heavy validations, from outside: a real `paraph serve` child process
//! with small test limits, its memory read from /proc. Uploads hold a bounded budget (excess
//! refused, accepted ones read back whole), an upload that stalls is refused and stores
//! nothing, slow readers of a large document hold a piece each, a CMS asking too much is
//! refused before any cryptographic work, and store reads answer while validations run.
mod common;

use common::cli::{lines, next_line, store_args, token_of, Proc, BIN};
use common::*;
use paraph::proto;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tonic::Code;

const MIB: usize = 1024 * 1024;
/// Longest wait for any answer the tests expect (never reached when all is well).
const PATIENCE: Duration = Duration::from_secs(120);

/// `paraph serve` over `dir/data` with the settings of `env`; the process, the operator token
/// and the connected harness.
async fn serve(dir: &Path, env: &[(&str, &str)]) -> (Proc, TestServer) {
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = Proc {
        child: cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(isolated_config(dir))
            .args(store_args(&dir.join("data")))
            .arg("--json")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn paraph serve"),
    };
    let out = lines(server.child.stdout.take().expect("server stdout"));
    let boot: serde_json::Value =
        serde_json::from_str(&next_line(&out, "bootstrap")).expect("bootstrap JSON");
    let operator = token_of(&boot);
    let listening = next_line(&out, "listening");
    let addr = listening
        .strip_prefix("paraph listening on ")
        .unwrap_or_else(|| panic!("unexpected line {listening:?}"))
        .parse()
        .expect("address");
    // The reader of the server's output lives as long as the test.
    std::mem::forget(out);
    (server, TestServer::attach(addr, operator).await)
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

fn mib_of_kib(kib: usize) -> usize {
    kib / 1024
}

/// Content of `len` bytes that differs with `seed` (so that no two documents share a blob).
fn content(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn read_content(srv: &TestServer, token: &str, id: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut s = srv
        .docs(token, None)
        .get_content(proto::GetContentRequest {
            id: id.into(),
            revision: None,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(c) = s.message().await? {
        out.extend_from_slice(&c.data);
    }
    Ok(out)
}

async fn setup(srv: &TestServer) -> Org {
    let org = Org::create(srv, "default").await;
    create_circuit(srv, &org, "visa", vec![visa(&["alice"])]).await;
    org
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_large_uploads_hold_a_bounded_budget_and_the_accepted_ones_read_back_whole() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let budget = (16 * MIB).to_string();
    let (server, srv) = serve(
        dir.path(),
        &[
            ("PARAPH__UPLOAD_BUDGET_BYTES", &budget),
            ("PARAPH__UPLOAD_TENANT_BUDGET_BYTES", &budget),
        ],
    )
    .await;
    let org = setup(&srv).await;
    let pid = server.child.id();
    let before = status_kib(pid, "VmHWM:");
    let uploads: Vec<_> = (0..16u32)
        .map(|i| {
            let mut docs = srv.docs(org.token("finance"), None);
            tokio::spawn(async move {
                let body = content(i, 8 * MIB);
                let r = submit_raw(
                    &mut docs,
                    header("visa", &format!("big {i}"), &[]),
                    &body,
                    MIB,
                )
                .await;
                (r, body)
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for u in uploads {
        let (r, body) = tokio::time::timeout(PATIENCE, u)
            .await
            .expect("every upload is answered")
            .expect("join");
        match r {
            Ok(doc) => accepted.push((doc.id, body)),
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("upload"), "{s:?}");
                refused += 1;
            }
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    let grown = mib_of_kib(peak.saturating_sub(before));
    eprintln!(
        "uploads: {} accepted, {refused} refused; peak RSS grew by {grown} MiB",
        accepted.len()
    );
    assert!(
        grown < 80,
        "16 uploads of 8 MiB under a 16 MiB budget grew the peak RSS by {grown} MiB"
    );
    assert!(refused > 0, "a 16 MiB budget cannot take 128 MiB at once");
    assert!(!accepted.is_empty(), "some uploads fit in the budget");
    for (id, body) in &accepted {
        let back = read_content(&srv, org.token("finance"), id)
            .await
            .expect("read back");
        assert!(back == *body, "document {id} reads back byte-identical");
    }
    // Nothing is left in the spool once every upload was answered.
    let spool = dir.path().join("data").join("spool");
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0);
    // With the budget free again, one more upload goes through.
    let body = content(99, 8 * MIB);
    let mut docs = srv.docs(org.token("finance"), None);
    submit_raw(&mut docs, header("visa", "after", &[]), &body, MIB)
        .await
        .expect("accepted once the budget is free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_idle_mid_stream_is_refused_and_stores_nothing() {
    use proto::submit_document_request::Part;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_server, srv) = serve(dir.path(), &[("PARAPH__TRANSFER_IDLE_TIMEOUT_SECS", "1")]).await;
    let org = setup(&srv).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::SubmitDocumentRequest {
        part: Some(Part::Header(header("visa", "stalled", &[]))),
    })
    .await
    .expect("send");
    // More than the part kept in memory: the rest of an upload goes to the spool.
    for i in 0..2 {
        tx.send(proto::SubmitDocumentRequest {
            part: Some(Part::Chunk(content(i, MIB))),
        })
        .await
        .expect("send");
    }
    // The sender stays open and sends nothing more.
    let mut docs = srv.docs(org.token("finance"), None);
    let answer = tokio::time::timeout(
        PATIENCE,
        docs.submit_document(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("the server ends a stalled upload itself");
    let status = answer.expect_err("a stalled upload is refused");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("transfer_idle_timeout_secs"),
        "{status:?}"
    );
    drop(tx);
    assert!(inbox(&srv, &org, "alice").await.is_empty(), "no document");
    let spool = dir.path().join("data").join("spool");
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_readers_of_a_large_document_hold_a_piece_each() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (server, srv) = serve(dir.path(), &[("PARAPH__MAX_CONCURRENT_DOWNLOADS", "20")]).await;
    let org = setup(&srv).await;
    let body = content(7, 32 * MIB);
    let mut docs = srv.docs(org.token("finance"), None);
    let doc = submit_raw(&mut docs, header("visa", "large", &[]), &body, MIB)
        .await
        .expect("submit");
    let pid = server.child.id();
    let before = status_kib(pid, "VmRSS:");
    let mut stalled = Vec::new();
    for _ in 0..20 {
        // A connection each: the readers do not share one HTTP/2 window.
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", srv.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut d = proto::document_service_client::DocumentServiceClient::with_interceptor(
            channel,
            auth(org.token("alice")),
        );
        let mut s = d
            .get_content(proto::GetContentRequest {
                id: doc.id.clone(),
                revision: None,
            })
            .await
            .expect("get content")
            .into_inner();
        let first = tokio::time::timeout(PATIENCE, s.message())
            .await
            .expect("a first piece")
            .expect("read")
            .expect("a piece");
        assert_eq!(first.data[..], body[..first.data.len()]);
        // Reads nothing more.
        stalled.push((d, s));
    }
    let during = status_kib(pid, "VmRSS:");
    let grown = mib_of_kib(during.saturating_sub(before));
    eprintln!("20 stalled readers of a 32 MiB document: RSS grew by {grown} MiB");
    assert!(
        grown < 48,
        "20 stalled readers of a 32 MiB document grew the RSS by {grown} MiB"
    );
    // A 21st download is refused while the 20 are held.
    let refused = read_content(&srv, org.token("alice"), &doc.id)
        .await
        .expect_err("beyond max_concurrent_downloads");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_concurrent_downloads"),
        "{refused:?}"
    );
    drop(stalled);
    // The server frees a slot once it sees its reader gone (the reset of his stream reaches
    // it a moment later): retried while refused for that reason, a bounded number of times.
    let mut tries = 0;
    let back = loop {
        match read_content(&srv, org.token("alice"), &doc.id).await {
            Err(s) if s.code() == Code::ResourceExhausted && tries < 200 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            r => break r.expect("read whole"),
        }
    };
    assert!(back == body, "the document reads back byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_idle_past_the_timeout_loses_his_slot_and_never_sees_a_clean_end() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_server, srv) = serve(
        dir.path(),
        &[
            ("PARAPH__MAX_CONCURRENT_DOWNLOADS", "1"),
            ("PARAPH__TRANSFER_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let org = setup(&srv).await;
    // Larger than what HTTP/2 windows and the piece read ahead can hold.
    let body = content(5, 16 * MIB);
    let mut docs = srv.docs(org.token("finance"), None);
    let doc = submit_raw(&mut docs, header("visa", "large", &[]), &body, MIB)
        .await
        .expect("submit");
    let mut stalled = srv
        .docs(org.token("alice"), None)
        .get_content(proto::GetContentRequest {
            id: doc.id.clone(),
            revision: None,
        })
        .await
        .expect("get content")
        .into_inner();
    stalled
        .message()
        .await
        .expect("read")
        .expect("a first piece");
    // The slot is taken until the server ends the stalled download.
    let mut waits = 0;
    let back = loop {
        match read_content(&srv, org.token("alice"), &doc.id).await {
            Ok(back) => break back,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("max_concurrent_downloads"), "{s:?}");
                waits += 1;
                assert!(waits < 2400, "the stalled download was never ended");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        waits > 0,
        "the slot was taken while the first reader stalled"
    );
    assert!(back == body, "the document reads back byte-identical");
    // The stalled reader, reading again, gets an error, never a clean (truncated) end.
    let mut got = 0;
    let end = loop {
        match stalled.message().await {
            Ok(Some(c)) => got += c.data.len(),
            Ok(None) => panic!("a clean end after {got} bytes of {}", body.len()),
            Err(s) => break s,
        }
    };
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert!(got < body.len());
}

/// A detached CMS over `data` by bob (P-384, trusted through the test PKI), its one
/// SignerInfo repeated `signers` times.
fn cms_with_signers(data: &[u8], signers: usize) -> Vec<u8> {
    heavy_cms(data, signers, 0)
}

/// [`cms_with_signers`] carrying the test CRL `crls` times: every signer's validation looks at
/// each carried CRL (parses it and checks who signed it), which makes it costly.
fn heavy_cms(data: &[u8], signers: usize, crls: usize) -> Vec<u8> {
    use sha2::Digest;
    let cert = cert_der("officer-l3-p384");
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let attrs = paraph::crypto::build_signed_attributes(&digest, now, &cert, None).expect("attrs");
    let signature =
        paraph::crypto::sign_with_key(&key("officer-l3-p384"), &attrs).expect("signature");
    let alg = paraph::crypto::verify_signature_value(&cert, &attrs, &signature).expect("alg");
    let part = paraph::crypto::SignerPart {
        cert_der: cert.clone(),
        signed_attrs_der: attrs,
        signature,
        alg,
    };
    let chain = vec![cert, cert_der("signing-ca")];
    let cms = paraph::crypto::assemble(&[part], &chain, &[]).expect("assemble");
    let crl = openssl::x509::X509Crl::from_pem(&certs("crls.pem"))
        .expect("crl")
        .to_der()
        .expect("der");
    repeat_signer(&cms, signers, &crl.repeat(crls))
}

/// (tag, header length, content length) of the DER element at the start of `b`.
fn tlv(b: &[u8]) -> (u8, usize, usize) {
    let (tag, first) = (b[0], b[1] as usize);
    if first < 0x80 {
        return (tag, 2, first);
    }
    let n = first & 0x7f;
    let len = b[2..2 + n]
        .iter()
        .fold(0usize, |a, x| (a << 8) | *x as usize);
    (tag, 2 + n, len)
}

fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The elements inside the constructed element at the start of `b`.
fn children(b: &[u8]) -> Vec<&[u8]> {
    let (_, h, len) = tlv(b);
    let mut rest = &b[h..h + len];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (_, ch, cl) = tlv(rest);
        out.push(&rest[..ch + cl]);
        rest = &rest[ch + cl..];
    }
    out
}

fn repeat_signer(cms: &[u8], n: usize, crls: &[u8]) -> Vec<u8> {
    let top = children(cms); // OID, [0]
    let explicit = children(top[1]); // SignedData
    let signed = children(explicit[0]);
    let infos = children(signed[signed.len() - 1]);
    let one = infos[0];
    let set = element(0x31, &one.repeat(n));
    let mut sd: Vec<u8> = signed[..signed.len() - 1].concat();
    if !crls.is_empty() {
        sd.extend(element(0xa1, crls));
    }
    sd.extend(set);
    let sd = element(0x30, &sd);
    let wrapped = element(0xa0, &sd);
    element(0x30, &[top[0], &wrapped[..]].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cms_with_too_many_signer_infos_is_refused_naming_the_cap() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_server, srv) = serve(dir.path(), &[("PARAPH__MAX_CMS_SIGNERS", "8")]).await;
    let org = setup(&srv).await;
    common::set_trust(&srv, &org, vec![certs("crls.pem")]).await;
    let data = b"%PDF-1.7 signed";
    let mut sigs = common::sigs(&srv, org.token("alice"));
    let ok = sigs
        .validate_signature(proto::ValidateSignatureRequest {
            data: data.to_vec(),
            signature: cms_with_signers(data, 8),
            ..Default::default()
        })
        .await
        .expect("8 signers are within the cap")
        .into_inner();
    assert_eq!(ok.signers.len(), 8);
    let refused = sigs
        .validate_signature(proto::ValidateSignatureRequest {
            data: data.to_vec(),
            signature: cms_with_signers(data, 9),
            ..Default::default()
        })
        .await
        .expect_err("9 signers are beyond the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_cms_signers") && refused.message().contains('9'),
        "{refused:?}"
    );
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_reads_answer_while_heavy_validations_run() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (server, srv) = serve(
        dir.path(),
        &[
            ("PARAPH__MAX_CMS_SIGNERS", "300"),
            ("PARAPH__VALIDATION_WORKERS", "1"),
        ],
    )
    .await;
    let org = setup(&srv).await;
    // No CRL configured: those the signature carries are each looked at for every signer.
    common::set_trust(&srv, &org, vec![]).await;
    submit(&srv, &org, "visa", &[]).await;
    let data = b"%PDF-1.7 signed".to_vec();
    let cms = heavy_cms(&data, 300, 30);
    let pid = server.child.id();
    // What one validation costs, alone.
    let mut sigs = common::sigs(&srv, org.token("alice"));
    let request = proto::ValidateSignatureRequest {
        data: data.clone(),
        signature: cms.clone(),
        ..Default::default()
    };
    let t0 = cpu_ticks(pid);
    sigs.validate_signature(request.clone())
        .await
        .expect("validated");
    let cost = cpu_ticks(pid) - t0;
    eprintln!(
        "CMS of {} bytes; one validation costs {cost} ticks",
        cms.len()
    );
    assert!(
        cost >= 30,
        "a validation must be costly for this test ({cost} ticks)"
    );
    let start = cpu_ticks(pid);
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let validations: Vec<_> = (0..4)
        .map(|_| {
            let (mut sigs, request, answered) = (sigs.clone(), request.clone(), answered.clone());
            tokio::spawn(async move {
                let r = sigs.validate_signature(request).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            })
        })
        .collect();
    // The validations are running once the server has burnt a third of what one costs.
    let ticks = cost / 3;
    while cpu_ticks(pid) < start + ticks {
        assert_eq!(
            answered.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a validation ended before the server used {ticks} ticks: make them costlier"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let items = tokio::time::timeout(PATIENCE, inbox(&srv, &org, "alice"))
        .await
        .expect("the inbox answers");
    assert_eq!(items.len(), 1);
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the inbox answered only once a validation was done"
    );
    // The first validation still gives its full report (the others end with the server).
    let mut validations = validations.into_iter();
    let first = validations.next().expect("a validation");
    let report = tokio::time::timeout(PATIENCE, first)
        .await
        .expect("answered")
        .expect("join")
        .expect("validated")
        .into_inner();
    assert_eq!(report.signers.len(), 300);
}
