//! Input meant to mislead or break the service or its users, from the attacker's side.
//!
//! - Terminal injection: a comment or a reason carrying escape sequences, carriage returns,
//!   bidirectional overrides or line feeds is printed escaped by the real `paraph show` and
//!   `paraph watch`, and cannot fake an "approved by …" line; `--json` keeps the exact text.
//! - A request body that is not protobuf, sent with a raw gRPC client over loopback, is
//!   INVALID_ARGUMENT (the caller's fault), not INTERNAL.
//! - Malformed certificates are refused saying what is wrong, without OpenSSL's error-queue
//!   codes and source locations.
//! - Server reflection is a setting: off, its service answers UNIMPLEMENTED.

mod common;

use common::cli::{lines, start_server, Cli, Proc};
use common::{Org, TestServer};
use paraph::proto;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const STOP: Duration = Duration::from_secs(30);
const FAKE: &str = "\r\x1b[2Kapproved by mayor";
/// The server trims the comment: the carriage return goes, the escape sequence stays.
const FAKE_ESCAPED: &str = "\\u{1b}[2Kapproved by mayor";
const REASON: &str = "\u{202e}nialc\n       approved by mayor at 2026-01-01T00:00:00Z";

/// Nothing in `out` drives a terminal, and no line of it is a forged approval.
#[track_caller]
fn inert(what: &str, out: &str) {
    for c in ['\x1b', '\r', '\u{202e}', '\u{8}', '\u{9b}'] {
        assert!(
            !out.contains(c),
            "{what} prints {:?} raw:\n{out}",
            c.escape_default().to_string()
        );
    }
    for line in out.lines() {
        assert!(
            !line.trim_start().starts_with("approved by mayor"),
            "{what} prints a forged line {line:?}:\n{out}"
        );
    }
}

/// Lines of `rx` until one contains `needle` (bounded wait); returns them all.
fn until(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(e) => panic!("no line with {needle:?} ({e:?}); seen:\n{seen}"),
        }
    }
    seen
}

#[test]
fn comments_and_reasons_are_printed_escaped_by_show_and_watch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, _out, operator, addr) = start_server(tmp.path());
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr,
    };
    for (name, role) in [
        ("alice", "officer"),
        ("bob", "officer"),
        ("finance", "submitter"),
    ] {
        cli.run(
            &operator,
            &["admin", "user", "create", name, "--role", role],
        )
        .ok();
    }
    let token = |u: &str| {
        cli.run(&operator, &["admin", "token", "issue", u])
            .ok()
            .trim()
            .to_owned()
    };
    let (alice, bob, finance) = (token("alice"), token("bob"), token("finance"));
    let circuit = tmp.path().join("c.toml");
    std::fs::write(
        &circuit,
        "name = \"two\"\n[[steps]]\nkind = \"visa\"\nactors = [\"alice\"]\n\
         [[steps]]\nkind = \"visa\"\nactors = [\"bob\"]\n",
    )
    .expect("write");
    cli.run(
        &operator,
        &[
            "circuit",
            "create",
            "--file",
            circuit.to_str().expect("path"),
        ],
    )
    .ok();
    let doc = tmp.path().join("doc.txt");
    std::fs::write(&doc, b"mandate 42").expect("write");

    // Bob watches: the events of his documents, as they happen.
    let mut watch_cmd = cli.command(&bob, &["watch"]);
    watch_cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut watch = Proc {
        child: watch_cmd.spawn().expect("spawn watch"),
    };
    let watch_out = lines(watch.child.stdout.take().expect("stdout"));
    let watch_err = lines(watch.child.stderr.take().expect("stderr"));
    until(&watch_err, "watching events");

    let id = cli.run(
        &finance,
        &[
            "submit",
            doc.to_str().expect("path"),
            "--type",
            "mandate",
            "--circuit",
            "two",
            "--title",
            "Mandate 42",
        ],
    );
    let id = id.ok().trim().to_owned();
    cli.run(&alice, &["approve", &id, "--comment", FAKE]).ok();
    cli.run(&bob, &["reject", &id, "--reason", REASON]).ok();

    let watched = until(&watch_out, "rejected");
    inert("watch", &watched);
    assert!(watched.contains(FAKE_ESCAPED), "{watched}");
    assert!(watched.contains("\\u{202e}nialc\\n"), "{watched}");

    let shown = cli.run(&bob, &["show", &id]);
    inert("show", shown.ok());
    assert!(shown.stdout.contains(FAKE_ESCAPED), "{}", shown.stdout);

    // JSON stays exact: the same text, decoded.
    let json = cli.run(&bob, &["show", &id, "--json"]).json();
    let details: Vec<&str> = json["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains(FAKE.trim_start())),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.contains(REASON)), "{details:?}");
    drop(watch);
    server.terminate(STOP);
}

