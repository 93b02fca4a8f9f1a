//! `paraph signatures` (a document's signatures as `.p7s` files) and `paraph validate`
//! (a validation report for any detached CMS signature, through the server or offline).

use super::commands::{clients, print_json};
use super::error::CliError;
use super::render;
use super::ClientOpts;
use crate::proto;
use crate::validation::{Der, TrustSettings};
use clap::Args;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SignaturesArgs {
    /// Document id.
    pub id: String,
    /// Write `<ID>-<index>.p7s` for each signature and `<ID>-all.p7s` (all of them in one
    /// SignedData) into this directory (created if needed). Without it, only list them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub c: ClientOpts,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The signed data (the document).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// The detached CMS signature (DER or PEM), e.g. a file written by `paraph signatures`.
    /// Without it, the signatures inside the data are validated (a PES flow: one report per
    /// bordereau).
    #[arg(long, value_name = "FILE.p7s")]
    pub signature: Option<PathBuf>,
    /// Validation time, RFC 3339 (default: now). A signer's signing-time attribute is his claim:
    /// it is reported, never used as the validation time.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Through the server: the document this signature was made for through paraph; each of
    /// its signatures is then judged at the time the server recorded it (proof of existence).
    #[arg(long, value_name = "ID", conflicts_with = "trust")]
    pub document: Option<String>,
    /// Minimum RGS level required of every signer (1-3 or *, **, ***).
    #[arg(long, value_name = "N", value_parser = parse_level)]
    pub level: Option<u8>,
    /// Validate offline against this trust anchor file (PEM or DER; repeat for several),
    /// without any server.
    #[arg(long, value_name = "FILE")]
    pub trust: Vec<PathBuf>,
    /// Offline: intermediate CA certificates (PEM or DER; repeatable).
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub intermediate: Vec<PathBuf>,
    /// Offline: CRLs (PEM or DER; repeatable).
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub crl: Vec<PathBuf>,
    /// Offline: accepted certificate policy and its RGS level, e.g. 1.2.250.1.96.1.1=2
    /// (repeatable).
    #[arg(long = "policy-level", value_name = "OID=LEVEL", requires = "trust",
          value_parser = parse_policy_level)]
    pub policy_level: Vec<(String, u8)>,
    #[command(flatten)]
    pub c: ClientOpts,
}

/// An RGS level: 1, 2, 3 or `*`, `**`, `***`.
pub fn parse_level(s: &str) -> Result<u8, String> {
    match s.trim() {
        "1" | "*" => Ok(1),
        "2" | "**" => Ok(2),
        "3" | "***" => Ok(3),
        other => Err(format!("RGS level {other:?} is not 1, 2, 3, *, ** or ***")),
    }
}

/// `OID=LEVEL`, e.g. `1.2.250.1.96.1.1=2`.
pub fn parse_policy_level(s: &str) -> Result<(String, u8), String> {
    let (oid, level) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not OID=LEVEL"))?;
    let oid = oid.trim();
    crate::crypto::der_util::encode_oid(oid)
        .map_err(|_| format!("{oid:?} is not an object identifier"))?;
    Ok((oid.to_owned(), parse_level(level)?))
}

/// Repeated `--policy-level` entries as a map; an OID given twice is refused.
pub fn policy_map(items: &[(String, u8)]) -> Result<BTreeMap<String, u8>, CliError> {
    let mut out = BTreeMap::new();
    for (oid, level) in items {
        if out.insert(oid.clone(), *level).is_some() {
            return Err(CliError::Usage(format!(
                "--policy-level: {oid} given twice"
            )));
        }
    }
    Ok(out)
}

pub fn read_file(what: &str, p: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(p)
        .map_err(|e| CliError::Usage(format!("cannot read {what} {}: {e}", p.display())))
}

/// [`read_file`] for a file that must be of `kind`: one recognisably of another kind (a
/// PKCS#12 file given as a certificate, …) is refused here, saying what it is.
pub fn read_kind(
    what: &str,
    p: &Path,
    kind: crate::pki::kind::FileKind,
) -> Result<Vec<u8>, CliError> {
    let bytes = read_file(what, p)?;
    match crate::pki::kind::wrong_kind(&bytes, kind) {
        Some(msg) => Err(CliError::Usage(format!("{what} {}: {msg}", p.display()))),
        None => Ok(bytes),
    }
}

