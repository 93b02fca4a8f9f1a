//! Connecting to a paraph server: address, optional TLS and client identity, and the metadata
//! every call carries (`authorization: Bearer <token>`, and `x-paraph-tenant` for the platform
//! operator). The token is marked sensitive so that it never shows up in debug output.

use super::error::CliError;
use crate::proto::{
    admin_service_client::AdminServiceClient, audit_service_client::AuditServiceClient,
    circuit_service_client::CircuitServiceClient,
    delegation_service_client::DelegationServiceClient,
    document_service_client::DocumentServiceClient,
    signature_service_client::SignatureServiceClient,
};
use std::path::PathBuf;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Metadata naming the tenant the platform operator acts in.
pub const TENANT_HEADER: &str = "x-paraph-tenant";

/// Where and how to connect, and as whom.
pub struct Target {
    pub addr: String,
    pub token: Option<String>,
    pub tenant: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Adds the bearer token and the tenant to every request.
#[derive(Clone)]
pub struct Auth {
    token: MetadataValue<Ascii>,
    tenant: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert("authorization", self.token.clone());
        if let Some(t) = &self.tenant {
            md.insert(TENANT_HEADER, t.clone());
        }
        Ok(req)
    }
}

pub type Chan = InterceptedService<Channel, Auth>;

/// The service clients over one connection.
pub struct Clients {
    pub admin: AdminServiceClient<Chan>,
    pub circuits: CircuitServiceClient<Chan>,
    pub docs: DocumentServiceClient<Chan>,
    pub sigs: SignatureServiceClient<Chan>,
    pub delegation: DelegationServiceClient<Chan>,
    pub audit: AuditServiceClient<Chan>,
}

/// The port of an address that names none (the server's default).
pub const DEFAULT_PORT: u16 = 50051;

/// `host:port` becomes `http://host:port`; `http://` and `https://` addresses are kept; an
/// address without a port (`localhost`, `https://paraph.example`, `[::1]`) gets port 50051.
pub fn normalize_addr(addr: &str) -> Result<String, CliError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(CliError::Usage("--addr is empty".into()));
    }
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => {
            if scheme != "http" && scheme != "https" {
                return Err(CliError::Usage(format!(
                    "--addr {addr}: the scheme must be http:// or https://"
                )));
            }
            (scheme, rest)
        }
        None => ("http", addr),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(CliError::Usage(format!("--addr {addr}: no host")));
    }
    // A port follows the last ':' unless that ':' is inside an IPv6 literal ("[::1]").
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let port = if has_port {
        String::new()
    } else {
        format!(":{DEFAULT_PORT}")
    };
    Ok(format!("{scheme}://{authority}{port}{path}"))
}

fn read(
    what: &str,
    path: &std::path::Path,
    kind: crate::pki::kind::FileKind,
) -> Result<Vec<u8>, CliError> {
    super::validation::read_kind(what, path, kind)
}

/// How the command connected, kept to explain a transport failure of a later call.
#[derive(Clone, Debug)]
struct Transport {
    addr: String,
    tls: bool,
    ca: bool,
    cert: bool,
}

static TRANSPORT: std::sync::OnceLock<Transport> = std::sync::OnceLock::new();

