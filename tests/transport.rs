//! Transport hardening, attacked from outside with a raw HTTP/2 client: calls without a token
//! are refused on their headers without their bodies being read (the server's memory does not
//! move), request bodies share one budget, streams per connection are capped, calls and idle
//! connections time out, and running out of file descriptors does not make the server spin.

mod common;

use bytes::Bytes;
use common::cli::{lines, next_line, store_args, token_of, Proc, BIN};
use common::TestServer;
use std::future::Future as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Longest wait for any one answer on real I/O.
const WAIT: Duration = Duration::from_secs(30);

/// A gRPC call's headers for `path`, with `token` as bearer when given.
fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(()).unwrap()
}

/// The first `len` bytes of a gRPC message announced as 4 MiB minus one byte: a body that never
/// ends (the rest is never sent).
fn unfinished_body(len: usize) -> Bytes {
    let announced: u32 = 4 * 1024 * 1024 - 1;
    let mut v = vec![0u8];
    v.extend_from_slice(&announced.to_be_bytes());
    v.resize(len, b'x');
    Bytes::from(v)
}

/// A whole gRPC message of `len` bytes that decodes as unknown fields (field 15, varint 120,
/// again and again).
fn whole_body(len: usize) -> Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    v.resize(5 + len, b'x');
    Bytes::from(v)
}

/// A raw HTTP/2 connection.
async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// An open call: its answer, and its body, never ended, kept to hold the stream open.
struct Open {
    answer: h2::client::ResponseFuture,
    body: h2::SendStream<Bytes>,
}

async fn open(
    send: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Bytes,
) -> Open {
    let mut ready = send.clone().ready().await.unwrap();
    let (answer, mut stream) = ready.send_request(req, false).unwrap();
    // Fails only when the server has already refused the stream (on its headers).
    let _ = stream.send_data(body, false);
    *send = ready;
    Open {
        answer,
        body: stream,
    }
}

/// The gRPC status code of an answer (trailers-only, or in the trailers).
async fn status_of(answer: h2::client::ResponseFuture) -> i32 {
    let resp = tokio::time::timeout(WAIT, answer)
        .await
        .expect("no answer in time")
        .expect("answer");
    let code = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .map(|v| v.to_str().unwrap().parse::<i32>().unwrap())
    };
    if let Some(c) = code(resp.headers()) {
        return c;
    }
    let mut body = resp.into_body();
    while let Some(d) = body.data().await {
        let _ = d;
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    code(&trailers).expect("grpc-status")
}

/// `paraph serve` in `dir` with `env` settings and, when given, a limit on open files.
fn serve(dir: &Path, env: &[(&str, &str)], nofile: Option<u64>) -> (Proc, String, SocketAddr) {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(common::isolated_config(dir))
        .args(store_args(&dir.join("data")))
        .arg("--json")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap());
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut server = Proc {
        child: cmd.spawn().expect("spawn paraph serve"),
    };
    let out = lines(server.child.stdout.take().unwrap());
    let boot: serde_json::Value = serde_json::from_str(&next_line(&out, "bootstrap")).unwrap();
    let operator = token_of(&boot);
    let listening = next_line(&out, "listening");
    let addr = listening
        .strip_prefix("paraph listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (server, operator, addr)
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The CPU time a process has used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which ends with the last ')').
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

