//! Accepted connections: the stream of connections the server serves, with socket options set
//! (TCP_NODELAY, TCP keepalive), a back-off when accepting fails (file descriptors exhausted),
//! and an idle timeout: a connection with no call open for `idle` is closed.
//!
//! Owns the sockets only; what a call may do is [`super::guard`]'s business.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// First pause after a failed accept; doubled at each failure in a row up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this period while accepting keeps failing.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Options applied to each accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnOptions {
    /// Close a connection that has had no call open for this long.
    pub idle: Duration,
    /// Idle time before TCP keepalive probes.
    pub tcp_keepalive: Duration,
}

/// The calls open on one connection and since when it has none.
#[derive(Debug)]
pub struct ConnState {
    open: AtomicUsize,
    changed: Mutex<Instant>,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            open: AtomicUsize::new(0),
            changed: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// When the connection becomes idle for good: `None` while a call is open.
    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.changed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts a call open until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> CallOpen {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.touch();
        CallOpen(self.clone())
    }
}

/// A call open on a connection; dropped when its answer is over.
#[derive(Debug)]
pub struct CallOpen(Arc<ConnState>);

impl Drop for CallOpen {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the calls of a connection know of it (in the request extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<std::net::SocketAddr>,
    pub state: Arc<ConnState>,
}

/// An accepted TCP connection that ends itself (as if the peer had closed it) once it has had
/// no call open for the idle time.
pub struct Conn {
    io: TcpStream,
    info: ConnInfo,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(io: TcpStream, idle: Duration) -> Conn {
        let info = ConnInfo {
            remote_addr: io.peer_addr().ok(),
            state: Arc::new(ConnState::new()),
        };
        Conn {
            io,
            info,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// True once the connection has been idle for the idle time; otherwise arms the timer for
    /// the next check (registered with `cx`).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = match self.info.state.idle_since() {
                Some(since) if now.duration_since(since) >= self.idle => return true,
                Some(since) => since + self.idle,
                None => now + self.idle,
            };
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.expired(cx) {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        // What has arrived meanwhile is read first (a call may be beginning): the connection
        // then gets one more idle period.
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.timer.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => {
                tracing::debug!("closing an idle connection");
                // End of stream: the HTTP/2 connection ends as if the peer had left.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connections accepted on a listener. A failed accept that is not about one connection
/// (no file descriptor left, no memory) pauses accepting, 10 ms then doubling up to 1 s, and
/// is logged at most every 10 s; it never ends the stream.
pub struct Incoming {
    listener: TcpListener,
    options: ConnOptions,
    backoff: Duration,
    pause: Option<Pin<Box<Sleep>>>,
    failures: u64,
    logged: Option<Instant>,
}

impl Incoming {
    pub fn new(listener: TcpListener, options: ConnOptions) -> Incoming {
        Incoming {
            listener,
            options,
            backoff: MIN_BACKOFF,
            pause: None,
            failures: 0,
            logged: None,
        }
    }

    fn configure(&self, stream: &TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.options.tcp_keepalive)
            .with_interval(self.options.tcp_keepalive);
        if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
            tracing::warn!(error = %e, "cannot set TCP keepalive");
        }
    }

    fn failed(&mut self, e: &io::Error) {
        self.failures += 1;
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::warn!(error = %e, failures = self.failures, pause_ms = self.backoff.as_millis() as u64,
                "cannot accept connections; pausing");
            self.logged = Some(now);
            self.failures = 0;
        }
        self.pause = Some(Box::pin(tokio::time::sleep(self.backoff)));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// A failed accept about one connection only (it went away before we took it): retry at once.
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    this.backoff = MIN_BACKOFF;
                    this.configure(&stream);
                    return Poll::Ready(Some(Ok(Conn::new(stream, this.options.idle))));
                }
                Poll::Ready(Err(e)) if about_one_connection(&e) => continue,
                Poll::Ready(Err(e)) => this.failed(&e),
            }
        }
    }
}