/// The messages of an error and its sources, each once (a source's text is often repeated in
/// the message of the error that wraps it).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// What the user should do about a failed connection or call, from its causes.
fn advice(t: &Transport, causes: &str) -> Option<String> {
    let has = |needle: &str| causes.contains(needle);
    if t.tls && (has("UnknownIssuer") || has("unknown issuer")) {
        return Some(if t.ca {
            "the server's TLS certificate is not issued by the CA of --ca: pass the CA that \
             issued it"
                .into()
        } else {
            "the server's TLS certificate is not issued by a CA this client trusts: pass \
             --ca FILE (the CA that issued it)"
                .into()
        });
    }
    if t.tls && (has("NotValidForName") || has("not valid for name")) {
        return Some(
            "the server's TLS certificate does not name this host: use in --addr a name it \
             was issued for"
                .into(),
        );
    }
    if t.tls && (has("CertificateRequired") || (!t.cert && has("HandshakeFailure"))) {
        return Some("the server wants a client certificate: pass --cert FILE --key FILE".into());
    }
    // A server that wants a client certificate ends the connection right after the handshake
    // of a client that has none (TLS 1.3: the client sees the connection closed).
    if t.tls && !t.cert && (has("connection closed") || has("canceled") || has("reset")) {
        return Some(
            "the server closed the connection after the TLS handshake: it wants a client \
             certificate: pass --cert FILE --key FILE"
                .into(),
        );
    }
    if t.tls && t.cert && (has("BadCertificate") || has("UnknownCA") || has("alert")) {
        return Some("the server refused the client certificate of --cert".into());
    }
    if t.tls && (has("InvalidContentType") || has("corrupt message") || has("InvalidMessage")) {
        return Some(format!(
            "the server does not speak TLS: use {}",
            t.addr.replacen("https://", "http://", 1)
        ));
    }
    if has("Connection refused") || has("connection refused") {
        return Some("nothing answers at that address: is `paraph serve` running there?".into());
    }
    None
}

/// Whether a TLS client gets a TLS answer at `addr` (an `http://` address): any certificate
/// verdict or alert means the server speaks TLS.
async fn speaks_tls(addr: &str) -> bool {
    let https = addr.replacen("http://", "https://", 1);
    let Ok(endpoint) = Endpoint::from_shared(https) else {
        return false;
    };
    let Ok(endpoint) = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tls_config(ClientTlsConfig::new().with_enabled_roots())
    else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(5), endpoint.connect()).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            let c = causes(&e);
            ["certificate", "Certificate", "alert", "UnknownIssuer"]
                .iter()
                .any(|n| c.contains(n))
        }
        Err(_) => false,
    }
}

/// Explains a call that failed on the transport (`UNKNOWN: transport error` and the like):
/// what the user should do, once, with the cause. Other errors pass unchanged.
pub async fn explain(r: Result<(), CliError>) -> Result<(), CliError> {
    let Err(CliError::Status(s)) = &r else {
        return r;
    };
    let Some(t) = TRANSPORT.get() else {
        return r;
    };
    if !matches!(
        s.code(),
        tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Internal
            | tonic::Code::Cancelled
    ) {
        return r;
    }
    let c = match std::error::Error::source(s) {
        Some(source) => causes(source),
        None if s.message().contains("transport error") => s.message().to_owned(),
        None => return r,
    };
    let hint = match advice(t, &c) {
        Some(h) => Some(h),
        None if !t.tls && speaks_tls(&t.addr).await => Some(format!(
            "the server speaks TLS: use {} (with --ca FILE when its certificate is not from \
             a public CA)",
            t.addr.replacen("http://", "https://", 1)
        )),
        // The handshake passed, then the connection failed: what a server that wants a
        // client certificate does to a client without one.
        None if t.tls && !t.cert => Some(
            "the connection failed after the TLS handshake: a server that wants a client \
             certificate does that; pass --cert FILE --key FILE"
                .into(),
        ),
        None => None,
    };
    match hint {
        Some(h) => Err(CliError::Connect(format!("{}: {h} ({c})", t.addr))),
        None => r,
    }
}

fn auth(target: &Target) -> Result<Auth, CliError> {
    let token = target
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::NoToken("no token: pass --token or set PARAPH_TOKEN".to_owned())
        })?;
    let mut token: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
        CliError::Usage("the token holds characters not allowed in a header".into())
    })?;
    token.set_sensitive(true);
    let tenant = match target.tenant.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(
            t.parse()
                .map_err(|_| CliError::Usage(format!("--tenant {t:?} is not a valid tenant id")))?,
        ),
    };
    Ok(Auth { token, tenant })
}

