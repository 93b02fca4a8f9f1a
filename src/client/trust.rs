//! `paraph admin trust set|show` (the tenant's trust settings) and
//! `paraph admin user bind-cert` (pinning the certificates a user signs with).

use super::commands::{clients, idempotency_key, print_json};
use super::error::CliError;
use super::render;
use super::validation::{parse_policy_level, policy_map, read_kind};
use super::{ClientOpts, IdemOpts};
use crate::proto;
use clap::Subcommand;
use std::path::PathBuf;

/// A signature policy as given on the command line: `OID,HASH,URI`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignaturePolicyArg {
    pub oid: String,
    pub sha256: Vec<u8>,
    pub uri: String,
}

/// `OID,HASH,URI` with HASH the hex SHA-256 of the policy document (the URI may be empty and
/// may itself hold commas).
pub fn parse_signature_policy(s: &str) -> Result<SignaturePolicyArg, String> {
    let mut parts = s.splitn(3, ',');
    let oid = parts.next().unwrap_or_default().trim();
    let hash = parts
        .next()
        .ok_or_else(|| format!("{s:?} is not OID,HASH,URI"))?
        .trim();
    let uri = parts.next().unwrap_or_default().trim();
    crate::crypto::der_util::encode_oid(oid)
        .map_err(|_| format!("{oid:?} is not an object identifier"))?;
    let sha256 = hex::decode(hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| {
            format!(
                "{hash:?} is not a SHA-256 in hex (64 hex digits of the policy document's digest)"
            )
        })?;
    Ok(SignaturePolicyArg {
        oid: oid.to_owned(),
        sha256,
        uri: uri.to_owned(),
    })
}

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Replace the tenant's trust settings (admins). Files are sent as read, PEM or DER.
    Set {
        /// Trust anchor certificate file (repeat for several; a PEM file may hold several).
        #[arg(long, value_name = "FILE", required = true)]
        anchor: Vec<PathBuf>,
        /// Intermediate CA certificate file (repeatable).
        #[arg(long, value_name = "FILE")]
        intermediate: Vec<PathBuf>,
        /// CRL file (repeatable). Set the settings again with fresh CRLs to reload them.
        #[arg(long, value_name = "FILE")]
        crl: Vec<PathBuf>,
        /// Accepted certificate policy OID and its RGS level (1-3 or *, **, ***), e.g.
        /// 1.2.250.1.96.1.1=2 (repeat for each policy).
        #[arg(long = "policy-level", value_name = "OID=LEVEL", required = true,
              value_parser = parse_policy_level)]
        policy_level: Vec<(String, u8)>,
        /// Signature policy to embed in every signature: OID, hex SHA-256 of the policy
        /// document, URI.
        #[arg(long, value_name = "OID,HASH,URI", value_parser = parse_signature_policy)]
        signature_policy: Option<SignaturePolicyArg>,
        #[command(flatten)]
        idem: IdemOpts,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Show the tenant's trust settings (admins and auditors).
    Show {
        #[command(flatten)]
        c: ClientOpts,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn print_trust(t: &proto::TrustSettings, json: bool) {
    if json {
        print_json(&render::trust_json(t));
    } else {
        print_text!("{}", render::trust_text(t, now()));
    }
}

pub async fn trust(command: TrustCommand) -> Result<(), CliError> {
    match command {
        TrustCommand::Set {
            anchor,
            intermediate,
            crl,
            policy_level,
            signature_policy,
            idem,
            c,
        } => {
            use crate::pki::kind::FileKind;
            let read_all =
                |what: &str, files: &[PathBuf], kind: FileKind| -> Result<Vec<Vec<u8>>, CliError> {
                    files.iter().map(|f| read_kind(what, f, kind)).collect()
                };
            let req = proto::SetTrustRequest {
                anchors: read_all("trust anchor", &anchor, FileKind::Certificate)?,
                intermediates: read_all("intermediate", &intermediate, FileKind::Certificate)?,
                crls: read_all("CRL", &crl, FileKind::Crl)?,
                policy_levels: policy_map(&policy_level)?
                    .into_iter()
                    .map(|(oid, level)| proto::PolicyLevel {
                        oid,
                        level: u32::from(level),
                    })
                    .collect(),
                signature_policy: signature_policy.map(|p| proto::SignaturePolicy {
                    oid: p.oid,
                    sha256: p.sha256,
                    uri: p.uri,
                }),
                idempotency_key: idempotency_key(&idem)?,
            };
            let mut cl = clients(&c).await?;
            let t = cl.admin.set_trust(req).await?.into_inner();
            if !c.json {
                println_text!("trust settings replaced");
            }
            print_trust(&t, c.json);
            Ok(())
        }
        TrustCommand::Show { c } => {
            let mut cl = clients(&c).await?;
            let t = cl
                .admin
                .get_trust(proto::GetTrustRequest {})
                .await?
                .into_inner();
            print_trust(&t, c.json);
            Ok(())
        }
    }
}

/// `paraph admin user bind-cert USER FILE`.
pub async fn bind_cert(
    user: String,
    cert: PathBuf,
    idem: IdemOpts,
    c: ClientOpts,
) -> Result<(), CliError> {
    let certificate = read_kind(
        "certificate",
        &cert,
        crate::pki::kind::FileKind::Certificate,
    )?;
    let mut cl = clients(&c).await?;
    let u = cl
        .admin
        .bind_certificate(proto::BindCertificateRequest {
            user,
            certificate,
            idempotency_key: idempotency_key(&idem)?,
        })
        .await?
        .into_inner();
    if c.json {
        print_json(&render::user_json(&u));
    } else {
        print_text!("bound: {}", render::user_text(&u));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_policies() {
        let h = "ab".repeat(32);
        let p = parse_signature_policy(&format!(
            "1.2.250.1.131.1.5.18.21.1.4,{h},https://x/p,1.pdf"
        ))
        .unwrap();
        assert_eq!(p.oid, "1.2.250.1.131.1.5.18.21.1.4");
        assert_eq!(p.sha256, vec![0xab; 32]);
        assert_eq!(p.uri, "https://x/p,1.pdf");
        assert_eq!(
            parse_signature_policy(&format!("1.2.3,{h}")).unwrap().uri,
            ""
        );
        assert!(parse_signature_policy("1.2.3").is_err());
        assert!(parse_signature_policy("1.2.3,abcd,u").is_err());
        assert!(parse_signature_policy(&format!("x,{h},u")).is_err());
    }
}
