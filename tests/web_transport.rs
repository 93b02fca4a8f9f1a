//! The web client's side of the server, from a browser's point of view with raw HTTP: the page
//! and its files are served on the gRPC port over HTTP/1.1 and HTTP/2 with their security
//! headers and without a token; gRPC-Web calls over HTTP/1.1 reach the same services, and a
//! gRPC-Web call without a valid token is refused on its headers, before its body is read; a
//! whole document submitted in one gRPC-Web message, and one too large refused on its prefix.

mod common;

use bytes::Bytes;
use common::*;
use prost::Message as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 answer: status, headers (lowercase names), body (de-chunked).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (and `body`) on a fresh connection with `Connection: close` and reads the
/// whole answer.
async fn http1(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("no whole answer in time")
        .unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn get(path: &str, addr: SocketAddr) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

fn assert_security_headers(a: &Answer) {
    let csp = a.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn the_page_is_served_over_http1_with_security_headers_and_without_a_token() {
    let srv = TestServer::start().await;
    let page = http1(srv.addr, &get("/", srv.addr), b"").await;
    assert_eq!(page.status, 200);
    assert_security_headers(&page);
    assert!(page
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(html.contains(r#"<html lang="fr">"#), "French first");
    // No inline script or style, nothing from another origin.
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
    assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//"));
    for file in ["/app.js", "/app.css"] {
        let a = http1(srv.addr, &get(file, srv.addr), b"").await;
        assert_eq!(a.status, 200, "{file}");
        assert_security_headers(&a);
        assert!(!a.body.is_empty(), "{file}");
    }
    let js = http1(srv.addr, &get("/app.js", srv.addr), b"").await;
    assert!(js
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/javascript")));
    let missing = http1(srv.addr, &get("/secret", srv.addr), b"").await;
    assert_eq!(missing.status, 404);
    let head = http1(
        srv.addr,
        &format!(
            "HEAD / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            srv.addr
        ),
        b"",
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let put = http1(
        srv.addr,
        &format!(
            "PUT / HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            srv.addr
        ),
        b"",
    )
    .await;
    assert_eq!(put.status, 405);
    srv.stop().await;
}

#[tokio::test]
async fn the_page_is_served_over_http2_too() {
    let srv = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let req = http::Request::builder()
        .method("GET")
        .uri(format!("http://{}/", srv.addr))
        .body(())
        .unwrap();
    let (answer, _) = send.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, answer).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let mut body = resp.into_body();
    let mut html = Vec::new();
    while let Some(d) = body.data().await {
        html.extend_from_slice(&d.unwrap());
    }
    assert!(String::from_utf8_lossy(&html).contains("app.js"));
    srv.stop().await;
}

/// A gRPC-Web (binary) call's request head over HTTP/1.1.
fn grpc_web(addr: SocketAddr, path: &str, token: Option<&str>, len: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nAccept: application/grpc-web+proto\r\n{auth}Content-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    )
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    v.extend_from_slice(msg);
    v
}

/// The messages and the trailers of a gRPC-Web answer body (trailers-only answers carry the
/// status in the headers instead).
fn unframe(body: &[u8]) -> (Vec<Bytes>, String) {
    let mut msgs = Vec::new();
    let mut trailers = String::new();
    let mut rest = body;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let data = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(data));
        } else {
            msgs.push(Bytes::copy_from_slice(data));
        }
        rest = &rest[5 + len..];
    }
    (msgs, trailers)
}

fn grpc_status(a: &Answer) -> String {
    if let Some(s) = a.header("grpc-status") {
        return s.to_owned();
    }
    let (_, trailers) = unframe(&a.body);
    trailers
        .split("\r\n")
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn grpc_web_over_http1_reaches_the_services_with_a_token_only() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-web").await;
    create_circuit(&srv, &org, "v", vec![visa(&["alice"])]).await;
    let id = submit(&srv, &org, "v", &[]).await.id;
    let path = "/paraph.v1.DocumentService/ListInbox";
    let body = frame(&paraph::proto::ListInboxRequest::default().encode_to_vec());
    let a = http1(
        srv.addr,
        &grpc_web(srv.addr, path, Some(org.token("alice")), body.len()),
        &body,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/grpc-web")));
    assert_eq!(grpc_status(&a), "0");
    let (msgs, _) = unframe(&a.body);
    assert_eq!(msgs.len(), 1);
    let inbox = paraph::proto::ListInboxResponse::decode(msgs[0].clone()).unwrap();
    assert_eq!(
        inbox
            .items
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );

    // No token, or a wrong one: UNAUTHENTICATED (16), nothing listed.
    for token in [None, Some("pph_not-a-token")] {
        let a = http1(
            srv.addr,
            &grpc_web(srv.addr, path, token, body.len()),
            &body,
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(grpc_status(&a), "16", "{token:?}");
        assert!(unframe(&a.body).0.is_empty());
    }
    // Another tenant's user does not see the document: NOT_FOUND (5), as over gRPC.
    let other = Org::create(&srv, "ville-autre").await;
    let get_body = frame(&paraph::proto::GetDocumentRequest { id: id.clone() }.encode_to_vec());
    let a = http1(
        srv.addr,
        &grpc_web(
            srv.addr,
            "/paraph.v1.DocumentService/GetDocument",
            Some(other.token("alice")),
            get_body.len(),
        ),
        &get_body,
    )
    .await;
    assert_eq!(grpc_status(&a), "5");
    srv.stop().await;
}

#[tokio::test]
async fn a_grpc_web_call_without_a_token_is_refused_before_its_body_is_read() {
    let srv = TestServer::start().await;
    // Announces 100 MB and sends none of it: the answer comes on the headers alone.
    let head = grpc_web(
        srv.addr,
        "/paraph.v1.DocumentService/SubmitDocument",
        None,
        100_000_000,
    );
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(WAIT, async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer without the body");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("grpc-status: 16"), "{text}");
    srv.stop().await;
}

/// A browser submits in one gRPC-Web message (SubmitDocumentInline); one announcing more than
/// max_document_bytes is refused on its length prefix, with the words of a too-large upload,
/// without the server waiting for the rest.
#[tokio::test]
async fn a_whole_document_over_grpc_web_is_submitted_and_a_too_large_one_refused_on_its_prefix() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_document_bytes = 1000
    })
    .await;
    let org = Org::create(&srv, "ville-depot").await;
    create_circuit(&srv, &org, "v", vec![visa(&["alice"])]).await;
    let path = "/paraph.v1.DocumentService/SubmitDocumentInline";
    let request = |content: Vec<u8>| paraph::proto::SubmitDocumentInlineRequest {
        header: Some(header("v", "Déposé par la page", &[("amount", "10.00")])),
        content,
    };
    let body = frame(&request(b"%PDF-1.7 from a browser".to_vec()).encode_to_vec());
    let a = http1(
        srv.addr,
        &grpc_web(srv.addr, path, Some(org.token("finance")), body.len()),
        &body,
    )
    .await;
    assert_eq!(grpc_status(&a), "0");
    let (msgs, _) = unframe(&a.body);
    let doc = paraph::proto::Document::decode(msgs[0].clone()).unwrap();
    assert_eq!(doc.title, "Déposé par la page");
    assert_eq!(inbox(&srv, &org, "alice").await, vec![doc.id.clone()]);

    // 100 MB announced, only the prefix and a little sent: answered at once.
    let announced = 100_000_000u32;
    let head = grpc_web(
        srv.addr,
        path,
        Some(org.token("finance")),
        5 + announced as usize,
    );
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut start = vec![0u8];
    start.extend_from_slice(&announced.to_be_bytes());
    start.extend_from_slice(&[0u8; 64]);
    tcp.write_all(&start).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(WAIT, async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
            if text.contains("grpc-message") {
                break;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer before the body");
    // In the headers (a trailers-only answer) or in the trailers frame.
    let text = String::from_utf8_lossy(&raw)
        .to_ascii_lowercase()
        .replace("grpc-status: ", "grpc-status:");
    assert!(text.contains("grpc-status:8"), "{text}");
    assert!(
        text.contains("max_document_bytes") && text.contains("1000"),
        "{text}"
    );
    srv.stop().await;
}
