//! The command line of the `paraph` binary: the server commands (`serve`, `admin init`) and the
//! client commands (administration, circuits, documents) over the generated gRPC stubs.
//!
//! - [`main`] parses the command line, sets up logging (stderr, `RUST_LOG`), builds the runtime
//!   and dispatches; it owns the mapping from errors to exit codes (see [`error`]).
//! - `conn` connects (address, TLS, mTLS) and adds the token and tenant metadata to every call.
//! - `circuit_file` reads circuit TOML files.
//! - `render` turns replies into JSON (stable snake_case names) or human text.
//! - `commands` runs each client command; `signing` (`sign`), `validation` (`signatures`,
//!   `validate`) and `trust` (`admin trust`, `admin user bind-cert`) the certificate ones.
//! - `bench` (`paraph bench`) provisions a tenant and drives a load benchmark.
//! - `paraph pki verify` is [`crate::pki::PkiVerifyArgs`], run offline without a connection.
//!
//! Tokens are never logged; they are printed only by the commands whose purpose is to hand out a
//! new one (`admin tenant create`, `admin token issue`). Private keys and PKCS#12 passphrases
//! never leave the process and are never printed.

/// `print!` for human output: the text goes through [`render::for_terminal`] (no character
/// that drives the terminal reaches it raw). JSON is printed as it is, not with these.
macro_rules! print_text {
    ($($arg:tt)*) => {
        print!("{}", $crate::client::render::for_terminal(&format!($($arg)*)))
    };
}

/// `println!` for human output, as [`print_text!`].
macro_rules! println_text {
    ($($arg:tt)*) => {
        println!("{}", $crate::client::render::for_terminal(&format!($($arg)*)))
    };
}

/// `eprintln!` for human output (notes and errors on stderr), as [`print_text!`].
macro_rules! eprintln_text {
    () => {
        eprintln!()
    };
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::client::render::for_terminal(&format!($($arg)*)))
    };
}

pub mod absence;
pub mod api;
pub mod audit;
pub mod bench;
pub mod circuit_file;
mod commands;
mod conn;
pub mod error;
pub mod evidence;
pub mod keys;
pub mod pkcs11;
pub mod render;
pub mod signing;
pub mod trust;
pub mod validation;

