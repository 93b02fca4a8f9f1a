//! `paraph pki verify`: the tool an operator uses to learn why a certificate is refused.
//!
//! Exit status: 0 valid, 1 refused, 2 bad input (unreadable file, bad `--at`, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{
    format_rfc3339, load_certs_file, load_crls_file, parse_rfc3339, verify_all, Profile,
    VerifyOptions,
};

/// Arguments of `paraph pki verify` (mount with `#[command(flatten)]` or as a subcommand's args).
#[derive(Debug, Clone, clap::Args)]
pub struct PkiVerifyArgs {
    /// The certificate to validate (PEM or DER; with several, the first is the leaf and the
    /// others are used as intermediates).
    pub leaf: PathBuf,
    /// Trust anchor file(s) (PEM, one or many certificates, or DER).
    #[arg(long, required = true, value_name = "FILE")]
    pub trust: Vec<PathBuf>,
    /// Intermediate certificate file(s), not trusted, used to build the path.
    #[arg(long, value_name = "FILE")]
    pub untrusted: Vec<PathBuf>,
    /// CRL file(s) (PEM, one or many, or DER). Never fetched from the network.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// RFC 5280 initial policy set (repeatable). Default: anyPolicy (rfc5280) or the OIDs of
    /// --policy-level (rgs).
    #[arg(long = "policy", value_name = "OID")]
    pub policy: Vec<String>,
    /// Require an explicit policy (always on with --profile rgs).
    #[arg(long)]
    pub explicit_policy: bool,
    /// Inhibit policy mapping.
    #[arg(long)]
    pub inhibit_policy_mapping: bool,
    /// Inhibit anyPolicy.
    #[arg(long)]
    pub inhibit_any_policy: bool,
    /// Do not check revocation (otherwise a certificate no CRL covers is refused).
    #[arg(long)]
    pub no_revocation: bool,
    /// Validation time, RFC 3339 (e.g. 2026-01-01T00:00:00Z). Default: now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Validation profile.
    #[arg(long, value_enum, default_value_t = Profile::Rgs)]
    pub profile: Profile,
    /// Policy OID -> RGS level allowlist entry, e.g. 1.2.250.1.96.1.1=2 (level 1-3 or *, **, ***).
    #[arg(long = "policy-level", value_name = "OID=LEVEL", value_parser = parse_policy_level)]
    pub policy_level: Vec<(String, u8)>,
    /// Minimum RGS level required of the leaf (1-3 or *, **, ***).
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub level: Option<u8>,
    /// Print the outcome as JSON: `{"valid": true, "subject", "level", …}` or
    /// `{"valid": false, "refusals": [{"code", "message"}]}` (bad input stays text on stderr).
    #[arg(long)]
    pub json: bool,
}

fn parse_level(s: &str) -> Result<u8, String> {
    match s.trim() {
        "1" | "*" => Ok(1),
        "2" | "**" => Ok(2),
        "3" | "***" => Ok(3),
        other => Err(format!("RGS level {other:?} is not 1, 2, 3, *, ** or ***")),
    }
}

fn parse_policy_level(s: &str) -> Result<(String, u8), String> {
    let (oid, level) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not OID=LEVEL"))?;
    Ok((oid.trim().to_string(), parse_level(level)?))
}

fn stars(level: u8) -> &'static str {
    match level {
        1 => "*",
        2 => "**",
        3 => "***",
        _ => "?",
    }
}

/// Result of `paraph pki verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliOutcome {
    /// Text starting with `valid`.
    Valid(String),
    /// Text starting with `refused: CODE: message`.
    Refused(String),
    /// Bad input: the text explains it.
    Error(String),
}

impl CliOutcome {
    pub fn text(&self) -> &str {
        match self {
            CliOutcome::Valid(t) | CliOutcome::Refused(t) | CliOutcome::Error(t) => t,
        }
    }
    /// 0 valid, 1 refused, 2 bad input.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliOutcome::Valid(_) => 0,
            CliOutcome::Refused(_) => 1,
            CliOutcome::Error(_) => 2,
        }
    }
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Rfc5280 => "rfc5280",
        Profile::Rgs => "rgs",
    }
}