/// A codec that sends raw bytes as the message and receives whatever comes back.
#[derive(Clone, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = prost::bytes::Buf::remaining(src);
        Ok(Some(prost::bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

/// Sends `body` as the one request message of `path`, authenticated as `token` in `tenant`.
async fn raw_call(srv: &TestServer, path: &'static str, token: &str, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(srv.channel());
    grpc.ready().await.expect("ready");
    let mut req = tonic::Request::new(tokio_stream::once(body));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    req.metadata_mut()
        .insert("x-paraph-tenant", "default".parse().expect("metadata"));
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match grpc.streaming(req, path, RawBytes).await {
        Ok(mut stream) => match stream.get_mut().message().await {
            Ok(m) => panic!("{:?}: answered {m:?}", stream.get_ref()),
            Err(s) => s,
        },
        Err(s) => s,
    }
}

#[tokio::test]
async fn a_request_body_that_is_not_protobuf_is_invalid_argument() {
    let srv = TestServer::start().await;
    // A field number 0 and a truncated varint: no protobuf decoder accepts either.
    for garbage in [vec![0x00, 0x01], vec![0x0a, 0xff, 0xff, 0xff]] {
        for path in [
            "/paraph.v1.AdminService/ListUsers",
            "/paraph.v1.DocumentService/GetDocument",
            "/paraph.v1.DocumentService/SubmitDocument",
        ] {
            let s = raw_call(&srv, path, &srv.operator, garbage.clone()).await;
            assert_eq!(s.code(), Code::InvalidArgument, "{path}: {s:?}");
            assert!(s.message().contains("protobuf"), "{path}: {s:?}");
        }
    }
    // The well-formed message on the same path is answered.
    let ok = srv
        .admin(&srv.operator, Some("default"))
        .list_users(proto::ListUsersRequest {})
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    srv.stop().await;
}

/// Whether `msg` carries OpenSSL's error-queue furniture rather than words.
fn openssl_internals(msg: &str) -> bool {
    msg.contains(".c:") || msg.contains("error:0") || msg.contains("routines")
}

#[tokio::test]
async fn malformed_certificates_are_refused_with_a_reason_not_openssl_internals() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "default").await;
    let garbage_der = vec![0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x01];
    let garbage_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
    let mut admin = srv.admin(org.token("boss"), None);
    for bytes in [garbage_der.clone(), garbage_pem.clone()] {
        let e = admin
            .set_trust(proto::SetTrustRequest {
                anchors: vec![bytes.clone()],
                policy_levels: vec![proto::PolicyLevel {
                    oid: "1.2.3".into(),
                    level: 1,
                }],
                ..Default::default()
            })
            .await
            .expect_err("garbage anchors");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("certificate"), "{e:?}");
        assert!(!openssl_internals(e.message()), "{e:?}");
        let e = admin
            .bind_certificate(proto::BindCertificateRequest {
                user: "alice".into(),
                certificate: bytes.clone(),
                idempotency_key: String::new(),
            })
            .await
            .expect_err("garbage certificate");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("certificate"), "{e:?}");
        assert!(!openssl_internals(e.message()), "{e:?}");
    }
    let e = admin
        .set_trust(proto::SetTrustRequest {
            anchors: vec![common::certs("root-ca.cert.pem")],
            crls: vec![garbage_der],
            policy_levels: vec![proto::PolicyLevel {
                oid: "1.2.3".into(),
                level: 1,
            }],
            ..Default::default()
        })
        .await
        .expect_err("garbage CRL");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("CRL"), "{e:?}");
    assert!(!openssl_internals(e.message()), "{e:?}");
    srv.stop().await;
}

/// The outcome of listing the services through reflection.
async fn reflection_answer(srv: &TestServer) -> Result<(), Status> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(srv.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(req))
        .await?
        .into_inner();
    let answer = stream.message().await?;
    assert!(answer.is_some(), "reflection answered nothing");
    Ok(())
}

/// The same through `grpc.reflection.v1alpha`, which older tools still speak: the services
/// listed.
async fn reflection_v1alpha_services(srv: &TestServer) -> Result<Vec<String>, Status> {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(srv.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(req))
        .await?
        .into_inner();
    match stream.message().await?.and_then(|a| a.message_response) {
        Some(MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("v1alpha reflection answered {other:?}"),
    }
}

#[tokio::test]
async fn server_reflection_is_a_setting_and_off_it_is_unimplemented() {
    let on = TestServer::start().await;
    assert!(reflection_answer(&on).await.is_ok());
    let listed = reflection_v1alpha_services(&on).await.expect("v1alpha");
    assert!(
        listed.iter().any(|s| s == "paraph.v1.DocumentService"),
        "{listed:?}"
    );
    on.stop().await;
    let off = TestServer::start_with(tempfile::tempdir().expect("tempdir"), None, |s| {
        s.reflection = false
    })
    .await;
    let e = reflection_answer(&off)
        .await
        .expect_err("reflection is off");
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    let e = reflection_v1alpha_services(&off)
        .await
        .expect_err("reflection is off");
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // The settings read it from the environment too.
    let env = [("PARAPH__REFLECTION".to_string(), "false".to_string())];
    let settings = paraph::config::Settings::load(None, env).expect("settings");
    assert!(!settings.reflection);
    off.stop().await;
    let _ = std::io::stdout().flush();
}