/// Connects to the server and returns authenticated clients.
pub async fn connect(target: &Target) -> Result<Clients, CliError> {
    let auth = auth(target)?;
    let addr = normalize_addr(&target.addr)?;
    let tls = addr.starts_with("https://");
    if !tls && (target.ca.is_some() || target.cert.is_some()) {
        return Err(CliError::Usage(format!(
            "--ca and --cert need an https:// address (got {addr})"
        )));
    }
    let mut endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| CliError::Usage(format!("--addr {addr}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if tls {
        let mut cfg = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &target.ca {
            cfg = cfg.ca_certificate(Certificate::from_pem(read(
                "CA file",
                ca,
                crate::pki::kind::FileKind::Certificate,
            )?));
        }
        match (&target.cert, &target.key) {
            (Some(cert), Some(key)) => {
                cfg = cfg.identity(Identity::from_pem(
                    read(
                        "client certificate",
                        cert,
                        crate::pki::kind::FileKind::Certificate,
                    )?,
                    read("client key", key, crate::pki::kind::FileKind::PrivateKey)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(CliError::Usage(
                    "--cert and --key go together (the client identity for mTLS)".into(),
                ))
            }
        }
        endpoint = endpoint
            .tls_config(cfg)
            .map_err(|e| CliError::Usage(format!("TLS settings: {e}")))?;
    }
    let transport = Transport {
        addr: addr.clone(),
        tls,
        ca: target.ca.is_some(),
        cert: target.cert.is_some(),
    };
    let _ = TRANSPORT.set(transport.clone());
    let channel = endpoint.connect().await.map_err(|e| {
        let c = causes(&e);
        match advice(&transport, &c) {
            Some(h) => CliError::Connect(format!("cannot connect to {addr}: {h} ({c})")),
            // Only a server that did not answer may be down.
            None if ["timed out", "lookup", "No route", "unreachable"]
                .iter()
                .any(|n| c.contains(n)) =>
            {
                CliError::Connect(format!(
                    "cannot connect to {addr}: {c} (is `paraph serve` running there?)"
                ))
            }
            None => CliError::Connect(format!("cannot connect to {addr}: {c}")),
        }
    })?;
    Ok(Clients {
        admin: AdminServiceClient::with_interceptor(channel.clone(), auth.clone()),
        circuits: CircuitServiceClient::with_interceptor(channel.clone(), auth.clone()),
        docs: DocumentServiceClient::with_interceptor(channel.clone(), auth.clone()),
        // A CRL of a trust set (GetValidationMaterial) can be megabytes: allow large answers.
        sigs: SignatureServiceClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(512 * 1024 * 1024),
        delegation: DelegationServiceClient::with_interceptor(channel.clone(), auth.clone()),
        // Evidence bundles carry the document: allow large answers.
        audit: AuditServiceClient::with_interceptor(channel, auth)
            .max_decoding_message_size(512 * 1024 * 1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            normalize_addr("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_addr("https://paraph.example:443/").unwrap(),
            "https://paraph.example:443"
        );
        assert!(normalize_addr("ftp://x:1").is_err());
        assert_eq!(
            normalize_addr("localhost").unwrap(),
            "http://localhost:50051"
        );
        assert_eq!(
            normalize_addr("https://paraph.example").unwrap(),
            "https://paraph.example:50051"
        );
        assert_eq!(normalize_addr("[::1]").unwrap(), "http://[::1]:50051");
        assert_eq!(normalize_addr("[::1]:7").unwrap(), "http://[::1]:7");
        assert!(normalize_addr(" ").is_err());
    }

    #[test]
    fn the_token_is_sent_as_a_sensitive_bearer_header() {
        let mut a = auth(&Target {
            addr: String::new(),
            token: Some("pph_secret".into()),
            tenant: Some("default".into()),
            ca: None,
            cert: None,
            key: None,
        })
        .unwrap();
        let req = a.call(Request::new(())).unwrap();
        let v = req.metadata().get("authorization").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), "Bearer pph_secret");
        assert_eq!(req.metadata().get(TENANT_HEADER).unwrap(), "default");
        assert!(!format!("{v:?}").contains("secret"));
    }

    #[test]
    fn a_missing_token_is_refused_locally() {
        let e = auth(&Target {
            addr: String::new(),
            token: None,
            tenant: None,
            ca: None,
            cert: None,
            key: None,
        })
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 4);
    }
}
