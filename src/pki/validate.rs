//! Path validation: OpenSSL's `X509_verify_cert` with every error recorded, mapped to
//! [`Refusal`]s, plus paraph's own checks ([`super::rgs`]), then the precedence of
//! [`Refusal`] picks what is reported.
//!
//! # OpenSSL error -> refusal code
//!
//! | `X509_V_ERR_*` | code |
//! |---|---|
//! | UNABLE_TO_GET_ISSUER_CERT(_LOCALLY), UNABLE_TO_VERIFY_LEAF_SIGNATURE, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN, CERT_UNTRUSTED, CERT_REJECTED, SUBJECT_ISSUER_MISMATCH, AKID_*_MISMATCH, PATH_LOOP | `CHAIN_NOT_TRUSTED` |
//! | CERT_SIGNATURE_FAILURE, UNABLE_TO_DECRYPT_CERT_SIGNATURE, UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY, NO_ISSUER_PUBLIC_KEY, UNSUPPORTED_SIGNATURE_ALGORITHM, SIGNATURE_ALGORITHM_MISMATCH | `SIG_CRYPTO_FAILURE` |
//! | CERT_HAS_EXPIRED / CERT_NOT_YET_VALID | `EXPIRED` / `NOT_YET_VALID` |
//! | CERT_REVOKED | `REVOKED` |
//! | INVALID_CA (cA absent or false), CA_BCONS_NOT_CRITICAL (rgs only: dropped under rfc5280), PATHLEN_INVALID_FOR_NON_CA, KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA | `CA_NOT_CA` |
//! | INVALID_CA (cA set, keyUsage without keyCertSign), KEYUSAGE_NO_CERTSIGN, CA_CERT_MISSING_KEY_USAGE, PATHLEN_WITHOUT_KU_KEY_CERT_SIGN | `CA_KEY_USAGE` |
//! | PATH_LENGTH_EXCEEDED, PROXY_PATH_LENGTH_EXCEEDED, CERT_CHAIN_TOO_LONG | `PATH_LENGTH` |
//! | PERMITTED_VIOLATION, EXCLUDED_VIOLATION, SUBTREE_MINMAX, UNSUPPORTED_CONSTRAINT_TYPE/SYNTAX, UNSUPPORTED_NAME_SYNTAX | `NAME_CONSTRAINTS` |
//! | NO_EXPLICIT_POLICY | `NO_POLICY` |
//! | UNHANDLED_CRITICAL_EXTENSION | `UNKNOWN_CRITICAL_EXTENSION` |
//! | KEYUSAGE_NO_DIGITAL_SIGNATURE, INVALID_PURPOSE | `KEY_USAGE` |
//! | EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK, SUITE_B_* | `WEAK_ALGORITHM` |
//! | UNABLE_TO_GET_CRL, DIFFERENT_CRL_SCOPE | `CRL_NOT_FOUND` |
//! | CRL_HAS_EXPIRED / CRL_NOT_YET_VALID | `CRL_EXPIRED` / `CRL_NOT_YET_VALID` |
//! | CRL_SIGNATURE_FAILURE, UNABLE_TO_DECRYPT_CRL_SIGNATURE, UNABLE_TO_GET_CRL_ISSUER, KEYUSAGE_NO_CRL_SIGN, UNHANDLED_CRITICAL_CRL_EXTENSION, ERROR_IN_CRL_*_FIELD, CRL_PATH_VALIDATION_ERROR | `CRL_INVALID` |
//! | ERROR_IN_CERT_NOT_*_FIELD, INVALID_EXTENSION, INVALID_POLICY_EXTENSION, INVALID_NON_CA, PROXY_*, UNSUPPORTED_EXTENSION_FEATURE, UNNESTED_RESOURCE, SIGNATURE_ALGORITHM_INCONSISTENCY, the other X509_STRICT profile errors (83-88, 90, 91, 93, 94) | `MALFORMED_CERTIFICATE` |
//! | anything else | `OTHER` (with OpenSSL's text) |

use std::collections::BTreeMap;

use openssl::asn1::Asn1Object;
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509CrlRef, X509Ref, X509StoreContext, X509VerifyResult, X509};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

use super::ffi::{self, RawFinding};
use super::refusal::{sort_by_precedence, CertPos, Refusal};
use super::time::format_rfc3339;
use super::{ossl_reason, rgs, Profile, ValidatedChain, VerifyOptions};