/// `paraph signatures ID [--out DIR]`.
pub async fn signatures(a: SignaturesArgs) -> Result<(), CliError> {
    let mut cl = clients(&a.c).await?;
    let r = cl
        .sigs
        .get_signatures(proto::GetSignaturesRequest {
            document_id: a.id.clone(),
        })
        .await?
        .into_inner();
    // The server accepted the id, so it is a plain hex id, safe in a file name.
    let mut files: Vec<Option<PathBuf>> = vec![None; r.signatures.len()];
    let mut combined = None;
    if let Some(dir) = &a.out {
        let local = |p: &Path, e: std::io::Error| {
            CliError::Local(format!("cannot write {}: {e}", p.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| local(dir, e))?;
        // The answers name the CRLs by hash: each is fetched once and put back into the files,
        // so that each one validates offline as the audit log recorded it.
        let mut crls: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for h in r
            .crl_sha256
            .iter()
            .chain(r.signatures.iter().flat_map(|s| &s.crl_sha256))
        {
            if crls.contains_key(h) {
                continue;
            }
            let der = cl
                .sigs
                .get_validation_material(proto::GetValidationMaterialRequest {
                    document_id: a.id.clone(),
                    sha256: h.clone(),
                })
                .await?
                .into_inner()
                .der;
            if hex::encode(sha2::Sha256::digest(&der)) != *h {
                return Err(CliError::Local(format!(
                    "the server sent a CRL that does not match its SHA-256 {h}"
                )));
            }
            crls.insert(h.clone(), der);
        }
        let whole = |cms: &[u8], refs: &[String]| -> Result<Vec<u8>, CliError> {
            if refs.is_empty() {
                return Ok(cms.to_vec());
            }
            let with: Vec<Vec<u8>> = refs.iter().filter_map(|h| crls.get(h).cloned()).collect();
            crate::crypto::with_crls(cms, &with)
                .map_err(|e| CliError::Local(format!("the server sent a malformed CMS: {e}")))
        };
        // An enveloped signature (PES) has no CMS: it is inside the content (`paraph content`).
        for (s, f) in r
            .signatures
            .iter()
            .zip(files.iter_mut())
            .filter(|(s, _)| !s.cms.is_empty())
        {
            let p = dir.join(format!("{}-{}.p7s", a.id, s.index));
            std::fs::write(&p, whole(&s.cms, &s.crl_sha256)?).map_err(|e| local(&p, e))?;
            *f = Some(p);
        }
        if !r.combined_cms.is_empty() {
            let p = dir.join(format!("{}-all.p7s", a.id));
            std::fs::write(&p, whole(&r.combined_cms, &r.crl_sha256)?).map_err(|e| local(&p, e))?;
            combined = Some(p);
        }
    }
    let path_json = |p: &Option<PathBuf>| match p {
        Some(p) => Value::String(p.display().to_string()),
        None => Value::Null,
    };
    if a.c.json {
        print_json(&json!({
            "id": a.id,
            "signatures": r.signatures.iter().zip(&files).map(|(s, f)| {
                let mut v = render::signature_json(s);
                v["file"] = path_json(f);
                v
            }).collect::<Vec<_>>(),
            "combined_file": path_json(&combined),
        }));
    } else {
        print_text!("{}", render::signatures_table(&r.signatures));
        if let Some(dir) = &a.out {
            let written = files.iter().flatten().count() + usize::from(combined.is_some());
            println_text!("wrote {written} files to {}", dir.display());
        }
    }
    Ok(())
}

/// Trust settings built from local files, for offline validation.
fn offline_trust(a: &ValidateArgs) -> Result<TrustSettings, CliError> {
    let certs = |what: &str, files: &[PathBuf]| -> Result<Vec<Der>, CliError> {
        let mut out = Vec::new();
        for f in files {
            let bytes = read_kind(what, f, crate::pki::kind::FileKind::Certificate)?;
            let certs = crate::crypto::certs::certs_from(&bytes)
                .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?;
            for c in certs {
                out.push(Der(c
                    .to_der()
                    .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?));
            }
        }
        Ok(out)
    };
    let mut crls = Vec::new();
    for f in &a.crl {
        let bytes = read_kind("CRL", f, crate::pki::kind::FileKind::Crl)?;
        for c in crate::crypto::certs::crls_from(&bytes)
            .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?
        {
            crls.push(Der(c
                .to_der()
                .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?));
        }
    }
    let anchors = certs("trust anchor", &a.trust)?;
    let intermediates = certs("intermediate", &a.intermediate)?;
    let cas: Vec<Der> = anchors.iter().chain(&intermediates).cloned().collect();
    crate::validation::trust::check_crls_signed(&cas, &crls)
        .map_err(|(i, why)| CliError::Usage(format!("--crl (CRL #{}): {why}", i + 1)))?;
    Ok(TrustSettings {
        anchors,
        intermediates,
        crls,
        policy_levels: policy_map(&a.policy_level)?,
        ..TrustSettings::default()
    })
}

/// `paraph validate`: prints the report; a signature that does not pass exits 6.
pub async fn validate(a: ValidateArgs) -> Result<(), CliError> {
    let at =
        a.at.as_deref()
            .map(crate::pki::parse_rfc3339)
            .transpose()
            .map_err(|e| CliError::Usage(format!("--at: {e}")))?;
    let data = read_file("data", &a.data)?;
    let signature = match &a.signature {
        Some(f) => read_kind("signature", f, crate::pki::kind::FileKind::Cms)?,
        None => Vec::new(),
    };
    let report = if a.trust.is_empty() {
        let mut cl = clients(&a.c).await?;
        cl.sigs
            .validate_signature(proto::ValidateSignatureRequest {
                data,
                signature,
                at: at.map(|seconds| proto::Timestamp { seconds }),
                required_level: a.level.map(u32::from).unwrap_or(0),
                document_id: a.document.clone().unwrap_or_default(),
            })
            .await?
            .into_inner()
    } else {
        let trust = offline_trust(&a)?;
        let now = at.unwrap_or_else(|| {
            use crate::clock::Clock;
            crate::clock::SystemClock.now().0
        });
        let r = if signature.is_empty() && data.starts_with(b"%PDF-") {
            crate::validation::validate_pades(&trust, &data, now, &[], a.level)
        } else if signature.is_empty() {
            // Offline, the policy hash is not compared (no server settings).
            let pes = crate::formats::xades_pes::PesSettings {
                policy_hash: String::new(),
                ..Default::default()
            };
            crate::validation::validate_xades(&trust, &pes, &data, now, &[], a.level)
        } else {
            crate::validation::validate_cms(&trust, &data, &signature, now, &[], a.level)
        };
        crate::grpc::signatures::report_to(&r)
    };
    if a.c.json {
        print_json(&render::report_json(&report));
    } else {
        print_text!("{}", render::report_text(&report));
    }
    if report.indication == proto::Indication::TotalPassed as i32 {
        Ok(())
    } else {
        let mut why = render::indication(report.indication);
        if !report.sub_indication.is_empty() {
            why.push_str(" / ");
            why.push_str(&report.sub_indication);
        }
        Err(CliError::NotPassed(format!(
            "the signature does not pass: {why}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_policy_levels() {
        assert_eq!(parse_level("**"), Ok(2));
        assert_eq!(parse_level("3"), Ok(3));
        assert!(parse_level("4").is_err());
        assert_eq!(
            parse_policy_level("1.2.250.1.96.1.1=***"),
            Ok(("1.2.250.1.96.1.1".to_owned(), 3))
        );
        assert!(parse_policy_level("1.2.3").is_err());
        assert!(parse_policy_level("not.an.oid=1").is_err());
        let dup = [("1.2.3".to_owned(), 1), ("1.2.3".to_owned(), 2)];
        assert!(policy_map(&dup).is_err());
    }
}
