//! Trust settings of a tenant (anchors, intermediates, CRLs, policy -> RGS level map, signature
//! policy), certificate binding, and the one adapter from stored trust to `pki` validation.

use super::watched::WatchedCache;
use super::{append_log, Caller, Idem, Paraph, Result, ServiceError};
use crate::crypto::certs::{
    certs_from, crls_from, summarize_cert, summarize_crl, CertSummary, CrlSummary,
};
use crate::crypto::openssl_reason;
use crate::crypto::SignaturePolicy;
use crate::domain::{BoundCertificate, DomainError, Role, TenantId, Timestamp, User, UserName};
use std::collections::BTreeMap;

pub use crate::validation::trust::{Der, TrustSettings};

/// New trust settings as given by an admin (certificates and CRLs in PEM or DER).
#[derive(Debug, Clone, Default)]
pub struct TrustInput {
    pub anchors: Vec<Vec<u8>>,
    pub intermediates: Vec<Vec<u8>>,
    pub crls: Vec<Vec<u8>>,
    pub policy_levels: BTreeMap<String, u8>,
    pub signature_policy: Option<SignaturePolicy>,
}

/// What `GetTrust` shows.
#[derive(Debug, Clone)]
pub struct TrustView {
    pub anchors: Vec<CertSummary>,
    pub intermediates: Vec<CertSummary>,
    pub crls: Vec<CrlSummary>,
    pub policy_levels: BTreeMap<String, u8>,
    pub signature_policy: Option<SignaturePolicy>,
    pub seal: Option<CertSummary>,
}

fn parse_certs(field: &str, items: &[Vec<u8>]) -> Result<Vec<Der>> {
    let mut out = Vec::new();
    for (i, b) in items.iter().enumerate() {
        let certs = certs_from(b)
            .map_err(|e| DomainError::invalid(format!("{field}[{i}]"), e.to_string()))?;
        for c in certs {
            out.push(Der(c
                .to_der()
                .map_err(|e| ServiceError::Internal(e.to_string()))?));
        }
    }
    Ok(out)
}

fn parse_crls(items: &[Vec<u8>]) -> Result<Vec<Der>> {
    let mut out = Vec::new();
    for (i, b) in items.iter().enumerate() {
        let crls =
            crls_from(b).map_err(|e| DomainError::invalid(format!("crls[{i}]"), e.to_string()))?;
        for c in crls {
            out.push(Der(c
                .to_der()
                .map_err(|e| ServiceError::Internal(e.to_string()))?));
        }
    }
    Ok(out)
}

fn check_oid(field: &str, oid: &str) -> Result<()> {
    crate::crypto::der_util::encode_oid(oid)
        .map(|_| ())
        .map_err(|_| {
            DomainError::invalid(field, format!("'{oid}' is not an object identifier")).into()
        })
}

pub(super) fn trust_key(t: &TenantId) -> String {
    format!("{TRUST_PREFIX}{t}")
}

fn summarize_all(ders: &[Der]) -> Result<Vec<CertSummary>> {
    ders.iter()
        .map(|d| {
            let c = openssl::x509::X509::from_der(&d.0)
                .map_err(|e| ServiceError::Internal(openssl_reason(&e)))?;
            summarize_cert(&c).map_err(|e| ServiceError::Internal(e.to_string()))
        })
        .collect()
}

/// Summary of one certificate given as DER.
pub fn summarize_der(der: &[u8]) -> Result<CertSummary> {
    let c = openssl::x509::X509::from_der(der).map_err(|e| {
        DomainError::invalid(
            "certificate",
            format!("not a DER certificate: {}", openssl_reason(&e)),
        )
    })?;
    summarize_cert(&c).map_err(|e| DomainError::invalid("certificate", e.to_string()).into())
}

/// The key prefix of the tenants' trust settings.
pub(super) const TRUST_PREFIX: &str = "trust/";

/// The tenants' trust settings as last read, for the signing hot path (decoding them costs more
/// than the checks they serve), while no committed change wrote trust settings since (see
/// `watched`).
pub(super) type TrustCache = WatchedCache<TenantId, std::sync::Arc<TrustSettings>>;

impl TrustCache {
    /// The tenant's settings, from the cache or the store.
    pub(super) fn settings(
        &self,
        store: &crate::store::Store,
        tenant: &TenantId,
    ) -> Result<std::sync::Arc<TrustSettings>> {
        if let Some(t) = self.get(tenant) {
            return Ok(t);
        }
        let epoch = self.epoch();
        let t = std::sync::Arc::new(
            store
                .get::<TrustSettings>(&trust_key(tenant))?
                .unwrap_or_default()
                .owned_by(tenant.as_str()),
        );
        self.put(tenant.clone(), epoch, t.clone());
        Ok(t)
    }
}