/// `X509_V_ERR_*` codes of OpenSSL 3.0 (`<openssl/x509_vfy.h>`; stable ABI values).
#[allow(dead_code)]
mod err {
    pub const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
    pub const UNABLE_TO_GET_CRL: i32 = 3;
    pub const UNABLE_TO_DECRYPT_CERT_SIGNATURE: i32 = 4;
    pub const UNABLE_TO_DECRYPT_CRL_SIGNATURE: i32 = 5;
    pub const UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: i32 = 6;
    pub const CERT_SIGNATURE_FAILURE: i32 = 7;
    pub const CRL_SIGNATURE_FAILURE: i32 = 8;
    pub const CERT_NOT_YET_VALID: i32 = 9;
    pub const CERT_HAS_EXPIRED: i32 = 10;
    pub const CRL_NOT_YET_VALID: i32 = 11;
    pub const CRL_HAS_EXPIRED: i32 = 12;
    pub const ERROR_IN_CERT_NOT_BEFORE_FIELD: i32 = 13;
    pub const ERROR_IN_CERT_NOT_AFTER_FIELD: i32 = 14;
    pub const ERROR_IN_CRL_LAST_UPDATE_FIELD: i32 = 15;
    pub const ERROR_IN_CRL_NEXT_UPDATE_FIELD: i32 = 16;
    pub const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
    pub const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
    pub const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
    pub const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
    pub const CERT_CHAIN_TOO_LONG: i32 = 22;
    pub const CERT_REVOKED: i32 = 23;
    pub const NO_ISSUER_PUBLIC_KEY: i32 = 24;
    pub const PATH_LENGTH_EXCEEDED: i32 = 25;
    pub const INVALID_PURPOSE: i32 = 26;
    pub const CERT_UNTRUSTED: i32 = 27;
    pub const CERT_REJECTED: i32 = 28;
    pub const SUBJECT_ISSUER_MISMATCH: i32 = 29;
    pub const AKID_SKID_MISMATCH: i32 = 30;
    pub const AKID_ISSUER_SERIAL_MISMATCH: i32 = 31;
    pub const KEYUSAGE_NO_CERTSIGN: i32 = 32;
    pub const UNABLE_TO_GET_CRL_ISSUER: i32 = 33;
    pub const UNHANDLED_CRITICAL_EXTENSION: i32 = 34;
    pub const KEYUSAGE_NO_CRL_SIGN: i32 = 35;
    pub const UNHANDLED_CRITICAL_CRL_EXTENSION: i32 = 36;
    pub const INVALID_NON_CA: i32 = 37;
    pub const PROXY_PATH_LENGTH_EXCEEDED: i32 = 38;
    pub const KEYUSAGE_NO_DIGITAL_SIGNATURE: i32 = 39;
    pub const PROXY_CERTIFICATES_NOT_ALLOWED: i32 = 40;
    pub const INVALID_EXTENSION: i32 = 41;
    pub const INVALID_POLICY_EXTENSION: i32 = 42;
    pub const NO_EXPLICIT_POLICY: i32 = 43;
    pub const DIFFERENT_CRL_SCOPE: i32 = 44;
    pub const UNSUPPORTED_EXTENSION_FEATURE: i32 = 45;
    pub const UNNESTED_RESOURCE: i32 = 46;
    pub const PERMITTED_VIOLATION: i32 = 47;
    pub const EXCLUDED_VIOLATION: i32 = 48;
    pub const SUBTREE_MINMAX: i32 = 49;
    pub const UNSUPPORTED_CONSTRAINT_TYPE: i32 = 51;
    pub const UNSUPPORTED_CONSTRAINT_SYNTAX: i32 = 52;
    pub const UNSUPPORTED_NAME_SYNTAX: i32 = 53;
    pub const CRL_PATH_VALIDATION_ERROR: i32 = 54;
    pub const PATH_LOOP: i32 = 55;
    pub const SUITE_B_FIRST: i32 = 56;
    pub const SUITE_B_LAST: i32 = 61;
    pub const EE_KEY_TOO_SMALL: i32 = 66;
    pub const CA_KEY_TOO_SMALL: i32 = 67;
    pub const CA_MD_TOO_WEAK: i32 = 68;
    pub const PROXY_SUBJECT_NAME_VIOLATION: i32 = 72;
    pub const UNSUPPORTED_SIGNATURE_ALGORITHM: i32 = 76;
    pub const SIGNATURE_ALGORITHM_MISMATCH: i32 = 77;
    pub const SIGNATURE_ALGORITHM_INCONSISTENCY: i32 = 78;
    pub const INVALID_CA: i32 = 79;
    pub const PATHLEN_INVALID_FOR_NON_CA: i32 = 80;
    pub const PATHLEN_WITHOUT_KU_KEY_CERT_SIGN: i32 = 81;
    pub const KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA: i32 = 82;
    pub const ISSUER_NAME_EMPTY: i32 = 83;
    pub const MISSING_SUBJECT_KEY_IDENTIFIER: i32 = 86;
    pub const EMPTY_SUBJECT_SAN_NOT_CRITICAL: i32 = 88;
    pub const CA_BCONS_NOT_CRITICAL: i32 = 89;
    pub const AUTHORITY_KEY_IDENTIFIER_CRITICAL: i32 = 90;
    pub const SUBJECT_KEY_IDENTIFIER_CRITICAL: i32 = 91;
    pub const CA_CERT_MISSING_KEY_USAGE: i32 = 92;
    pub const EXTENSIONS_REQUIRE_VERSION_3: i32 = 93;
    pub const EC_KEY_EXPLICIT_PARAMS: i32 = 94;
}

