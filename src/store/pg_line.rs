//! One PostgreSQL connection driven on the thread that uses it.
//!
//! Owns the socket of a connection and the loop that moves its bytes: the calling thread
//! writes the request, sleeps in `poll(2)` until the answer arrives and reads it, without
//! handing anything to another thread. A round trip then costs the database's wake-up and the
//! caller's, nothing more: driving the connection from a runtime's task instead adds two
//! wake-ups of that task's thread per round trip, which on a busy machine doubled the CPU
//! time of a read. It knows nothing of the store's tables; `postgres.rs` builds on it.
//!
//! A line serves one caller at a time (its lock is held for the whole round trip), so a pool
//! holds several. The statements of one call are still pipelined: every future given to
//! [`Line::run`] sends its request before any answer is awaited.
//!
//! Supported: TCP hosts (with `hostaddr`) and Unix sockets, TLS on TCP as the URL's `sslmode`
//! says (see `pg_tls`). A connection that fails or stays silent past the line's patience is closed:
//! the caller gets [`StoreError::Database`] and the pool connects again.
//!
//! `unsafe` here is one `poll(2)` call on the connection's own socket (see [`wait_on`]).
#![allow(unsafe_code)]

use super::pg_tls::Target;
use super::StoreError;
use postgres_openssl::TlsStream;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, Connection};

/// The socket under a connection.
enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// A non-blocking socket as the client library wants it: an operation that would block
/// answers `Pending` (and a blocked write says so in `blocked_write`); the line's loop waits
/// on the socket and polls again.
struct Stream {
    socket: Socket,
    blocked_write: Arc<AtomicBool>,
}

/// `Pending` for an operation that would block, retried when interrupted.
fn nonblocking<T>(mut op: impl FnMut() -> io::Result<T>) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            other => return Poll::Ready(other),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let dst = buf.initialize_unfilled();
        let read = nonblocking(|| match &mut this.socket {
            Socket::Tcp(s) => s.read(dst),
            Socket::Unix(s) => s.read(dst),
        });
        match read {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = nonblocking(|| match &mut this.socket {
            Socket::Tcp(s) => s.write(src),
            Socket::Unix(s) => s.write(src),
        });
        if written.is_pending() {
            this.blocked_write.store(true, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = match &self.socket {
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
        Poll::Ready(Ok(()))
    }
}

/// What a line drives: the connection's half of the client library.
struct Wire {
    connection: Option<Connection<Stream, TlsStream<Stream>>>,
    fd: RawFd,
    blocked_write: Arc<AtomicBool>,
}

/// A connection with its client, driven by whichever thread calls [`Line::run`].
pub(super) struct Line {
    pub(super) client: Client,
    wire: Mutex<Wire>,
    /// The longest a call waits for the database without hearing from it.
    patience: Duration,
}

impl Line {
    /// Connects to the first reachable host `config` names and logs in.
    pub(super) fn connect(target: &Target, patience: Duration) -> Result<Line, StoreError> {
        let config = &target.config;
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        let (socket, host) = open_socket(config, connect_timeout)?;
        // No TLS over a Unix socket (as libpq).
        let unix_config;
        let config = match (&socket, target.wants_tls()) {
            (Socket::Unix(_), true) => {
                unix_config = config.clone().ssl_mode(SslMode::Disable).to_owned();
                &unix_config
            }
            _ => config,
        };
        let tls = target.tls(&host)?;
        let fd = socket.fd();
        let blocked_write = Arc::new(AtomicBool::new(false));
        let stream = Stream {
            socket,
            blocked_write: blocked_write.clone(),
        };
        // The log-in: the startup future drives the stream itself.
        let deadline = Instant::now() + connect_timeout;
        let mut startup = std::pin::pin!(config.connect_raw(stream, tls));
        let mut cx = Context::from_waker(Waker::noop());
        let (client, connection) = loop {
            blocked_write.store(false, Ordering::Relaxed);
            if let Poll::Ready(r) = startup.as_mut().poll(&mut cx) {
                break r.map_err(|e| match refused_certificate(&e) {
                    Some(why) => StoreError::DatabaseRefused(why),
                    None => super::postgres::db_error(e),
                })?;
            }
            wait_on(fd, blocked_write.load(Ordering::Relaxed), deadline)?;
        };
        Ok(Line {
            client,
            wire: Mutex::new(Wire {
                connection: Some(connection),
                fd,
                blocked_write,
            }),
            patience,
        })
    }

    /// Runs `fut` (made of this line's client's futures) to completion on this thread,
    /// driving the connection meanwhile. Fails, closing the connection, when it is lost or
    /// the database stays silent longer than the line's patience.
    pub(super) fn run<F: Future>(&self, fut: F) -> Result<F::Output, StoreError> {
        let mut wire = self
            .wire
            .lock()
            .map_err(|_| StoreError::Database("a connection's lock is poisoned".into()))?;
        let mut fut = std::pin::pin!(fut);
        // Set when a future or the connection frees the other (an answer handed over, room
        // made in a full channel): then there is more to do before any byte arrives.
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let deadline = Instant::now() + self.patience;
        loop {
            woken.0.store(false, Ordering::SeqCst);
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            wire.blocked_write.store(false, Ordering::Relaxed);
            let Some(connection) = wire.connection.as_mut() else {
                return Err(StoreError::Database("the connection is closed".into()));
            };
            if let Poll::Ready(ended) = Pin::new(connection).poll(&mut cx) {
                // Its requests fail once the connection is gone.
                wire.connection = None;
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return Ok(v);
                }
                return Err(StoreError::Database(match ended {
                    Ok(()) => "the connection was closed".into(),
                    Err(e) => format!("the connection was lost: {e}"),
                }));
            }
            // The answers the connection just read.
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            if woken.0.load(Ordering::SeqCst) {
                continue;
            }
            let blocked_write = wire.blocked_write.load(Ordering::Relaxed);
            if let Err(e) = wait_on(wire.fd, blocked_write, deadline) {
                wire.connection = None;
                return Err(e);
            }
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
            || self
                .wire
                .try_lock()
                .map(|w| w.connection.is_none())
                .unwrap_or(false)
    }
}

/// Records that a waker was woken (see [`Line::run`]).
struct Woken(AtomicBool);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps until `fd` is readable (or writable, when a write blocked), or fails at `deadline`.
fn wait_on(fd: RawFd, write: bool, deadline: Instant) -> Result<(), StoreError> {
    let mut events = libc::POLLIN;
    if write {
        events |= libc::POLLOUT;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Database(
                "the database did not answer in time".into(),
            ));
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, for the length of the call; `fd` stays open while the
        // line's connection (which owns the socket) exists, and callers only wait while it does.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(StoreError::Database(format!(
                    "waiting on the database: {e}"
                )));
            }
        }
    }
}

