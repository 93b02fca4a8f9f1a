//! How the store's connections to PostgreSQL are secured: the `sslmode` and `sslrootcert` of
//! the `[store] url`, with libpq's meaning.
//!
//! - `disable`: no TLS;
//! - `prefer` (the default) and `require`: TLS when the server offers it (`require`: or no
//!   connection), the server's certificate not checked — what libpq does for these modes,
//!   which protects against a passive eavesdropper only;
//! - `verify-ca`: TLS, the server's chain checked against `sslrootcert=FILE` (PEM);
//! - `verify-full`: the same, and the host name (or IP address) the URL connects to must be
//!   in the certificate. What a database across a network should use.
//!
//! A Unix socket never uses TLS (as with libpq). This module owns only the TLS settings of a
//! connection; opening sockets and driving connections belong to `pg_line`.

use super::StoreError;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::{MakeTlsConnector, TlsConnector};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;

/// What a connection checks of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndHost,
}

/// A parsed `[store] url`: the client library's settings and the TLS policy.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) config: Config,
    verify: Verify,
    connector: Arc<SslConnector>,
}

impl Target {
    /// Parses `url` (a `postgresql://` URL or libpq `key=value` pairs). `redacted` names it in
    /// errors without its password.
    pub(super) fn parse(url: &str, redacted: &str) -> Result<Target, StoreError> {
        let bad = |m: String| StoreError::Database(format!("[store] url {redacted}: {m}"));
        let (rest, mode, root) = take_tls_params(url).map_err(bad)?;
        let config: Config = rest.parse().map_err(|e| bad(format!("{e}")))?;
        let verify = match mode.as_deref() {
            Some("verify-full") => Verify::ChainAndHost,
            Some("verify-ca") => Verify::Chain,
            _ => Verify::Nothing,
        };
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| bad(format!("TLS: {e}")))?;
        match (verify, root) {
            (Verify::Nothing, _) => builder.set_verify(SslVerifyMode::NONE),
            (_, None) => {
                return Err(bad(format!(
                    "sslmode={} needs sslrootcert=FILE (the PEM certificate of the CA that \
                     issued the database server's certificate)",
                    mode.unwrap_or_default()
                )))
            }
            (_, Some(file)) => builder.set_ca_file(&file).map_err(|e| {
                bad(format!(
                    "sslrootcert {}: cannot be read as PEM: {e}",
                    file.display()
                ))
            })?,
        }
        Ok(Target {
            config,
            verify,
            connector: Arc::new(builder.build()),
        })
    }

    /// Whether connections ask for TLS at all.
    pub(super) fn wants_tls(&self) -> bool {
        self.config.get_ssl_mode() != SslMode::Disable
    }

    /// The TLS side of one connection to `host` (the name or address connected to).
    pub(super) fn tls(&self, host: &str) -> Result<TlsConnector, StoreError> {
        let mut c = self
            .connector
            .configure()
            .map_err(|e| StoreError::Database(format!("TLS: {e}")))?;
        if self.verify != Verify::ChainAndHost {
            c.set_verify_hostname(false);
        }
        Ok(TlsConnector::new(c, host))
    }

    /// The same, for connections the client library opens itself (the listening one).
    pub(super) fn make_tls(&self) -> MakeTlsConnector {
        let mut m = MakeTlsConnector::new((*self.connector).clone());
        let verify = self.verify;
        m.set_callback(move |c, _| {
            if verify != Verify::ChainAndHost {
                c.set_verify_hostname(false);
            }
            Ok(())
        });
        m
    }
}

/// Takes `sslrootcert` and the verifying `sslmode`s (which the client library does not know)
/// out of `url`, leaving `sslmode=require` in their place.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<PathBuf>), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Option<String> {
        match key {
            "sslrootcert" => {
                root = Some(PathBuf::from(value));
                None
            }
            "sslmode" if value == "verify-ca" || value == "verify-full" => {
                mode = Some(value);
                Some("require".to_owned())
            }
            "sslmode" => {
                mode = Some(value.clone());
                Some(value)
            }
            _ => Some(value),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if let Some(v) = take(k, percent_decode(v)?) {
                        kept.push(if k == "sslmode" {
                            format!("sslmode={v}")
                        } else {
                            pair.to_owned()
                        });
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) => {
                    if let Some(v) = take(k, v.to_owned()) {
                        kept.push(if k == "sslmode" {
                            format!("sslmode={v}")
                        } else {
                            word.to_owned()
                        });
                    }
                }
                None => kept.push(word.to_owned()),
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// `%XX` escapes of a URL's query value.
fn percent_decode(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in {v:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{v:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_and_the_root_certificate_are_taken_out_of_a_url() {
        let (rest, mode, root) = take_tls_params(
            "postgresql://u@db:5432/p?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://u@db:5432/p?sslmode=require&application_name=x"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, mode, root) =
            take_tls_params("host=db sslmode=verify-ca sslrootcert=/c.pem").unwrap();
        assert_eq!(rest, "host=db sslmode=require");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root, Some(PathBuf::from("/c.pem")));
        let (rest, mode, _) = take_tls_params("postgresql://u@db/p?sslmode=disable").unwrap();
        assert_eq!(rest, "postgresql://u@db/p?sslmode=disable");
        assert_eq!(mode.as_deref(), Some("disable"));
        assert!(take_tls_params("postgresql://u@db/p?sslrootcert=%zz").is_err());
    }

    #[test]
    fn a_verifying_mode_without_a_root_certificate_is_refused_by_name() {
        let Err(e) = Target::parse("postgresql://u@db/p?sslmode=verify-full", "R") else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let Err(e) = Target::parse(
            "postgresql://u@db/p?sslmode=verify-ca&sslrootcert=/nonexistent",
            "R",
        ) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("/nonexistent"), "{e}");
    }
}