/// Validates the path of `leaf` under `opts` and reports the first refusal by precedence
/// (see [`Refusal`]).
pub fn verify(leaf: &X509, opts: &VerifyOptions) -> Result<ValidatedChain, Refusal> {
    verify_all(leaf, opts).map_err(|all| {
        all.into_iter().next().unwrap_or(Refusal::Other {
            detail: "validation failed without a reason (internal error)".into(),
        })
    })
}

/// Like [`verify`], but a refusal comes with every defect found, in precedence order (the first
/// is what [`verify`] reports; the vector is never empty).
pub fn verify_all(leaf: &X509, opts: &VerifyOptions) -> Result<ValidatedChain, Vec<Refusal>> {
    let initial = check_options(opts).map_err(|e| vec![Refusal::InvalidOptions(e)])?;
    let run = run_openssl(leaf, opts, &initial).map_err(|e| {
        vec![Refusal::Other {
            detail: format!("OpenSSL could not run the validation: {}", ossl_reason(&e)),
        }]
    })?;
    let chain = if run.chain.is_empty() {
        vec![leaf.clone()]
    } else {
        run.chain
    };
    let ders: Vec<Vec<u8>> = chain
        .iter()
        .map(|c| c.to_der().unwrap_or_default())
        .collect();
    let parsed: Vec<Option<X509Certificate<'_>>> = ders
        .iter()
        .map(|d| x509_parser::parse_x509_certificate(d).ok().map(|(_, c)| c))
        .collect();
    let crl_ders: Vec<&[u8]> = opts.crls.iter().map(|c| c.der()).collect();
    let crls: Vec<CertificateRevocationList<'_>> = crl_ders
        .iter()
        .filter_map(|d| x509_parser::parse_x509_crl(d).ok().map(|(_, c)| c))
        .collect();
    let ctx = Ctx {
        chain: &chain,
        parsed: &parsed,
        crls: &crls,
        at: opts.at,
    };

    let mut all: Vec<Refusal> = run.findings.iter().map(|f| ctx.map_finding(f)).collect();
    let accepted = matches!(run.verdict, Ok(true));
    if all.is_empty() && !accepted {
        let detail = match &run.verdict {
            Err(e) => ossl_reason(e),
            Ok(_) => run.last_error.error_string().to_string(),
        };
        all.push(Refusal::Other { detail });
    }
    let policies = run.valid_policies.as_deref();
    own_checks(&ctx, opts, policies, &mut all);
    if !all.is_empty() {
        return Err(sort_by_precedence(all));
    }
    build_validated(&chain, &parsed, opts, policies).map_err(|r| vec![r])
}

/// Checks the options and returns the initial policy set as OpenSSL objects.
fn check_options(opts: &VerifyOptions) -> Result<Vec<Asn1Object>, String> {
    for (oid, level) in &opts.policy_levels {
        check_oid(oid)?;
        if oid == "2.5.29.32.0" {
            return Err(
                "anyPolicy (2.5.29.32.0) cannot carry an RGS level: the level comes from an \
                 explicit policy"
                    .into(),
            );
        }
        if !(1..=3).contains(level) {
            return Err(format!(
                "RGS level {level} for policy {oid} is not 1, 2 or 3"
            ));
        }
    }
    if let Some(l) = opts.required_level {
        if !(1..=3).contains(&l) {
            return Err(format!("required RGS level {l} is not 1, 2 or 3"));
        }
    }
    let set: Vec<&String> = if opts.profile == Profile::Rgs && opts.initial_policy_set.is_empty() {
        opts.policy_levels.keys().collect()
    } else {
        opts.initial_policy_set.iter().collect()
    };
    set.into_iter()
        .map(|oid| {
            check_oid(oid)?;
            Asn1Object::from_str(oid).map_err(|e| format!("policy OID {oid}: {}", ossl_reason(&e)))
        })
        .collect()
}

/// A dotted OID (see [`crate::crypto::der_util::encode_oid`]; `2.999.7.1` is one).
fn check_oid(oid: &str) -> Result<(), String> {
    crate::crypto::der_util::encode_oid(oid).map(|_| ())
}

/// The anyPolicy OID (RFC 5280 4.2.1.4).
const ANY_POLICY: &str = "2.5.29.32.0";

struct Run {
    verdict: Result<bool, ErrorStack>,
    /// The policies that survived policy processing (see [`ffi::valid_policies`]).
    valid_policies: Option<Vec<String>>,
    findings: Vec<RawFinding>,
    chain: Vec<X509>,
    last_error: X509VerifyResult,
}

