//! The officers' web client, served on the gRPC port: its static files (built from `web/` and
//! embedded in the binary, so that running paraph needs no Node) answer `GET`/`HEAD` at `/`,
//! with security headers (a content security policy without inline code, no framing, no
//! referrer). Every other request goes on to the gRPC and gRPC-Web services unchanged.
//!
//! Serving these files needs no token: they hold no data, and the page authenticates its
//! gRPC-Web calls like any other client.

use super::guard::BoxFuture;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;

/// One embedded file: its path, media type and bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

const INDEX: &[u8] = include_bytes!("../../web/dist/index.html");

/// The files of the built client (`web/dist/`), committed so that `cargo build` alone suffices.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        media_type: "text/html; charset=utf-8",
        bytes: INDEX,
    },
    Asset {
        path: "/index.html",
        media_type: "text/html; charset=utf-8",
        bytes: INDEX,
    },
    Asset {
        path: "/app.js",
        media_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/dist/app.js"),
    },
    Asset {
        path: "/app.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/dist/app.css"),
    },
];

/// The page's content security policy: its own scripts, styles and API only; PDF previews from
/// the blob URLs the page makes; never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; frame-src blob:; object-src 'none'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers the web client's files and passes gRPC calls (always `POST`) on.
#[derive(Clone, Copy, Default)]
pub struct WebLayer;

impl<S> tower_layer::Layer<S> for WebLayer {
    type Service = Web<S>;

    fn layer(&self, inner: S) -> Web<S> {
        Web { inner }
    }
}

/// See [`WebLayer`].
#[derive(Clone)]
pub struct Web<S> {
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for Web<S>
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
        if req.method() == Method::POST {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(req));
        }
        let resp = asset(req.method(), req.uri().path());
        Box::pin(async move { Ok(resp) })
    }
}

/// The answer to a non-`POST` request: an embedded file, 404, or 405.
fn asset(method: &Method, path: &str) -> http::Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
            method,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return r;
    }
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n", method);
    };
    let mut r = respond(StatusCode::OK, a.bytes, method);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(a.media_type));
    r
}

fn plain(status: StatusCode, text: &'static str, method: &Method) -> http::Response<Body> {
    let mut r = respond(status, text.as_bytes(), method);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A response with the security headers every answer of the web side carries.
fn respond(status: StatusCode, bytes: &'static [u8], method: &Method) -> http::Response<Body> {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::new(Once(Some(Bytes::from_static(bytes))))
    };
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.len() as u64),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A body of one chunk.
struct Once(Option<Bytes>);

impl http_body::Body for Once {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}