use clap::{Args, Parser, Subcommand, ValueEnum};
use error::CliError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// paraph: electronic signature circuits (parapheur) over gRPC.
#[derive(Parser)]
#[command(name = "paraph", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// The client options, accepted before the command as well as after it
/// (`paraph --json --token T show ID`): clap hands their values to the command's own.
#[derive(Args)]
pub struct GlobalOpts {
    /// Server address (host, host:port or URL; port 50051 when none), for client commands.
    #[arg(long, global = true, value_name = "ADDR")]
    addr: Option<String>,
    /// Bearer token, for client commands.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Tenant to act in (for the platform operator).
    #[arg(long, global = true, value_name = "TENANT")]
    tenant: Option<String>,
    /// PEM file of the CA that issued the server's TLS certificate.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mTLS.
    #[arg(long, global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gRPC server (sled store in ./data, 127.0.0.1:50051 by default).
    Serve(ServeArgs),
    /// Administration: data directory, tenants, users and certificates, tokens, trust settings.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Approval circuits: create (a new version when the name exists), list, show.
    Circuit {
        #[command(subcommand)]
        command: CircuitCommand,
    },
    /// Submit a document to a circuit (prints the new document id).
    Submit(SubmitArgs),
    /// List the documents waiting for you.
    Inbox(InboxArgs),
    /// Show a document: state, steps, actions, history.
    Show(ShowArgs),
    /// Approve (visa) the active step of a document.
    Approve(ApproveArgs),
    /// Reject a document at its active step (ends the circuit).
    Reject(RejectArgs),
    /// Withdraw one of your documents while it is in progress.
    Withdraw(WithdrawArgs),
    /// Print the events that concern you as they happen, until interrupted.
    Watch(WatchArgs),
    /// Download the content of a document (checked against its SHA-256).
    Content(ContentArgs),
    /// Sign the active signature step of a document (or all waiting ones) with a PKCS#12 file
    /// or a smart card / USB token (PKCS#11).
    Sign(signing::SignArgs),
    /// Smart cards and USB tokens (PKCS#11): list the keys you can sign with.
    Token {
        #[command(subcommand)]
        command: pkcs11::TokenCommand,
    },
    /// List a document's signatures and write them as .p7s files.
    Signatures(validation::SignaturesArgs),
    /// Validate a detached CMS signature over a file (through the server, or offline with
    /// --trust). Exits 6 when the signature does not pass.
    Validate(validation::ValidateArgs),
    /// Absences: declare one with a delegate, list, cancel.
    Absence {
        #[command(subcommand)]
        command: absence::AbsenceCommand,
    },
    /// Move one step of a document from one actor to another (admins), with a reason.
    Reassign(absence::ReassignArgs),
    /// The tamper-evident audit log (auditors, admins): key, checkpoints, proofs, events,
    /// evidence bundles.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Verify a document's evidence bundle offline (no server, no token): log checkpoint,
    /// inclusion proofs, event chain, document, content and signatures. Exits 6 when refused.
    VerifyBundle(evidence::VerifyBundleArgs),
    /// Load benchmark with the platform operator token: provisions a fresh tenant trusting the
    /// TEST PKI and pushes documents through a visa and a signature, N at a time; reports
    /// throughput, latency percentiles per RPC, errors and the server's memory.
    Bench(bench::BenchArgs),
    /// The API for integrators, offline: `api descriptor` writes its descriptor set.
    Api {
        #[command(subcommand)]
        command: api::ApiCommand,
    },
    /// Certificate tools that work offline (no server, no token).
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Print the shell completion script for bash, zsh or fish, e.g.
    /// `paraph completions bash > ~/.local/share/bash-completion/completions/paraph`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Validate a certificate path (RFC 5280 + RGS) and print `valid` or why it is refused.
    /// Exits 0 valid, 1 refused, 2 bad input.
    Verify(crate::pki::PkiVerifyArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50051 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Storage engine of a new data directory (default: sled); an existing directory keeps
    /// its own, and naming another one is refused.
    #[arg(long, value_enum)]
    pub engine: Option<crate::store::EngineKind>,
    /// Keep the records in this PostgreSQL database (`[store] url`,
    /// `PARAPH__STORE__URL`) instead of the data directory.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Largest document accepted, in bytes.
    #[arg(long, value_name = "N")]
    pub max_document_bytes: Option<u64>,
    /// Print the first-start secrets as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also set up the demo tenant, trusting the TEST PKI (never for production).
    #[arg(long)]
    pub demo: bool,
    /// Directory of the test PKI used by --demo.
    #[arg(long, value_name = "DIR", default_value = "certs-test")]
    pub certs: PathBuf,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Initialise a data directory without serving: prints the operator token once.
    Init(InitArgs),
    /// Convert a stopped server's data directory from sled to redb, in place.
    Convert(ConvertArgs),
    /// Recovery without a server: issue a platform operator token from the data directory of a
    /// stopped server (refused while one runs). Prints it once; every tenant's audit log
    /// records it.
    OperatorToken(OperatorTokenArgs),
    /// Verify a stopped server's data directory end to end (records, indexes, value log,
    /// audit logs); exits non-zero and lists each problem when something is wrong.
    Check(CheckArgs),
    /// Compact a stopped server's value log: keep the values still in use, drop the others.
    Compact(CompactArgs),
    /// Create or upgrade the PostgreSQL schema of `[store] url` to this version's (refused
    /// when the database's schema is newer).
    Migrate(MigrateArgs),
    /// Copy a stopped server's data directory into an empty PostgreSQL database, then verify
    /// every record and the audit logs there.
    Copy(CopyArgs),
    /// Tenants (platform operator only).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Users of a tenant.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Trust settings of the tenant: anchors, intermediates, CRLs, accepted policies.
    Trust {
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
}

#[derive(Args)]
pub struct CompactArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (its server must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Most pointers moved per index transaction.
    #[arg(long, default_value_t = 10_000, hide = true)]
    pub batch: usize,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (its server must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The engine to convert to (only redb: a sled directory becomes a redb one).
    #[arg(long, value_enum)]
    pub to: crate::store::EngineKind,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep the records in this PostgreSQL database (`[store] url`,
    /// `PARAPH__STORE__URL`) instead of the data directory.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CopyArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory to copy (its server must be stopped).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The PostgreSQL database to copy into (migrated first if it has no schema; it must hold
    /// no records).
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub to: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (its server must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Keep the records in this PostgreSQL database (`[store] url`,
    /// `PARAPH__STORE__URL`) instead of the data directory.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

#[derive(Args)]
pub struct InitArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Storage engine of a new data directory (default: sled).
    #[arg(long, value_enum)]
    pub engine: Option<crate::store::EngineKind>,
    /// Keep the records in this PostgreSQL database (`[store] url`,
    /// `PARAPH__STORE__URL`) instead of the data directory.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Print the secrets as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by every client command.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// Server address: host, host:port, http://host:port, or https://host:port for TLS (port
    /// 50051 when none is given).
    #[arg(
        long,
        env = "PARAPH_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_name = "ADDR"
    )]
    pub addr: String,
    /// Bearer token.
    #[arg(
        long,
        env = "PARAPH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Tenant to act in (for the platform operator).
    #[arg(long, env = "PARAPH_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// PEM file of the CA that issued the server's TLS certificate.
    #[arg(long, env = "PARAPH_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mTLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print JSON (stable snake_case field names) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The idempotency key of a mutating command.
#[derive(Args, Clone)]
pub struct IdemOpts {
    /// Idempotency key (1..=128 printable ASCII, no spaces); a retry with the same key changes
    /// nothing and returns the first answer. Default: a fresh time-ordered key (UUIDv7-like:
    /// milliseconds first, then random bits).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first administrator; prints the administrator's token once.
    /// Needs the platform operator token (any --tenant is ignored).
    Create {
        /// Tenant id: [a-z0-9-]{2,63}.
        id: String,
        /// Display name.
        #[arg(long, value_name = "DISPLAY")]
        name: Option<String>,
        /// User name of the tenant's first administrator (default: admin).
        #[arg(long, value_name = "USER")]
        admin: Option<String>,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Submitter,
    Officer,
    Admin,
    Auditor,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user with one or more roles.
    Create {
        /// User name, unique in the tenant: [a-z0-9._-]{1,64}.
        name: String,
        /// A role (repeat for several).
        #[arg(long, value_enum, ignore_case = true, required = true)]
        role: Vec<RoleArg>,
        /// Display name.
        #[arg(long = "name", value_name = "DISPLAY")]
        display_name: Option<String>,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List the users of the tenant (with their bound certificates).
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Bind a signing certificate to a user (PEM or DER): he may sign only with bound ones.
    BindCert {
        /// User name.
        user: String,
        /// The certificate file.
        #[arg(value_name = "CERT_FILE")]
        certificate: PathBuf,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user (or, with --operator, a platform operator token). Prints the
    /// token alone on stdout (shown once), its id on stderr.
    Issue {
        /// User name.
        #[arg(required_unless_present = "operator")]
        user: Option<String>,
        /// A platform operator token (with the operator token; any --tenant is ignored).
        #[arg(long, conflicts_with = "user")]
        operator: bool,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Revoke a token by its id, or by the token itself (only its SHA-256 is sent). With
    /// --operator, a platform operator token: the last live one is refused (rotate it instead).
    Revoke {
        /// The token id, or the token (`pph_…`).
        #[arg(value_name = "TOKEN_ID_OR_TOKEN")]
        token_id: String,
        /// A platform operator token (with the operator token; any --tenant is ignored).
        #[arg(long)]
        operator: bool,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List the tenant's tokens (admins), or with --operator the platform operator tokens:
    /// ids, users, created, last used (to the minute) and revoked, never the secrets.
    List {
        /// Only this user's tokens.
        user: Option<String>,
        /// The platform operator tokens (with the operator token; any --tenant is ignored).
        #[arg(long)]
        operator: bool,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Replace the platform operator token this command runs with: a new one is issued and the
    /// current one revoked in one step. Prints the new token alone on stdout (shown once).
    Rotate {
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
}

#[derive(Args)]
pub struct OperatorTokenArgs {
    /// Settings file (default: ./paraph.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (its server must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Keep the records in this PostgreSQL database (`[store] url`,
    /// `PARAPH__STORE__URL`) instead of the data directory.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Also revoke every other operator token (one may have leaked).
    #[arg(long)]
    pub revoke_others: bool,
    /// Print the token as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CircuitCommand {
    /// Create a circuit from a TOML file (a new version when the name exists).
    Create {
        /// The circuit file (see the README: name, fallback, [[steps]]).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List the circuits (latest version of each).
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Show a circuit.
    Show {
        /// Circuit name.
        name: String,
        /// Version (default: the latest).
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        #[command(flatten)]
        c: ClientOpts,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DocTypeArg {
    #[value(name = "MANDATE")]
    Mandate,
    #[value(name = "CONTRACT")]
    Contract,
    #[value(name = "OTHER")]
    Other,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The document file (streamed in 1 MiB chunks).
    pub file: PathBuf,
    /// Document type (case-insensitive).
    #[arg(long = "type", value_enum, ignore_case = true, value_name = "TYPE")]
    pub doc_type: DocTypeArg,
    /// Circuit name (its latest version is pinned).
    #[arg(long, value_name = "NAME")]
    pub circuit: String,
    /// Title.
    #[arg(long, value_name = "T")]
    pub title: String,
    /// Metadata entry key=value (repeat), e.g. --meta amount=1200.50.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Signature format: auto (pades for a PDF, xades-pes for a PES V2 flow, cades otherwise),
    /// cades, pades, xades-pes.
    #[arg(long, value_name = "FORMAT", default_value = "auto",
          value_parser = ["auto", "cades", "pades", "xades-pes"])]
    pub format: String,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct InboxArgs {
    /// Items per page (server default 50, at most 500).
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Continue from a page token printed by a previous call.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Document id.
    pub id: String,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ApproveArgs {
    /// Document id.
    pub id: String,
    /// Comment recorded with the visa.
    #[arg(long, value_name = "C")]
    pub comment: Option<String>,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct RejectArgs {
    /// Document id.
    pub id: String,
    /// Why the document is rejected (required).
    #[arg(long, value_name = "R")]
    pub reason: String,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct WithdrawArgs {
    /// Document id.
    pub id: String,
    /// Why the document is withdrawn.
    #[arg(long, value_name = "R")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub idem: IdemOpts,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ContentArgs {
    /// Document id.
    pub id: String,
    /// Where to write the content (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Which content: 0 as submitted, N the Nth signed revision (a PES flow signed inside);
    /// default the latest.
    #[arg(long, value_name = "N")]
    pub revision: Option<u32>,
    #[command(flatten)]
    pub c: ClientOpts,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

/// The most threads the blocking pool may run: twice the cores, at least 4. What runs there is
/// CPU work (signature verification, chain validation) and short store reads, so threads
/// beyond the cores only add context switches and allocator arenas: with tokio's default (up
/// to 512, of which 56 were started under a 64-client load) the server spent 8 to 15 % more
/// CPU per document than with 4 on two cores (BENCHMARKS.md). Work beyond it waits its turn.
fn blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (2 * cores).max(4)
}

fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut b = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.max_blocking_threads(blocking_threads());
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))
}

/// The settings of a command that works on a data directory: the file and the environment,
/// then its `--data` and `--engine` flags when given.
fn local_settings(
    config: Option<&std::path::Path>,
    data: Option<PathBuf>,
    engine: Option<crate::store::EngineKind>,
) -> Result<crate::config::Settings, CliError> {
    local_settings_with(config, data, engine, None)
}

/// [`local_settings`] with the `--store` flag of the commands that take it.
fn local_settings_with(
    config: Option<&std::path::Path>,
    data: Option<PathBuf>,
    engine: Option<crate::store::EngineKind>,
    store: Option<String>,
) -> Result<crate::config::Settings, CliError> {
    let mut settings = crate::config::Settings::load(config, std::env::vars())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(d) = data {
        settings.data = d;
    }
    if store.is_some() {
        settings.store.url = store;
    }
    if engine.is_some() {
        settings.engine = engine;
    }
    Ok(settings)
}

fn serve(a: ServeArgs) -> Result<(), CliError> {
    let mut settings = local_settings_with(a.config.as_deref(), a.data, a.engine, a.store)?;
    if let Some(l) = a.listen {
        settings.listen = l;
    }
    if let Some(m) = a.max_document_bytes {
        settings.max_document_bytes = m;
    }
    runtime(true)?
        .block_on(crate::server::run_with(
            settings,
            a.json,
            a.demo.then_some(a.certs),
        ))
        .map_err(|e| CliError::Local(e.to_string()))
}

fn admin_init(a: InitArgs) -> Result<(), CliError> {
    let settings = local_settings_with(a.config.as_deref(), a.data, a.engine, a.store)?;
    let fresh =
        crate::server::admin_init(&settings, a.json).map_err(|e| CliError::Local(e.to_string()))?;
    if !fresh {
        eprintln_text!(
            "paraph: {} is already initialised (its operator token was printed when it was \
             initialised)",
            settings.data.display()
        );
    }
    Ok(())
}

fn admin_convert(a: ConvertArgs) -> Result<(), CliError> {
    let settings = local_settings(a.config.as_deref(), a.data, None)?;
    if a.to != crate::store::EngineKind::Redb {
        return Err(CliError::Usage(format!(
            "only a conversion to redb exists, not to {}",
            a.to
        )));
    }
    let keys = crate::store::convert_sled_to_redb(&settings.data)
        .map_err(|e| CliError::Precondition(e.to_string()))?;
    eprintln_text!(
        "paraph: {} converted to redb ({keys} keys copied and checked); sled's files are kept \
         in its sled-before-conversion/ until you remove them",
        settings.data.display()
    );
    Ok(())
}

fn admin_operator_token(a: OperatorTokenArgs) -> Result<(), CliError> {
    let settings = local_settings_with(a.config.as_deref(), a.data, None, a.store)?;
    let out =
        crate::server::admin_operator_token(&settings, a.revoke_others).map_err(|e| match e {
            // The data directory in use, whether the records are in it or in PostgreSQL.
            crate::server::ServerError::Store {
                source: crate::store::StoreError::InUse(_),
                ..
            }
            | crate::server::ServerError::Database {
                source: crate::store::StoreError::InUse(_),
                ..
            } => CliError::Precondition(format!(
                "{e}: stop the server first, or rotate online (paraph admin token rotate)"
            )),
            e => CliError::Local(e.to_string()),
        })?;
    let revoked: Vec<String> = out.revoked.iter().map(|id| id.to_string()).collect();
    if a.json {
        commands::print_json(&serde_json::json!({
            "token": out.token.secret,
            "token_id": out.token.id.to_string(),
            "revoked": revoked,
        }));
    } else {
        println_text!("{}", out.token.secret);
        eprintln_text!(
            "operator token id {} (the token is shown once: store it safely)",
            out.token.id
        );
        if !revoked.is_empty() {
            eprintln_text!("revoked operator tokens: {}", revoked.join(", "));
        }
    }
    Ok(())
}

/// The crash tests' fault injection: `PARAPH_TEST_COMPACT_ABORT=STEP[:N]` aborts the process
/// (as a kill would stop it) the Nth time (default 1) compaction reaches STEP.
fn compact_abort_hook() -> Result<Option<(String, usize)>, CliError> {
    let Ok(spec) = std::env::var("PARAPH_TEST_COMPACT_ABORT") else {
        return Ok(None);
    };
    let (step, nth) = match spec.split_once(':') {
        Some((s, n)) => (
            s,
            n.parse::<usize>().map_err(|_| {
                CliError::Usage(format!(
                    "PARAPH_TEST_COMPACT_ABORT={spec}: expected STEP[:N]"
                ))
            })?,
        ),
        None => (spec.as_str(), 1),
    };
    Ok(Some((step.to_owned(), nth)))
}

fn admin_compact(a: CompactArgs) -> Result<(), CliError> {
    let settings = local_settings(a.config.as_deref(), a.data, None)?;
    let abort_at = compact_abort_hook()?;
    let seen = std::cell::Cell::new(0usize);
    let on_step = |step: crate::store::CompactStep| {
        if let Some((name, nth)) = &abort_at {
            if step.name() == name {
                seen.set(seen.get() + 1);
                if seen.get() == *nth {
                    std::process::abort();
                }
            }
        }
    };
    let opts = crate::store::CompactOptions {
        batch: a.batch,
        on_step: &on_step,
    };
    let r = crate::store::compact_value_log(&settings.data, &opts)
        .map_err(|e| CliError::Precondition(e.to_string()))?;
    eprintln!(
        "paraph: {} compacted: {} values kept in generation {} of the value log, which went \
         from {} to {} bytes",
        settings.data.display(),
        r.values,
        r.generation,
        r.bytes_before,
        r.bytes_after
    );
    let mut kinds: Vec<_> = r.kept_by_kind.iter().collect();
    kinds.sort_by_key(|(_, (_, bytes))| std::cmp::Reverse(*bytes));
    for (kind, (n, bytes)) in kinds {
        eprintln!("  {kind}/…: {n} values, {bytes} bytes");
    }
    Ok(())
}

fn admin_check(a: CheckArgs) -> Result<(), CliError> {
    let settings = local_settings_with(a.config.as_deref(), a.data, None, a.store)?;
    let report =
        crate::server::admin_check(&settings).map_err(|e| CliError::Precondition(e.to_string()))?;
    for p in &report.problems {
        // Keys may hold what users typed: no control character reaches the terminal.
        let shown: String = p
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        println!("problem: {shown}");
    }
    let summary = format!(
        "{}: {} records ({} without a checksum, written by an older version), {} audit logs",
        settings.data.display(),
        report.records,
        report.unchecked,
        report.tenants
    );
    if report.ok() {
        println!("ok: {summary}");
        Ok(())
    } else {
        Err(CliError::Partial(format!(
            "{} problems in {summary}",
            report.problems.len()
        )))
    }
}

fn admin_migrate(a: MigrateArgs) -> Result<(), CliError> {
    let settings = local_settings_with(a.config.as_deref(), None, None, a.store)?;
    let Some(options) = settings
        .store
        .postgres(Some(std::time::Duration::from_secs(15)))
    else {
        return Err(CliError::Usage(
            "admin migrate needs a database: --store URL, [store] url or PARAPH__STORE__URL".into(),
        ));
    };
    let m = crate::store::migrate(&options).map_err(|e| {
        CliError::Local(format!(
            "migrating {}: {e}",
            crate::store::redact(&options.url)
        ))
    })?;
    if a.json {
        println!("{}", serde_json::json!({"from": m.from, "to": m.to}));
    } else if m.from == m.to {
        println!("schema already at version {}", m.to);
    } else {
        println!("schema migrated from version {} to {}", m.from, m.to);
    }
    Ok(())
}

fn admin_copy(a: CopyArgs) -> Result<(), CliError> {
    let settings = local_settings_with(a.config.as_deref(), Some(a.from), None, Some(a.to))?;
    let report =
        crate::server::admin_copy(&settings).map_err(|e| CliError::Local(e.to_string()))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| CliError::Local(e.to_string()))?
        );
    } else {
        println!("{report}");
    }
    Ok(())
}

fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(a) => serve(a),
        Command::Admin {
            command: AdminCommand::Init(a),
        } => admin_init(a),
        Command::Admin {
            command: AdminCommand::Convert(a),
        } => admin_convert(a),
        Command::Admin {
            command: AdminCommand::OperatorToken(a),
        } => admin_operator_token(a),
        Command::Admin {
            command: AdminCommand::Check(a),
        } => admin_check(a),
        Command::Admin {
            command: AdminCommand::Compact(a),
        } => admin_compact(a),
        Command::Admin {
            command: AdminCommand::Migrate(a),
        } => admin_migrate(a),
        Command::Admin {
            command: AdminCommand::Copy(a),
        } => admin_copy(a),
        Command::Api { command } => api::run(command),
        // Several tasks at once: a multi-threaded runtime.
        Command::Bench(a) => runtime(true)?.block_on(bench::run(a)),
        client => {
            runtime(false)?.block_on(async { conn::explain(commands::run(client).await).await })
        }
    }
}

/// The exit code of a command whose output was cut off by its reader (`paraph inbox | head`):
/// that of a process stopped by SIGPIPE, as the shell reports it.
const CLOSED_PIPE_EXIT: u8 = 128 + 13;

/// A write to a closed stdout (or stderr) ends the process quietly, as SIGPIPE ends other
/// commands of a pipeline, instead of a panic and its backtrace (`print!` panics on EPIPE).
fn exit_quietly_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(CLOSED_PIPE_EXIT));
        }
        default(info);
    }));
}

/// Runs the `paraph` command line and returns the process exit code.
pub fn main() -> ExitCode {
    exit_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors exit 2, --help and --version exit 0.
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "paraph", &mut script);
        use std::io::Write as _;
        return match std::io::stdout().lock().write_all(&script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                ExitCode::from(CLOSED_PIPE_EXIT)
            }
            Err(e) => CliError::Local(format!("cannot write the script: {e}")).report(),
        };
    }
    // Offline, and with its own exit codes (0 valid, 1 refused, 2 bad input).
    if let Command::Pki {
        command: PkiCommand::Verify(a),
    } = &cli.command
    {
        init_tracing("warn");
        return crate::pki::cli_verify(a);
    }
    let server_side = matches!(
        cli.command,
        Command::Serve(_)
            | Command::Admin {
                command: AdminCommand::Init(_)
                    | AdminCommand::Convert(_)
                    | AdminCommand::OperatorToken(_)
                    | AdminCommand::Check(_)
                    | AdminCommand::Compact(_)
                    | AdminCommand::Migrate(_)
                    | AdminCommand::Copy(_)
            }
    );
    init_tracing(if server_side { "info" } else { "warn" });
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn reject_needs_a_reason() {
        let e = Cli::try_parse_from(["paraph", "reject", "abc"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--reason"), "{e}");
    }

    #[test]
    fn sign_takes_an_id_or_all() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["paraph"], args].concat());
        assert!(parse(&["sign", "--p12", "f.p12"]).is_err());
        assert!(parse(&["sign", "abc", "--all", "--p12", "f.p12"]).is_err());
        assert!(parse(&["sign", "--all", "--step", "1", "--p12", "f.p12"]).is_err());
        // The key (--p12, --pkcs11 or PARAPH_PKCS11_MODULE) is checked when run: a usage error
        // (tests/pkcs11.rs); the card options need a module, a slot or a label, not both.
        assert!(parse(&["sign", "abc"]).is_ok());
        assert!(parse(&["sign", "abc", "--p12", "f.p12", "--key-label", "k"]).is_err());
        assert!(parse(&[
            "sign",
            "abc",
            "--pkcs11",
            "m.so",
            "--slot",
            "1",
            "--token-label",
            "t"
        ])
        .is_err());
        assert!(parse(&[
            "sign",
            "abc",
            "--pkcs11",
            "m.so",
            "--key-label",
            "k",
            "--key-id",
            "01"
        ])
        .is_err());
        assert!(
            parse(&["sign", "abc", "--pkcs11", "m.so", "--slot", "1", "--key-id", "01"]).is_ok()
        );
        assert!(parse(&["sign", "abc", "--p12", "f.p12", "--step", "1"]).is_ok());
        assert!(parse(&["sign", "--all", "--p12", "f.p12"]).is_ok());
        // Offline validation options need --trust.
        assert!(parse(&["validate", "--data", "d", "--signature", "s", "--crl", "c"]).is_err());
        assert!(parse(&[
            "validate",
            "--data",
            "d",
            "--signature",
            "s",
            "--trust",
            "r"
        ])
        .is_ok());
        assert!(parse(&["pki", "verify", "leaf.pem", "--trust", "root.pem"]).is_ok());
        assert!(parse(&["admin", "trust", "set", "--anchor", "a.pem"]).is_err());
    }

    #[test]
    fn types_and_roles_ignore_case() {
        let cli = Cli::try_parse_from([
            "paraph",
            "submit",
            "f.pdf",
            "--type",
            "mandate",
            "--circuit",
            "c",
            "--title",
            "t",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Submit(SubmitArgs {
                doc_type: DocTypeArg::Mandate,
                ..
            })
        ));
        assert!(Cli::try_parse_from([
            "paraph", "admin", "user", "create", "a", "--role", "OFFICER", "--role", "admin"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["paraph", "admin", "user", "create", "a"]).is_err());
    }
}