/// `paraph pki verify --json`: the outcome as a JSON document (stdout) with its exit status;
/// bad input is [`CliOutcome::Error`], as without `--json`.
pub fn run_verify_json(args: &PkiVerifyArgs, now: i64) -> Result<serde_json::Value, CliOutcome> {
    use serde_json::json;
    let (leaf, opts) =
        build_options(args, now).map_err(|e| CliOutcome::Error(format!("error: {e}")))?;
    Ok(match verify_all(&leaf, &opts) {
        Ok(v) => json!({
            "valid": true,
            "subject": v.subject(),
            "issuer": v.issuer(),
            "serial": v.serial_hex(),
            "sha256": v.fingerprint_sha256_hex(),
            "level": v.level(),
            "policy": v.policy(),
            "profile": profile_name(v.profile()),
            "at": format_rfc3339(v.validated_at()),
        }),
        Err(all) => json!({
            "valid": false,
            "refusals": all
                .iter()
                .map(|r| json!({ "code": r.code(), "message": r.to_string() }))
                .collect::<Vec<_>>(),
        }),
    })
}

/// Runs `paraph pki verify` with `now` (Unix seconds) as the default validation time.
pub fn run_verify(args: &PkiVerifyArgs, now: i64) -> CliOutcome {
    match build_options(args, now) {
        Err(e) => CliOutcome::Error(format!("error: {e}")),
        Ok((leaf, opts)) => match verify_all(&leaf, &opts) {
            Ok(v) => {
                let level = match (v.level(), v.policy()) {
                    (Some(l), Some(p)) => format!("RGS level {l} ({}) by policy {p}", stars(l)),
                    _ => "no RGS level".to_string(),
                };
                CliOutcome::Valid(format!(
                    "valid\nsubject: {}; {level}\nissuer: {}; serial: {}; sha256: {}; \
                     profile: {}; at: {}",
                    v.subject(),
                    v.issuer(),
                    v.serial_hex(),
                    v.fingerprint_sha256_hex(),
                    match v.profile() {
                        Profile::Rfc5280 => "rfc5280",
                        Profile::Rgs => "rgs",
                    },
                    format_rfc3339(v.validated_at())
                ))
            }
            Err(all) => {
                let mut text = String::new();
                for (i, r) in all.iter().enumerate() {
                    if i == 0 {
                        text.push_str(&format!("refused: {}: {r}", r.code()));
                    } else {
                        text.push_str(&format!("\n  also: {}: {r}", r.code()));
                    }
                }
                CliOutcome::Refused(text)
            }
        },
    }
}

fn build_options(
    args: &PkiVerifyArgs,
    now: i64,
) -> Result<(openssl::x509::X509, VerifyOptions), String> {
    let at = match &args.at {
        Some(s) => parse_rfc3339(s)?,
        None => now,
    };
    let mut opts = VerifyOptions::new(at, args.profile);
    let mut leaf_file = load_certs_file(&args.leaf)
        .map_err(|e| e.to_string())?
        .into_iter();
    let leaf = leaf_file
        .next()
        .ok_or_else(|| format!("no certificate in {}", args.leaf.display()))?;
    opts.untrusted.extend(leaf_file);
    for path in &args.trust {
        opts.trust_anchors
            .extend(load_certs_file(path).map_err(|e| e.to_string())?);
    }
    for path in &args.untrusted {
        opts.untrusted
            .extend(load_certs_file(path).map_err(|e| e.to_string())?);
    }
    for path in &args.crl {
        opts.crls
            .extend(load_crls_file(path).map_err(|e| e.to_string())?);
    }
    opts.initial_policy_set = args.policy.clone();
    opts.explicit_policy = args.explicit_policy;
    opts.inhibit_policy_mapping = args.inhibit_policy_mapping;
    opts.inhibit_any_policy = args.inhibit_any_policy;
    opts.check_revocation = !args.no_revocation;
    opts.policy_levels = args.policy_level.iter().cloned().collect();
    opts.required_level = args.level;
    Ok((leaf, opts))
}

/// Entry point for the CLI: validates at `--at` or now (the system clock is read here and only
/// here), prints the outcome (stdout; bad input on stderr) and returns the exit status.
pub fn cli_verify(args: &PkiVerifyArgs) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if args.json {
        return match run_verify_json(args, now) {
            Ok(v) => {
                println!("{v}");
                ExitCode::from(if v["valid"] == true { 0 } else { 1 })
            }
            Err(e) => {
                eprintln!("{}", e.text());
                ExitCode::from(e.exit_code())
            }
        };
    }
    let outcome = run_verify(args, now);
    match &outcome {
        CliOutcome::Error(t) => eprintln!("{t}"),
        other => println!("{}", other.text()),
    }
    ExitCode::from(outcome.exit_code())
}