fn run_openssl(
    leaf: &X509,
    opts: &VerifyOptions,
    initial: &[Asn1Object],
) -> Result<Run, ErrorStack> {
    let mut builder = X509StoreBuilder::new()?;
    for anchor in &opts.trust_anchors {
        builder.add_cert(anchor.clone())?;
    }
    let mut flags = X509VerifyFlags::POLICY_CHECK;
    if opts.x509_strict {
        flags |= X509VerifyFlags::X509_STRICT;
    }
    if opts.explicit_policy || opts.profile == Profile::Rgs {
        flags |= X509VerifyFlags::EXPLICIT_POLICY;
    }
    if opts.inhibit_policy_mapping {
        flags |= X509VerifyFlags::INHIBIT_MAP;
    }
    if opts.inhibit_any_policy {
        flags |= X509VerifyFlags::INHIBIT_ANY;
    }
    if opts.check_revocation {
        // EXTENDED_CRL_SUPPORT: RFC 5280 CRL processing (6.3): CRLs signed by a key other than
        // the one that signed the certificate (its issuing CA's separate CRL-signing key, or
        // across a self-issued key rollover), onlySomeReasons partitions (the reasons must add
        // up to all of them), indirect CRLs and cRLIssuer; and a CRL carrying deltaCRLIndicator
        // is never taken for a complete CRL (without it OpenSSL 3.0 does). USE_DELTAS: a delta
        // CRL that applies to the complete CRL is used with it (a revocation only it lists is
        // seen, and it must be current like any CRL).
        flags |= X509VerifyFlags::CRL_CHECK
            | X509VerifyFlags::CRL_CHECK_ALL
            | X509VerifyFlags::EXTENDED_CRL_SUPPORT
            | X509VerifyFlags::USE_DELTAS;
    }
    // The CRLs go to the verification context (see `ffi::with_crls`), except:
    // - under rgs, indirect CRLs: every CRL relied on is then issued under the name of a CA of
    //   the path, which is what the RGS CRL algorithm check covers;
    // - every CRL of an issuer that published a delta CRL restricted to some reasons
    //   (onlySomeReasons): OpenSSL 3.0 with extended CRL support takes such a delta for a
    //   complete CRL (its check that skips deltas is not reached for them), which could miss a
    //   revocation only the complete CRL lists. Without them the certificates that issuer's
    //   CRLs cover have no CRL: refused (CRL_NOT_FOUND), never accepted.
    let crls: Vec<&X509CrlRef> = if opts.check_revocation {
        let traits: Vec<Option<CrlTraits>> =
            opts.crls.iter().map(|c| crl_traits(c.der())).collect();
        let shunned: Vec<&[u8]> = traits
            .iter()
            .flatten()
            .filter(|t| t.delta_with_reasons)
            .map(|t| t.issuer.as_slice())
            .collect();
        opts.crls
            .iter()
            .zip(&traits)
            .filter(|(_, t)| {
                t.as_ref().is_some_and(|t| {
                    !shunned.contains(&t.issuer.as_slice())
                        && (opts.profile != Profile::Rgs || !t.indirect)
                })
            })
            .map(|(c, _)| &**c.as_openssl())
            .collect()
    } else {
        Vec::new()
    };
    let mut param = X509VerifyParam::new()?;
    param.set_time(opts.at);
    param.set_flags(flags)?;
    // RFC 5280's default user-initial-policy-set is {anyPolicy}. OpenSSL 3.0 given no set at all
    // refuses every path once an explicit policy is required (--explicit-policy, or a
    // requireExplicitPolicy in the path): it then has no user-constrained policy set. So under
    // rfc5280 an empty set is passed as {anyPolicy}. (Under rgs it is never empty when a level
    // can be found: it is the allowlist's OIDs.)
    let any_policy;
    let initial = if initial.is_empty() && opts.profile == Profile::Rfc5280 {
        any_policy = [Asn1Object::from_str(ANY_POLICY)?];
        &any_policy[..]
    } else {
        initial
    };
    ffi::set_initial_policies(&mut param, initial)?;
    builder.set_param(&param)?;
    let store = builder.build();

    let mut untrusted = Stack::new()?;
    for cert in &opts.untrusted {
        untrusted.push(cert.clone())?;
    }
    let mut ctx = X509StoreContext::new()?;
    ctx.init(&store, leaf, &untrusted, |c| {
        let (verdict, mut findings) = ffi::with_crls(c, &crls, ffi::verify_collecting)?;
        if opts.profile == Profile::Rfc5280 {
            // X509_STRICT's CA_BCONS_NOT_CRITICAL is a rule for the CAs that issue certificates
            // (RFC 5280 4.2.1.9), not part of path validation (section 6 only needs cA set):
            // under rfc5280 a CA whose basicConstraints is not critical is accepted (NIST PKITS
            // 4.6.4 is a valid path); under rgs it stays refused. OpenSSL continues after it,
            // so nothing else goes unchecked.
            findings.retain(|f| f.error != err::CA_BCONS_NOT_CRITICAL);
        }
        let valid_policies = ffi::valid_policies(c);
        let chain = c
            .chain()
            .map(|s| s.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        Ok(Run {
            verdict,
            valid_policies,
            findings,
            chain,
            last_error: c.error(),
        })
    })
}

/// What [`run_openssl`] needs to know of a CRL to decide whether OpenSSL may use it.
struct CrlTraits {
    /// The issuer name, DER.
    issuer: Vec<u8>,
    /// issuingDistributionPoint with indirectCRL.
    indirect: bool,
    /// deltaCRLIndicator and an issuingDistributionPoint with onlySomeReasons.
    delta_with_reasons: bool,
}

/// The [`CrlTraits`] of a DER CRL; `None` if it does not parse (which [`super::Crl`] excludes:
/// such a CRL would not be used).
fn crl_traits(der: &[u8]) -> Option<CrlTraits> {
    use x509_parser::extensions::ParsedExtension;
    /// deltaCRLIndicator and issuingDistributionPoint (RFC 5280 5.2.4, 5.2.5).
    const DELTA_CRL_INDICATOR: &str = "2.5.29.27";
    const ISSUING_DISTRIBUTION_POINT: &str = "2.5.29.28";
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let has = |oid: &str| crl.extensions().iter().any(|e| e.oid.to_id_string() == oid);
    let idp = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) => Some(idp),
            _ => None,
        });
    // An issuingDistributionPoint x509-parser cannot read counts as having every flag (OpenSSL
    // may read it): such a CRL is left out where one of them would leave it out.
    let unreadable_idp = idp.is_none() && has(ISSUING_DISTRIBUTION_POINT);
    Some(CrlTraits {
        issuer: crl.issuer().as_raw().to_vec(),
        indirect: unreadable_idp || idp.is_some_and(|i| i.indirect_crl),
        delta_with_reasons: has(DELTA_CRL_INDICATOR)
            && (unreadable_idp || idp.is_some_and(|i| i.only_some_reasons.is_some())),
    })
}

