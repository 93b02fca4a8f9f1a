//! Settings: an optional TOML file, overridden by `PARAPH__…` environment variables, overridden
//! by command-line flags. Paths to secrets (TLS keys) are settings; secret contents never are,
//! and the `Debug` output of settings holds no secret.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory.
    pub data: PathBuf,
    /// The engine of a new data directory (`sled`, the default, or `redb`); a directory that
    /// already holds a store keeps its engine, and naming another one is refused.
    pub engine: Option<crate::store::EngineKind>,
    /// `[store]`: keep the records in PostgreSQL instead of the data directory (pooled
    /// platforms, several replicas on one database).
    pub store: StoreSettings,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: u64,
    /// Most live (not cancelled, not yet over) absences one user may have at a time.
    pub max_live_absences_per_user: usize,
    /// Bytes of uploads in flight (received, not yet stored) for the whole server.
    pub upload_budget_bytes: u64,
    /// Bytes of uploads in flight for one tenant.
    pub upload_tenant_budget_bytes: u64,
    /// Seconds an upload or a download may stay without progress before it is ended.
    pub transfer_idle_timeout_secs: u64,
    /// Bytes of content read from disk and sent per GetContent message.
    pub download_chunk_bytes: usize,
    /// GetContent streams served at once by the whole server.
    pub max_concurrent_downloads: usize,
    /// Largest CMS ValidateSignature accepts, in bytes.
    pub max_cms_bytes: usize,
    /// Most SignerInfos in a CMS ValidateSignature accepts.
    pub max_cms_signers: usize,
    /// Threads validating signatures (0: one less than the cores, at least one).
    pub validation_workers: usize,
    /// Validations waiting for a worker beyond those running; more are refused.
    pub validation_queue: usize,
    /// Tenant created on the first start.
    pub first_tenant: String,
    /// Optional TLS; with `client_ca`, clients must present a certificate it issued (mTLS).
    pub tls: Option<TlsSettings>,
    /// Seal keys by tenant id: `[seals.TENANT] p12 = "…", password_env = "VAR"`.
    pub seals: std::collections::BTreeMap<String, SealSettings>,
    /// The Ed25519 key (PKCS#8 PEM) that signs the audit logs' checkpoints. Default:
    /// `DATA/audit-key.pem`, generated on the first start.
    pub audit_key: Option<PathBuf>,
    /// Serve gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), which describes
    /// every service to anyone who connects: handy in development, not needed in production.
    pub reflection: bool,
    /// Most concurrent calls (HTTP/2 streams) one connection may have open; the client waits
    /// for one to end before it opens another.
    pub max_concurrent_streams: u32,
    /// Bytes of request bodies the whole server holds at once, for every call together. A call
    /// whose body would go beyond it waits `request_budget_wait_ms`, then fails with
    /// RESOURCE_EXHAUSTED. A call holds the bytes of the message it is receiving until that
    /// message is complete (an upload holds one chunk at a time, not its whole size).
    pub max_request_bytes_in_flight: u64,
    /// How long a request body waits for room in `max_request_bytes_in_flight`.
    pub request_budget_wait_ms: u64,
    /// A call must be answered within this time (streamed answers, like WatchEvents, only have
    /// to begin within it; uploads are not timed out here), else DEADLINE_EXCEEDED.
    pub request_timeout_secs: u64,
    /// A connection with no call open for this long is closed.
    pub idle_timeout_secs: u64,
    /// Interval of the HTTP/2 pings that check a connection's peer is still there.
    pub http2_keepalive_interval_secs: u64,
    /// A connection whose peer does not answer a ping within this time is closed.
    pub http2_keepalive_timeout_secs: u64,
    /// Idle time before TCP keepalive probes start on a connection.
    pub tcp_keepalive_secs: u64,
    /// PES V2 (XAdES-EPES) signatures: policy, production place, claimed role (`[pes]`).
    pub pes: crate::formats::xades_pes::PesSettings,
    /// PAdES signatures: space reserved for the CMS, `/Location` (`[pades]`).
    pub pades: crate::formats::pades::PadesSettings,
}

