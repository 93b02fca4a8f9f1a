//! The gate in front of every call, before its body is read: a `paraph.v1` call is
//! authenticated from its headers (a wrong or missing token is answered UNAUTHENTICATED without
//! reading a byte of the body), request bodies draw on one byte budget for the whole server,
//! and a call that is not answered in time is cut (DEADLINE_EXCEEDED). A `DocumentService`
//! request message longer than its call allows (a whole document for SubmitDocumentInline,
//! gRPC's usual 4 MiB for the others) is refused on its length prefix, before it is read (see
//! [`Cap`]).
//!
//! The services still authenticate each call themselves ([`super::principal`]): this gate is
//! about resources, not a replacement.

use super::conn::{CallOpen, ConnInfo};
use super::{transport_status, TransportError};
use crate::service::Paraph;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Status;

/// Calls whose request is a stream (uploads, reflection): their time is not bounded here.
const STREAMED_REQUESTS: &[&str] = &[
    "/paraph.v1.DocumentService/SubmitDocument",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Calls whose one request message carries a whole document (header and content): a
/// message longer than the largest document plus [`INLINE_HEADER_ROOM`] is refused when its
/// length prefix arrives, with the error a too-large streamed upload gets.
const WHOLE_DOCUMENT_REQUESTS: &[&str] = &["/paraph.v1.DocumentService/SubmitDocumentInline"];

/// Room for the header beside the content in a request that carries a whole document (the
/// services' decoding limit is the largest document plus this).
pub const INLINE_HEADER_ROOM: u64 = 1024 * 1024;

/// The service whose decoding limit is raised for [`WHOLE_DOCUMENT_REQUESTS`]: its other
/// calls keep gRPC's usual limit on one request message ([`MESSAGE_MAX`]), held here.
const DOCUMENT_SERVICE: &str = "/paraph.v1.DocumentService/";
/// gRPC's usual limit on one request message (tonic's default decoding limit).
const MESSAGE_MAX: u64 = 4 * 1024 * 1024;

/// The package whose calls need a token.
const PROTECTED: &str = "/paraph.v1.";

/// The bytes of request bodies the server may hold at once.
#[derive(Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

impl Budget {
    pub fn new(total: u64, wait: Duration) -> Budget {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Budget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            wait,
        }
    }
}

/// The gate's settings.
#[derive(Clone)]
pub struct GuardLayer {
    svc: Arc<Paraph>,
    budget: Arc<Budget>,
    timeout: Duration,
}

impl GuardLayer {
    pub fn new(svc: Arc<Paraph>, budget: Budget, timeout: Duration) -> GuardLayer {
        GuardLayer {
            svc,
            budget: Arc::new(budget),
            timeout,
        }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            gate: self.clone(),
        }
    }
}

/// The gate around the server's routes.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    gate: GuardLayer,
}

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower_service::Service<http::Request<Body>> for Guard<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let open = call_open(&req);
        let path = req.uri().path();
        let protected = path.starts_with(PROTECTED);
        let timed = !STREAMED_REQUESTS.contains(&path);
        let cap = if WHOLE_DOCUMENT_REQUESTS.contains(&path) {
            let max = gate.svc.limits().max_document_bytes;
            Some(Cap::Document {
                cap: max.saturating_add(INLINE_HEADER_ROOM),
                max,
            })
        } else if path.starts_with(DOCUMENT_SERVICE) {
            Some(Cap::Message { cap: MESSAGE_MAX })
        } else {
            None
        };
        Box::pin(async move {
            if protected {
                if let Err(status) = super::authenticate(&gate.svc, req.headers()).await {
                    // Answered before the body is read: the stream is reset, its data dropped.
                    return Ok(status.into_http());
                }
            }
            let req = req.map(|b| match cap {
                Some(cap) => Body::new(Budgeted::new(
                    Body::new(Capped::new(b, cap)),
                    gate.budget.clone(),
                )),
                None => Body::new(Budgeted::new(b, gate.budget.clone())),
            });
            let answer = inner.call(req);
            let resp = if timed {
                match tokio::time::timeout(gate.timeout, answer).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Ok(
                            transport_status(TransportError::Timeout(gate.timeout)).into_http()
                        )
                    }
                }
            } else {
                answer.await?
            };
            Ok(resp.map(|b| {
                Body::new(Counted {
                    inner: b,
                    _open: open,
                })
            }))
        })
    }
}

