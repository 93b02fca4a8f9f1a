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

/// `host:port` becomes `http://host:port`; `http://` and `https://` addresses are kept.
pub fn normalize_addr(addr: &str) -> Result<String, CliError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(CliError::Usage("--addr is empty".into()));
    }
    if let Some((scheme, _)) = addr.split_once("://") {
        if scheme != "http" && scheme != "https" {
            return Err(CliError::Usage(format!(
                "--addr {addr}: the scheme must be http:// or https://"
            )));
        }
        return Ok(addr.to_owned());
    }
    Ok(format!("http://{addr}"))
}

fn read(what: &str, path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read {what} {}: {e}", path.display())))
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
            cfg = cfg.ca_certificate(Certificate::from_pem(read("CA file", ca)?));
        }
        match (&target.cert, &target.key) {
            (Some(cert), Some(key)) => {
                cfg = cfg.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
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
    let channel = endpoint.connect().await.map_err(|e| {
        let mut msg = format!("cannot connect to {addr}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        CliError::Connect(format!("{msg} (is `paraph serve` running there?)"))
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