const STATS: &str = "/paraph.v1.AdminService/GetServerStats";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_token_are_refused_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _operator, addr) = serve(dir.path(), &[], None);
    let pid = server.child.id();
    // 200 calls without a token over 4 connections, each sending 4 MiB minus 64 KiB of a
    // message announced as 4 MiB minus one byte, and never ending.
    let body = unfinished_body(4 * 1024 * 1024 - 64 * 1024);
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(h2_connect(addr).await);
    }
    let before = rss(pid);
    let mut calls = Vec::new();
    for i in 0..200 {
        let send = &mut conns[i % 4];
        calls.push(open(send, call(addr, STATS, None), body.clone()).await);
    }
    let mut held = Vec::new();
    for c in calls {
        assert_eq!(status_of(c.answer).await, 16, "UNAUTHENTICATED");
        held.push(c.body);
    }
    // The streams were refused on their headers: what was sent is not kept.
    let after = rss(pid);
    let grown = after.saturating_sub(before);
    eprintln!(
        "RSS {} -> {} KiB over 200 refused calls",
        before >> 10,
        after >> 10
    );
    assert!(
        grown < 40 * 1024 * 1024,
        "RSS grew by {} MiB ({} -> {} MiB)",
        grown >> 20,
        before >> 20,
        after >> 20
    );
    drop(held);
    drop(conns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_share_one_budget_for_the_whole_server() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_request_bytes_in_flight = 1024 * 1024;
        s.request_budget_wait_ms = 200;
    })
    .await;
    let addr = srv.addr;
    let token = srv.operator.clone();
    // Two authenticated callers, on two connections, each sending 700 KiB of a body that does
    // not end: together beyond the 1 MiB budget.
    let body = unfinished_body(700 * 1024);
    let mut a = h2_connect(addr).await;
    let mut b = h2_connect(addr).await;
    let first = open(&mut a, call(addr, STATS, Some(&token)), body.clone()).await;
    let second = open(&mut b, call(addr, STATS, Some(&token)), body.clone()).await;
    // One of them is refused; the other one keeps waiting for the rest of its body.
    let refused = tokio::select! {
        c = status_of(first.answer) => c,
        c = status_of(second.answer) => c,
    };
    assert_eq!(refused, 8, "RESOURCE_EXHAUSTED");
    // A body larger than the whole budget is refused without waiting.
    let huge = unfinished_body(1024 * 1024 + 64 * 1024);
    let mut c = h2_connect(addr).await;
    let over = open(&mut c, call(addr, STATS, Some(&token)), huge).await;
    assert_eq!(status_of(over.answer).await, 8, "RESOURCE_EXHAUSTED");
    // Hung up: their share returns to the budget and calls are served again.
    let (mut x, mut y) = (first.body, second.body);
    x.send_reset(h2::Reason::CANCEL);
    y.send_reset(h2::Reason::CANCEL);
    drop((a, b, c));
    let stats = srv
        .admin(&srv.operator, None)
        .get_server_stats(paraph::proto::GetServerStatsRequest {})
        .await;
    assert!(stats.is_ok(), "{stats:?}");
    // 900 KiB fit once the others are gone.
    let d = h2_connect(addr).await;
    let mut ready = d.clone().ready().await.unwrap();
    let (answer, mut stream) = ready
        .send_request(call(addr, STATS, Some(&token)), false)
        .unwrap();
    stream.send_data(whole_body(900 * 1024), true).unwrap();
    assert_eq!(status_of(answer).await, 0, "OK");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_budget_holds_one_chunk_at_a_time() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_request_bytes_in_flight = 1024 * 1024;
        s.request_budget_wait_ms = 200;
    })
    .await;
    let org = common::Org::create(&srv, "ville-t1").await;
    common::create_circuit(&srv, &org, "one", vec![common::visa(&["alice"])]).await;
    let content = vec![b'%'; 3 * 1024 * 1024];
    let mut docs = srv.docs(org.token("finance"), None);
    let header = common::header("one", "Budget", &[]);
    let doc = common::submit_raw(&mut docs, header, &content, 64 * 1024).await;
    assert!(doc.is_ok(), "{doc:?}");
}

#[tokio::test]
async fn streams_per_connection_are_capped() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_concurrent_streams = 3;
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (_send, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let advertised = tokio::time::timeout(
        WAIT,
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut conn).poll(cx);
            match conn.max_concurrent_send_streams() {
                n if n < 1_000 => std::task::Poll::Ready(n),
                _ => std::task::Poll::Pending,
            }
        }),
    )
    .await
    .expect("the server's SETTINGS");
    assert_eq!(advertised, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_finishes_is_cut_but_a_watch_is_not() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.request_timeout_secs = 1;
        s.idle_timeout_secs = 1;
    })
    .await;
    // A watch opened first, on the harness's connection.
    let mut watch = srv
        .docs(&srv.operator, Some("default"))
        .watch_events(paraph::proto::WatchEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut send = h2_connect(srv.addr).await;
    let started = Instant::now();
    let hung = open(
        &mut send,
        call(srv.addr, STATS, Some(&srv.operator)),
        unfinished_body(1024),
    )
    .await;
    assert_eq!(status_of(hung.answer).await, 4, "DEADLINE_EXCEEDED");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The watch lived through the request timeout and the idle timeout, its connection too.
    let next = tokio::time::timeout(Duration::from_millis(300), watch.message()).await;
    assert!(next.is_err(), "the watch ended: {next:?}");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.idle_timeout_secs = 1;
    })
    .await;
    // Connected and silent: the server sends its SETTINGS, then closes.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection is still open");
    // After an HTTP/2 handshake and no call, too.
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (_send, conn) = h2::client::handshake(tcp).await.unwrap();
    let ended = tokio::time::timeout(WAIT, conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
}

#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_dropped() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.http2_keepalive_interval_secs = 1;
        s.http2_keepalive_timeout_secs = 1;
    })
    .await;
    // An HTTP/2 client preface and empty SETTINGS, then deaf: no SETTINGS ack, no PING answer.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a deaf peer is still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_spin_and_service_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _operator, addr) = serve(dir.path(), &[], Some(64));
    let pid = server.child.id();
    // More connections than the server may have descriptors: it accepts until none is left.
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Let the server run into the limit (it answers each accepted connection's preface).
    for c in conns.iter_mut().take(10) {
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    }
    let start = cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - start;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let window = t0.elapsed().as_secs_f64() * hz as f64;
    eprintln!("CPU while out of descriptors: {used} of {window:.0} ticks");
    assert!(
        (used as f64) < window * 0.25,
        "the server used {used} ticks of CPU in {window:.0} while out of descriptors"
    );
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("cannot accept connections"), "{log}");
    // The connections close: the server serves again.
    drop(conns);
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await?;
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let r = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok::<_, Box<dyn std::error::Error>>(r.into_inner().status)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(status)) => {
                assert_eq!(status, 1, "SERVING");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "the server does not serve again: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