/// A non-blocking socket to the first host of `config` that answers.
/// Why the TLS handshake refused the server's certificate, when that is what `e` is (and not
/// a connection lost during the handshake, which waiting may cure).
fn refused_certificate(e: &tokio_postgres::Error) -> Option<String> {
    // The handshake's own error says what OpenSSL's check found (e.g. "unable to get local
    // issuer certificate", "hostname mismatch").
    let handshake = std::error::Error::source(e)?;
    let mut cause = Some(handshake);
    while let Some(c) = cause {
        if let Some(ssl) = c.downcast_ref::<openssl::ssl::Error>() {
            return ssl.ssl_error().map(|_| handshake.to_string());
        }
        cause = c.source();
    }
    None
}

/// The socket of the first reachable host, with the name TLS checks for it.
fn open_socket(config: &Config, timeout: Duration) -> Result<(Socket, String), StoreError> {
    let ports = config.get_ports();
    let port_of = |i: usize| {
        ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432)
    };
    let addrs = config.get_hostaddrs();
    let mut last = String::from("the [store] url names no host");
    let hosts = config.get_hosts();
    let count = hosts.len().max(addrs.len());
    for i in 0..count {
        let port = port_of(i);
        let attempt = match (hosts.get(i), addrs.get(i)) {
            (_, Some(ip)) => connect_tcp(&[std::net::SocketAddr::new(*ip, port)], timeout),
            (Some(Host::Tcp(name)), None) => match (name.as_str(), port).to_socket_addrs() {
                Ok(found) => connect_tcp(&found.collect::<Vec<_>>(), timeout),
                Err(e) => Err(format!("{name}: {e}")),
            },
            (Some(Host::Unix(dir)), None) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                std::os::unix::net::UnixStream::connect(&path)
                    .and_then(|s| s.set_nonblocking(true).map(|()| Socket::Unix(s)))
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
            (None, None) => continue,
        };
        // The name the server's certificate must carry: the host's, else the address's.
        let name = match (hosts.get(i), addrs.get(i)) {
            (Some(Host::Tcp(name)), _) => name.clone(),
            (_, Some(ip)) => ip.to_string(),
            _ => String::new(),
        };
        match attempt {
            Ok(s) => return Ok((s, name)),
            Err(e) => last = e,
        }
    }
    Err(StoreError::Database(format!("cannot connect: {last}")))
}

fn connect_tcp(addrs: &[std::net::SocketAddr], timeout: Duration) -> Result<Socket, String> {
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                let ready = s.set_nodelay(true).and_then(|()| s.set_nonblocking(true));
                match ready {
                    Ok(()) => return Ok(Socket::Tcp(s)),
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}