/// What the mapping of findings needs to know about the path.
struct Ctx<'a, 'b> {
    chain: &'a [X509],
    parsed: &'a [Option<X509Certificate<'b>>],
    crls: &'a [CertificateRevocationList<'b>],
    at: i64,
}

fn subject_of(cert: &X509Ref) -> String {
    match cert.to_der() {
        Ok(der) => match x509_parser::parse_x509_certificate(&der) {
            Ok((_, c)) => c.subject().to_string(),
            Err(_) => "<unparsable certificate>".into(),
        },
        Err(_) => "<unencodable certificate>".into(),
    }
}

fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified".into(),
        1 => "keyCompromise".into(),
        2 => "cACompromise".into(),
        3 => "affiliationChanged".into(),
        4 => "superseded".into(),
        5 => "cessationOfOperation".into(),
        6 => "certificateHold".into(),
        8 => "removeFromCRL".into(),
        9 => "privilegeWithdrawn".into(),
        10 => "aACompromise".into(),
        n => format!("reason {n}"),
    }
}

impl<'b> Ctx<'_, 'b> {
    fn parsed_at(&self, depth: u32) -> Option<&X509Certificate<'b>> {
        self.parsed.get(depth as usize).and_then(Option::as_ref)
    }

    fn pos(&self, f: &RawFinding) -> CertPos {
        let subject = match (&f.cert, self.chain.get(f.depth as usize)) {
            (Some(c), _) => subject_of(c),
            (None, Some(c)) => subject_of(c),
            (None, None) => "<unknown certificate>".into(),
        };
        CertPos {
            depth: f.depth,
            subject,
        }
    }

    /// The finding's certificate, parsed (OpenSSL's own, else the chain's at that depth).
    fn with_cert<T>(&self, f: &RawFinding, g: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
        if let Some(c) = &f.cert {
            let der = c.to_der().ok()?;
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
            return Some(g(&parsed));
        }
        self.parsed_at(f.depth).map(g)
    }

    fn crls_by(&self, issuer_raw: &[u8]) -> Vec<&CertificateRevocationList<'b>> {
        self.crls
            .iter()
            .filter(|c| c.issuer().as_raw() == issuer_raw)
            .collect()
    }

    fn crl_detail(&self, f: &RawFinding, kind: CrlProblem) -> String {
        let at = format_rfc3339(self.at);
        self.with_cert(f, |cert| {
            let issuer = cert.issuer().to_string();
            let crls = self.crls_by(cert.issuer().as_raw());
            match kind {
                CrlProblem::Expired => {
                    let latest = crls
                        .iter()
                        .filter_map(|c| c.next_update().map(|t| t.timestamp()))
                        .filter(|t| *t < self.at)
                        .max();
                    match latest {
                        Some(t) => format!(
                            "the newest CRL issued by [{issuer}] has nextUpdate {} before the \
                             validation time {at}; revocation status unknown",
                            format_rfc3339(t)
                        ),
                        None => {
                            format!("the CRL issued by [{issuer}] is past its nextUpdate at {at}")
                        }
                    }
                }
                CrlProblem::NotYetValid => format!(
                    "the CRL issued by [{issuer}] has thisUpdate after the validation time {at}"
                ),
                CrlProblem::NotFound => {
                    if crls.is_empty() {
                        format!("no CRL issued by [{issuer}] was provided")
                    } else {
                        format!(
                            "none of the {} CRL(s) issued by [{issuer}] covers it at {at}",
                            crls.len()
                        )
                    }
                }
            }
        })
        .unwrap_or_else(|| format!("no usable CRL at {at}"))
    }

    fn revoked_detail(&self, f: &RawFinding) -> String {
        self.with_cert(f, |cert| {
            let issuer = cert.issuer().to_string();
            for crl in self.crls_by(cert.issuer().as_raw()) {
                for entry in crl.iter_revoked_certificates() {
                    if entry.raw_serial() == cert.raw_serial() {
                        let reason = entry
                            .reason_code()
                            .map(|(_, r)| reason_name(r.0))
                            .unwrap_or_else(|| "no reason given".into());
                        let hold = if entry.reason_code().map(|(_, r)| r.0) == Some(6) {
                            " (on hold)"
                        } else {
                            ""
                        };
                        return format!(
                            "serial {} is listed in the CRL of [{issuer}]{hold}: revoked {}, {reason}",
                            hex::encode(cert.raw_serial()),
                            format_rfc3339(entry.revocation_date.timestamp())
                        );
                    }
                }
            }
            format!("listed in a CRL of [{issuer}]")
        })
        .unwrap_or_else(|| "listed in a CRL".into())
    }

    fn issuer_detail(&self, f: &RawFinding, text: &str) -> String {
        self.with_cert(f, |c| {
            format!(
                "{text}; its issuer [{}] is neither a configured trust anchor nor among the \
                 intermediates",
                c.issuer()
            )
        })
        .unwrap_or_else(|| text.to_string())
    }

    fn unknown_critical(&self, f: &RawFinding) -> String {
        // Extensions OpenSSL 3.0 processes (X509_supported_extension).
        const KNOWN: &[&str] = &[
            "2.16.840.1.113730.1.1",
            "2.5.29.15",
            "2.5.29.17",
            "2.5.29.19",
            "2.5.29.37",
            "1.3.6.1.5.5.7.1.7",
            "1.3.6.1.5.5.7.1.8",
            "1.3.6.1.5.5.7.1.14",
            "2.5.29.32",
            "2.5.29.33",
            "2.5.29.36",
            "2.5.29.30",
            "2.5.29.54",
            "1.3.6.1.5.5.7.1.24",
        ];
        let oids = self
            .with_cert(f, |c| {
                c.extensions()
                    .iter()
                    .filter(|e| e.critical)
                    .map(|e| e.oid.to_id_string())
                    .filter(|o| !KNOWN.contains(&o.as_str()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if oids.is_empty() {
            "unhandled critical extension".into()
        } else {
            format!("critical extension(s) {}", oids.join(", "))
        }
    }

    fn map_finding(&self, f: &RawFinding) -> Refusal {
        use err::*;
        let cert = self.pos(f);
        let text = f.text;
        let detail = text.to_string();
        match f.error {
            UNABLE_TO_GET_ISSUER_CERT
            | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | UNABLE_TO_VERIFY_LEAF_SIGNATURE => Refusal::ChainNotTrusted {
                detail: self.issuer_detail(f, text),
                cert,
            },
            DEPTH_ZERO_SELF_SIGNED_CERT | SELF_SIGNED_CERT_IN_CHAIN => Refusal::ChainNotTrusted {
                detail: format!(
                    "{text}: a self-signed certificate that is not a configured trust anchor"
                ),
                cert,
            },
            CERT_UNTRUSTED
            | CERT_REJECTED
            | SUBJECT_ISSUER_MISMATCH
            | AKID_SKID_MISMATCH
            | AKID_ISSUER_SERIAL_MISMATCH
            | PATH_LOOP => Refusal::ChainNotTrusted { cert, detail },
            CERT_SIGNATURE_FAILURE
            | UNABLE_TO_DECRYPT_CERT_SIGNATURE
            | UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY
            | NO_ISSUER_PUBLIC_KEY
            | UNSUPPORTED_SIGNATURE_ALGORITHM
            | SIGNATURE_ALGORITHM_MISMATCH => Refusal::SigCryptoFailure { cert, detail },
            CERT_HAS_EXPIRED => Refusal::Expired {
                not_after: self
                    .with_cert(f, |c| format_rfc3339(c.validity().not_after.timestamp()))
                    .unwrap_or_else(|| "?".into()),
                at: format_rfc3339(self.at),
                cert,
            },
            CERT_NOT_YET_VALID => Refusal::NotYetValid {
                not_before: self
                    .with_cert(f, |c| format_rfc3339(c.validity().not_before.timestamp()))
                    .unwrap_or_else(|| "?".into()),
                at: format_rfc3339(self.at),
                cert,
            },
            CERT_REVOKED => Refusal::Revoked {
                detail: self.revoked_detail(f),
                cert,
            },
            INVALID_CA => {
                let is_ca = self
                    .with_cert(f, |c| {
                        c.basic_constraints()
                            .ok()
                            .flatten()
                            .is_some_and(|bc| bc.value.ca)
                    })
                    .unwrap_or(false);
                let no_kcs = self
                    .with_cert(f, |c| {
                        c.key_usage()
                            .ok()
                            .flatten()
                            .is_some_and(|ku| !ku.value.key_cert_sign())
                    })
                    .unwrap_or(false);
                if is_ca && no_kcs {
                    Refusal::CaKeyUsage {
                        cert,
                        detail: format!("{text}: keyUsage lacks keyCertSign"),
                    }
                } else if !is_ca {
                    Refusal::CaNotCa {
                        cert,
                        detail: format!("{text}: basicConstraints cA is not set"),
                    }
                } else {
                    Refusal::CaNotCa { cert, detail }
                }
            }
            CA_BCONS_NOT_CRITICAL
            | PATHLEN_INVALID_FOR_NON_CA
            | KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA => Refusal::CaNotCa { cert, detail },
            KEYUSAGE_NO_CERTSIGN | CA_CERT_MISSING_KEY_USAGE | PATHLEN_WITHOUT_KU_KEY_CERT_SIGN => {
                Refusal::CaKeyUsage { cert, detail }
            }
            PATH_LENGTH_EXCEEDED | PROXY_PATH_LENGTH_EXCEEDED | CERT_CHAIN_TOO_LONG => {
                Refusal::PathLength { cert, detail }
            }
            PERMITTED_VIOLATION
            | EXCLUDED_VIOLATION
            | SUBTREE_MINMAX
            | UNSUPPORTED_CONSTRAINT_TYPE
            | UNSUPPORTED_CONSTRAINT_SYNTAX
            | UNSUPPORTED_NAME_SYNTAX => Refusal::NameConstraints { cert, detail },
            NO_EXPLICIT_POLICY => Refusal::NoPolicy {
                detail: format!(
                    "{text}: no policy of the path is in the initial policy set and an explicit \
                     policy is required (leaf policies: {})",
                    self.parsed_at(0)
                        .map(|c| rgs::policies(c).join(", "))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "none".into())
                ),
            },
            UNHANDLED_CRITICAL_EXTENSION => Refusal::UnknownCriticalExtension {
                detail: self.unknown_critical(f),
                cert,
            },
            KEYUSAGE_NO_DIGITAL_SIGNATURE | INVALID_PURPOSE => Refusal::KeyUsage { cert, detail },
            EE_KEY_TOO_SMALL | CA_KEY_TOO_SMALL | CA_MD_TOO_WEAK => {
                Refusal::WeakAlgorithm { cert, detail }
            }
            e if (SUITE_B_FIRST..=SUITE_B_LAST).contains(&e) => {
                Refusal::WeakAlgorithm { cert, detail }
            }
            UNABLE_TO_GET_CRL | DIFFERENT_CRL_SCOPE => Refusal::CrlNotFound {
                detail: self.crl_detail(f, CrlProblem::NotFound),
                cert,
            },
            CRL_HAS_EXPIRED => Refusal::CrlExpired {
                detail: self.crl_detail(f, CrlProblem::Expired),
                cert,
            },
            CRL_NOT_YET_VALID => Refusal::CrlNotYetValid {
                detail: self.crl_detail(f, CrlProblem::NotYetValid),
                cert,
            },
            CRL_SIGNATURE_FAILURE
            | UNABLE_TO_DECRYPT_CRL_SIGNATURE
            | UNABLE_TO_GET_CRL_ISSUER
            | KEYUSAGE_NO_CRL_SIGN
            | UNHANDLED_CRITICAL_CRL_EXTENSION
            | ERROR_IN_CRL_LAST_UPDATE_FIELD
            | ERROR_IN_CRL_NEXT_UPDATE_FIELD
            | CRL_PATH_VALIDATION_ERROR => Refusal::CrlInvalid { cert, detail },
            ERROR_IN_CERT_NOT_BEFORE_FIELD
            | ERROR_IN_CERT_NOT_AFTER_FIELD
            | INVALID_NON_CA
            | PROXY_CERTIFICATES_NOT_ALLOWED
            | INVALID_EXTENSION
            | INVALID_POLICY_EXTENSION
            | UNSUPPORTED_EXTENSION_FEATURE
            | UNNESTED_RESOURCE
            | PROXY_SUBJECT_NAME_VIOLATION
            | SIGNATURE_ALGORITHM_INCONSISTENCY
            | ISSUER_NAME_EMPTY..=EMPTY_SUBJECT_SAN_NOT_CRITICAL
            | AUTHORITY_KEY_IDENTIFIER_CRITICAL
            | SUBJECT_KEY_IDENTIFIER_CRITICAL
            | EXTENSIONS_REQUIRE_VERSION_3
            | EC_KEY_EXPLICIT_PARAMS => Refusal::Malformed { cert, detail },
            code => Refusal::Other {
                detail: format!("{text} (X509_V_ERR {code}) at the {cert}"),
            },
        }
    }
}

#[derive(Clone, Copy)]
enum CrlProblem {
    Expired,
    NotYetValid,
    NotFound,
}

/// paraph's checks on the built path (see [`super::rgs`]).
fn own_checks(
    ctx: &Ctx<'_, '_>,
    opts: &VerifyOptions,
    valid_policies: Option<&[String]>,
    out: &mut Vec<Refusal>,
) {
    let rgs_profile = opts.profile == Profile::Rgs;
    for (i, cert) in ctx.chain.iter().enumerate() {
        let depth = u32::try_from(i).unwrap_or(u32::MAX);
        let Some(parsed) = ctx.parsed_at(depth) else {
            out.push(Refusal::Malformed {
                cert: CertPos {
                    depth,
                    subject: "<unparsable certificate>".into(),
                },
                detail: "not a well-formed X.509 certificate".into(),
            });
            continue;
        };
        if !rgs_profile {
            continue;
        }
        let pos = CertPos {
            depth,
            subject: parsed.subject().to_string(),
        };
        rgs::check_algorithms(&pos, parsed, cert, out);
        if i == 0 {
            rgs::check_leaf(&pos, parsed, out);
        } else {
            rgs::check_ca(&pos, parsed, out);
            if opts.check_revocation {
                for crl in ctx.crls_by(parsed.subject().as_raw()) {
                    let current = crl.last_update().timestamp() <= ctx.at
                        && crl.next_update().is_some_and(|t| ctx.at < t.timestamp());
                    if current {
                        rgs::check_crl_algorithm(&pos, crl, out);
                    }
                }
            }
        }
    }
    if let Some(leaf) = ctx.parsed_at(0) {
        level_checks(
            leaf,
            valid_policies,
            &opts.policy_levels,
            opts.required_level,
            rgs_profile,
            out,
        );
    }
}

fn level_checks(
    leaf: &X509Certificate<'_>,
    valid_policies: Option<&[String]>,
    levels: &BTreeMap<String, u8>,
    required: Option<u8>,
    rgs_profile: bool,
    out: &mut Vec<Refusal>,
) {
    if !rgs_profile && required.is_none() {
        return;
    }
    match rgs::leaf_level(leaf, valid_policies, levels) {
        None => out.push(rgs::no_policy(leaf, valid_policies, levels)),
        Some((level, policy)) => {
            if let Some(required) = required {
                if level < required {
                    out.push(Refusal::LevelTooLow {
                        level,
                        required,
                        policy,
                    });
                }
            }
        }
    }
}

fn build_validated(
    chain: &[X509],
    parsed: &[Option<X509Certificate<'_>>],
    opts: &VerifyOptions,
    valid_policies: Option<&[String]>,
) -> Result<ValidatedChain, Refusal> {
    let internal = |what: &str| Refusal::Other {
        detail: format!("internal error after a successful validation: {what}"),
    };
    let leaf = parsed
        .first()
        .and_then(Option::as_ref)
        .ok_or_else(|| internal("no parsed leaf"))?;
    let der = chain
        .first()
        .ok_or_else(|| internal("empty chain"))?
        .to_der()
        .map_err(|_| internal("leaf DER"))?;
    let (level, policy) = match rgs::leaf_level(leaf, valid_policies, &opts.policy_levels) {
        Some((l, p)) => (Some(l), Some(p)),
        None => (None, None),
    };
    if opts.profile == Profile::Rgs && level.is_none() {
        return Err(internal("RGS path without a level"));
    }
    Ok(ValidatedChain {
        chain: chain.to_vec(),
        profile: opts.profile,
        at: opts.at,
        level,
        policy,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        serial_hex: hex::encode(leaf.raw_serial()),
        fingerprint: Sha256::digest(&der).into(),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_checked() {
        assert!(check_oid("1.3.6.1.4.1.99999.1.1.1").is_ok());
        for bad in ["", "1", "3.1", "1..2", "1.2.x", "anyPolicy", "1.2."] {
            assert!(check_oid(bad).is_err(), "{bad}");
        }
    }
}