/// Where a tenant's seal key is. The password itself is read from an environment variable or a
/// file, so that it never sits in the settings file (`password` is for tests and the demo).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SealSettings {
    pub p12: PathBuf,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SealSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealSettings")
            .field("p12", &self.p12)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl SealSettings {
    /// The PKCS#12 password, from the first source configured.
    pub fn password(&self) -> Result<String, ConfigError> {
        if let Some(var) = &self.password_env {
            return std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!("seal password variable {var} is not set"))
            });
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
        }
        self.password.clone().ok_or_else(|| {
            ConfigError::Invalid("a seal needs password_env, password_file or password".into())
        })
    }
}

/// The file of a data directory that names seal keys kept there (written by `serve --demo`),
/// in the form of the settings' `[seals.TENANT]` tables; relative paths are relative to the
/// data directory.
pub const DATA_SEALS_FILE: &str = "seals.toml";

/// The seal keys a data directory keeps ([`DATA_SEALS_FILE`]); none when it has no such file.
pub fn data_seals(
    data: &Path,
) -> Result<std::collections::BTreeMap<String, SealSettings>, ConfigError> {
    let path = data.join(DATA_SEALS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let mut seals: std::collections::BTreeMap<String, SealSettings> = toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
    for seal in seals.values_mut() {
        seal.p12 = data.join(&seal.p12);
        if let Some(f) = &seal.password_file {
            seal.password_file = Some(data.join(f));
        }
    }
    Ok(seals)
}

/// `[store]`: where the records are kept when not in the data directory.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgresql://user:password@host:port/database`: the records live in that database
    /// (migrated with `paraph admin migrate`); the data directory then keeps only this
    /// process's lock and the uploads in progress. Unset: the embedded engine.
    pub url: Option<String>,
    /// Connections each process opens for reads (the writer has its own); each carries one
    /// read at a time.
    pub pool_size: usize,
    /// The longest a statement may run, in seconds (also bounds the wait for the write lock).
    pub statement_timeout_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            pool_size: 4,
            statement_timeout_secs: 30,
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    /// Without the database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.url.as_deref().map(crate::store::redact))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .finish()
    }
}