impl Paraph {
    pub async fn set_trust(
        &self,
        caller: &Caller,
        input: TrustInput,
        idem: Option<Idem>,
    ) -> Result<TrustView> {
        caller.require(Role::Admin)?;
        let anchors = parse_certs("anchors", &input.anchors)?;
        if anchors.is_empty() {
            return Err(
                DomainError::invalid("anchors", "at least one trust anchor is required").into(),
            );
        }
        let intermediates = parse_certs("intermediates", &input.intermediates)?;
        let crls = parse_crls(&input.crls)?;
        let cas: Vec<Der> = anchors.iter().chain(&intermediates).cloned().collect();
        crate::validation::trust::check_crls_signed(&cas, &crls)
            .map_err(|(i, why)| DomainError::invalid(format!("crls[{i}]"), why))?;
        for (oid, level) in &input.policy_levels {
            check_oid("policy_levels", oid)?;
            if !(1..=3).contains(level) {
                return Err(DomainError::invalid(
                    "policy_levels",
                    format!("level of {oid} must be 1, 2 or 3"),
                )
                .into());
            }
        }
        if let Some(p) = &input.signature_policy {
            check_oid("signature_policy.oid", &p.oid)?;
            if p.sha256.len() != 32 {
                return Err(DomainError::invalid(
                    "signature_policy.sha256",
                    "must be 32 bytes (SHA-256)",
                )
                .into());
            }
            if !p.uri.is_ascii() || p.uri.len() > 2048 {
                return Err(DomainError::invalid(
                    "signature_policy.uri",
                    "must be ASCII, at most 2048 bytes",
                )
                .into());
            }
        }
        let tenant = caller.tenant.clone();
        let actor = caller.name.to_string();
        let now = self.clock.now();
        let settings = TrustSettings {
            anchors,
            intermediates,
            crls,
            policy_levels: input.policy_levels,
            signature_policy: input.signature_policy,
            generation: 0,
            owner: String::new(),
        };
        let stored = self
            .mutate(format!("{tenant}/{actor}"), "SetTrust", idem, move |tx| {
                let key = trust_key(&tenant);
                let previous: Option<TrustSettings> = tx.get(&key)?;
                let mut s = settings.clone();
                s.generation = previous.map(|p| p.generation + 1).unwrap_or(1);
                tx.put(&key, &s)?;
                append_log(
                    tx,
                    &tenant,
                    now,
                    &actor,
                    format!("trust/{tenant}"),
                    "trust_set",
                    format!("generation {}", s.generation),
                )?;
                Ok((s, Vec::new()))
            })
            .await?;
        self.trust_view(&caller.tenant, stored)
    }

    pub async fn get_trust(&self, caller: &Caller) -> Result<TrustView> {
        if !caller.oversees() {
            return Err(
                DomainError::Forbidden("the admin or auditor role is required".into()).into(),
            );
        }
        let t = self.load_trust(&caller.tenant).await?;
        self.trust_view(&caller.tenant, t)
    }

    fn trust_view(&self, tenant: &TenantId, t: TrustSettings) -> Result<TrustView> {
        let crls = t
            .crls
            .iter()
            .map(|d| {
                let c = openssl::x509::X509Crl::from_der(&d.0)
                    .map_err(|e| ServiceError::Internal(openssl_reason(&e)))?;
                summarize_crl(&c).map_err(|e| ServiceError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustView {
            anchors: summarize_all(&t.anchors)?,
            intermediates: summarize_all(&t.intermediates)?,
            crls,
            policy_levels: t.policy_levels,
            signature_policy: t.signature_policy,
            seal: match self.seals.get(tenant) {
                Some(s) => Some(summarize_der(&s.cert_der)?),
                None => None,
            },
        })
    }

    /// The tenant's trust settings (empty when never set: nothing is trusted).
    pub async fn load_trust(&self, tenant: &TenantId) -> Result<TrustSettings> {
        let key = trust_key(tenant);
        let owner = tenant.as_str().to_owned();
        self.blocking(move |s| {
            Ok(s.get::<TrustSettings>(&key)?
                .unwrap_or_default()
                .owned_by(&owner))
        })
        .await
    }

    /// Pins a signing certificate to a user of the caller's tenant.
    pub async fn bind_certificate(
        &self,
        caller: &Caller,
        user: UserName,
        cert: Vec<u8>,
        idem: Option<Idem>,
    ) -> Result<User> {
        caller.require(Role::Admin)?;
        let certs =
            certs_from(&cert).map_err(|e| DomainError::invalid("certificate", e.to_string()))?;
        let [c] = certs.as_slice() else {
            return Err(
                DomainError::invalid("certificate", "exactly one certificate is expected").into(),
            );
        };
        let s =
            summarize_cert(c).map_err(|e| DomainError::invalid("certificate", e.to_string()))?;
        let bound = BoundCertificate {
            sha256: s.sha256.clone(),
            subject: s.subject,
            issuer: s.issuer,
            serial: s.serial,
            not_before: Timestamp(s.not_before),
            not_after: Timestamp(s.not_after),
            policies: c
                .to_der()
                .map(|d| crate::pki::policy_oids(&d))
                .unwrap_or_default(),
        };
        let tenant = caller.tenant.clone();
        let actor = caller.name.to_string();
        let now = self.clock.now();
        self.mutate(
            format!("{tenant}/{actor}"),
            "BindCertificate",
            idem,
            move |tx| {
                let ukey = format!("user/{tenant}/{user}");
                let mut u: User = tx
                    .get(&ukey)?
                    .ok_or_else(|| DomainError::NotFound(format!("user '{user}'")))?;
                if !u.has(Role::Officer) {
                    return Err(DomainError::WrongState(format!(
                        "'{user}' is not an officer: only officers sign"
                    ))
                    .into());
                }
                let bkey = format!("certbind/{tenant}/{}", bound.sha256);
                match tx.get::<UserName>(&bkey)? {
                    Some(owner) if owner != user => {
                        return Err(DomainError::AlreadyExists(
                            "a binding of this certificate to another user".into(),
                        )
                        .into())
                    }
                    Some(_) => return Ok((u, Vec::new())),
                    None => {}
                }
                tx.put(&bkey, &user)?;
                u.certificates.push(bound.clone());
                tx.put(&ukey, &u)?;
                super::tenancy::replace_in_user_list(tx, &u)?;
                append_log(
                    tx,
                    &tenant,
                    now,
                    &actor,
                    format!("user/{user}"),
                    "certificate_bound",
                    bound.sha256.clone(),
                )?;
                Ok((u, Vec::new()))
            },
        )
        .await
    }
}