/// Counts the call on its connection (for the idle timeout) until its answer is over. tonic
/// puts the connection's info in the extensions, over TLS too.
fn call_open(req: &http::Request<Body>) -> Option<CallOpen> {
    Some(req.extensions().get::<ConnInfo>()?.state.begin())
}

/// An answer body that keeps its call counted open on the connection until it is dropped.
struct Counted {
    inner: Body,
    _open: Option<CallOpen>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long one request message of a call may be, and how a longer one is refused.
#[derive(Clone, Copy)]
enum Cap {
    /// A whole document (`max` = max_document_bytes) and its header: refused as a too-large
    /// upload is.
    Document { cap: u64, max: u64 },
    /// Any other message: refused as gRPC refuses a message over its decoding limit.
    Message { cap: u64 },
}

impl Cap {
    fn bytes(self) -> u64 {
        match self {
            Cap::Document { cap, .. } | Cap::Message { cap } => cap,
        }
    }

    fn refusal(self, found: u64) -> Status {
        match self {
            Cap::Document { max, .. } => super::to_status(crate::service::ServiceError::TooLarge(
                crate::service::transfers::too_large(max),
            )),
            Cap::Message { cap } => Status::out_of_range(format!(
                "the request message has {found} bytes, more than this method's limit of {cap} \
                 bytes"
            )),
        }
    }
}

/// A request body whose messages may not be longer than its [`Cap`]: one that is, is refused
/// as soon as its length prefix arrives (never read whole).
struct Capped {
    inner: Body,
    framing: Framing,
    cap: Cap,
}

impl Capped {
    fn new(inner: Body, cap: Cap) -> Capped {
        Capped {
            inner,
            framing: Framing::default(),
            cap,
        }
    }
}

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(d) = frame.data_ref() {
            this.framing.advance(d);
            if this.framing.largest > this.cap.bytes() {
                return Poll::Ready(Some(Err(this.cap.refusal(this.framing.largest))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Acquire = BoxFuture<Result<OwnedSemaphorePermit, AcquireError>>;

/// A data frame waiting for room in the budget, for a bounded time.
struct Waiting {
    frame: Frame<Bytes>,
    room: Acquire,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// Where a request body is in gRPC's framing: each message is a 5-byte prefix (compression
/// flag, length as u32) followed by that many bytes.
#[derive(Default)]
struct Framing {
    prefix: [u8; 5],
    have: usize,
    left: u64,
    /// The greatest message length a prefix declared so far.
    largest: u64,
}

impl Framing {
    /// Walks `data`. When a message ends in it, the number of its last bytes that belong to
    /// the next, unfinished message; `None` when all of it belongs to an unfinished message.
    fn advance(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        let mut ended = None;
        while i < data.len() {
            if self.have < self.prefix.len() {
                let take = (self.prefix.len() - self.have).min(data.len() - i);
                self.prefix[self.have..self.have + take].copy_from_slice(&data[i..i + take]);
                self.have += take;
                i += take;
                if self.have == self.prefix.len() {
                    let [_, a, b, c, d] = self.prefix;
                    self.left = u64::from(u32::from_be_bytes([a, b, c, d]));
                    self.largest = self.largest.max(self.left);
                }
            } else {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                self.left -= take as u64;
                i += take;
            }
            if self.have == self.prefix.len() && self.left == 0 {
                self.have = 0;
                ended = Some(data.len() - i);
            }
        }
        ended
    }
}

/// A request body that takes its bytes from the server's budget as they arrive and gives them
/// back as soon as the message they belong to is complete (it is then decoded and handed to
/// the service, out of this budget), or when the body is dropped. A call thus holds at most
/// one unfinished message's bytes: an upload does not hold its whole size.
struct Budgeted {
    inner: Body,
    budget: Arc<Budget>,
    held: Option<OwnedSemaphorePermit>,
    waiting: Option<Waiting>,
    framing: Framing,
}

impl Budgeted {
    fn new(inner: Body, budget: Arc<Budget>) -> Budgeted {
        Budgeted {
            inner,
            budget,
            held: None,
            waiting: None,
            framing: Framing::default(),
        }
    }

    fn held(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Takes `permit` for the bytes of `frame`, then gives back those of the messages it ends.
    fn pass(&mut self, frame: Frame<Bytes>, permit: OwnedSemaphorePermit) -> Frame<Bytes> {
        match self.held.as_mut() {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        let carry = frame.data_ref().and_then(|d| self.framing.advance(d));
        if let (Some(carry), Some(held)) = (carry, self.held.as_mut()) {
            let done = held.num_permits().saturating_sub(carry);
            drop(held.split(done));
        }
        frame
    }

    fn exhausted(&self) -> Status {
        transport_status(TransportError::Budget {
            total: self.budget.total,
        })
    }
}

impl http_body::Body for Budgeted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(w) = this.waiting.as_mut() {
            match w.room.as_mut().poll(cx) {
                Poll::Ready(Ok(permit)) => {
                    let frame = this.waiting.take().map(|w| w.frame);
                    return Poll::Ready(frame.map(|f| Ok(this.pass(f, permit))));
                }
                Poll::Ready(Err(_)) => {
                    this.waiting = None;
                    return Poll::Ready(Some(Err(this.exhausted())));
                }
                Poll::Pending => {
                    if w.deadline.as_mut().poll(cx).is_ready() {
                        this.waiting = None;
                        return Poll::Ready(Some(Err(this.exhausted())));
                    }
                    return Poll::Pending;
                }
            }
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let n = frame.data_ref().map_or(0, |d| d.len());
        if n == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        // A message larger than the whole budget can never be held: refused at once.
        let Some(want) = this
            .held()
            .checked_add(n)
            .filter(|w| *w <= this.budget.total)
            .and(u32::try_from(n).ok())
        else {
            return Poll::Ready(Some(Err(this.exhausted())));
        };
        match this.budget.bytes.clone().try_acquire_many_owned(want) {
            Ok(permit) => Poll::Ready(Some(Ok(this.pass(frame, permit)))),
            Err(tokio::sync::TryAcquireError::Closed) => Poll::Ready(Some(Err(this.exhausted()))),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                this.waiting = Some(Waiting {
                    frame,
                    room: Box::pin(this.budget.bytes.clone().acquire_many_owned(want)),
                    deadline: Box::pin(tokio::time::sleep(this.budget.wait)),
                });
                // Polls the new wait once, so that its wakers are registered.
                Pin::new(this).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    fn message(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.resize(5 + len as usize, 7);
        v
    }

    #[test]
    fn framing_finds_message_ends_across_any_split() {
        let mut body = message(10);
        body.extend(message(0));
        body.extend(message(3));
        // Messages end at 15, 20 and 28. Every split of the body in two: each part reports the
        // bytes after the last end it holds.
        let ends = [15, 20, 28];
        for cut in 0..=body.len() {
            let mut f = Framing::default();
            let (a, b) = body.split_at(cut);
            let last = ends.iter().rev().find(|e| **e <= cut && **e > 0);
            assert_eq!(f.advance(a), last.map(|e| cut - e), "cut at {cut}");
            let expected = (cut < 28).then_some(0);
            assert_eq!(f.advance(b), expected, "cut at {cut}");
        }
    }
}