impl StoreSettings {
    /// The database to use, if any; `connect_wait` as [`crate::store::PgOptions`] says.
    pub fn postgres(
        &self,
        connect_wait: Option<std::time::Duration>,
    ) -> Option<crate::store::PgOptions> {
        self.url.as_ref().map(|url| crate::store::PgOptions {
            url: url.clone(),
            pool_size: self.pool_size.max(1),
            statement_timeout: std::time::Duration::from_secs(self.statement_timeout_secs.max(1)),
            connect_wait,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data: PathBuf::from("./data"),
            engine: None,
            store: StoreSettings::default(),
            max_document_bytes: 64 * 1024 * 1024,
            max_live_absences_per_user: crate::service::Limits::default()
                .max_live_absences_per_user,
            upload_budget_bytes: crate::service::Limits::default().upload_budget_bytes,
            upload_tenant_budget_bytes: crate::service::Limits::default()
                .upload_tenant_budget_bytes,
            transfer_idle_timeout_secs: crate::service::Limits::default()
                .transfer_idle_timeout
                .as_secs(),
            download_chunk_bytes: crate::service::Limits::default().download_chunk_bytes,
            max_concurrent_downloads: crate::service::Limits::default().max_concurrent_downloads,
            max_cms_bytes: crate::service::Limits::default().max_cms_bytes,
            max_cms_signers: crate::service::Limits::default().max_cms_signers,
            validation_workers: 0,
            validation_queue: crate::service::Limits::default().validation_queue,
            first_tenant: "default".to_owned(),
            tls: None,
            seals: Default::default(),
            audit_key: None,
            reflection: true,
            max_concurrent_streams: 100,
            max_request_bytes_in_flight: 256 * 1024 * 1024,
            request_budget_wait_ms: 2_000,
            request_timeout_secs: 60,
            idle_timeout_secs: 300,
            http2_keepalive_interval_secs: 60,
            http2_keepalive_timeout_secs: 20,
            tcp_keepalive_secs: 60,
            pes: Default::default(),
            pades: Default::default(),
        }
    }
}

/// Parses an environment value as a TOML value when it is one (numbers, booleans), else as a
/// string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

impl Settings {
    /// Loads `file` (when given, or `./paraph.toml` when it exists), then applies the
    /// `PARAPH__SECTION__KEY=value` variables found in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let default_file = Path::new("paraph.toml");
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None if default_file.exists() => Some(default_file.to_path_buf()),
            None => None,
        };
        let mut table = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("PARAPH__") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let mut t = &mut table;
            for (i, part) in path.iter().enumerate() {
                if i + 1 == path.len() {
                    t.insert(part.clone(), env_value(&v));
                } else {
                    let entry = t
                        .entry(part.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    t = entry.as_table_mut().ok_or_else(|| {
                        ConfigError::Invalid(format!("{k}: '{part}' is not a section"))
                    })?;
                }
            }
        }
        let settings = Settings::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// Refuses limits that would disable themselves: each must be above zero.
    pub fn check(&self) -> Result<(), ConfigError> {
        let limits = [
            (
                "max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            (
                "max_request_bytes_in_flight",
                self.max_request_bytes_in_flight,
            ),
            ("request_timeout_secs", self.request_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            (
                "http2_keepalive_interval_secs",
                self.http2_keepalive_interval_secs,
            ),
            (
                "http2_keepalive_timeout_secs",
                self.http2_keepalive_timeout_secs,
            ),
            ("tcp_keepalive_secs", self.tcp_keepalive_secs),
        ];
        for (key, value) in limits {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be above 0 (it is a limit; see the settings in the README)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:1\"\nmax_document_bytes = 10\n").unwrap();
        let s = Settings::load(
            Some(&f),
            [
                ("PARAPH__MAX_DOCUMENT_BYTES".to_string(), "20".to_string()),
                ("PARAPH__TLS__CERT".to_string(), "c.pem".to_string()),
                (
                    "PARAPH__UPLOAD_BUDGET_BYTES".to_string(),
                    "1024".to_string(),
                ),
                ("PARAPH__MAX_CMS_SIGNERS".to_string(), "4".to_string()),
                ("PARAPH__TLS__KEY".to_string(), "k.pem".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(s.max_document_bytes, 20);
        assert_eq!(s.upload_budget_bytes, 1024);
        assert_eq!(s.max_cms_signers, 4);
        assert_eq!(s.transfer_idle_timeout_secs, 30, "the default");
        assert_eq!(s.tls.unwrap().cert, PathBuf::from("c.pem"));
        std::fs::write(&f, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let e = Settings::load(Some(&f), []).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn the_engine_is_a_setting_and_an_unknown_one_is_refused() {
        let none: [(String, String); 0] = [];
        assert_eq!(Settings::load(None, none).unwrap().engine, None);
        let env = |v: &str| [("PARAPH__ENGINE".to_string(), v.to_string())];
        assert_eq!(
            Settings::load(None, env("redb")).unwrap().engine,
            Some(crate::store::EngineKind::Redb)
        );
        let e = Settings::load(None, env("rocksdb"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rocksdb") && e.contains("redb"), "{e}");
    }

    #[test]
    fn transport_limits_are_settings_and_zero_is_refused() {
        let env = |k: &str, v: &str| [(k.to_string(), v.to_string())];
        let s = Settings::load(None, env("PARAPH__IDLE_TIMEOUT_SECS", "7")).unwrap();
        assert_eq!(s.idle_timeout_secs, 7);
        let e = Settings::load(None, env("PARAPH__MAX_CONCURRENT_STREAMS", "0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_concurrent_streams"), "{e}");
    }
}
