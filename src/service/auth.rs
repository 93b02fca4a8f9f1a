//! Who is calling: bearer tokens resolved to a tenant, a user and roles.
//!
//! Security rationale: a token is 256 random bits; only its SHA-256 is stored (a stolen database
//! yields no usable token) and the lookup is by that digest, whose comparison is constant-time.
//! A revoked token, a token of a deleted user, or a tenant header that does not match the token's
//! tenant all fail closed.

use super::watched::WatchedCache;
use super::{random16, Paraph, Result, ServiceError};
use crate::domain::{DomainError, Role, TenantId, TokenId, TokenRecord, User, UserName};
use sha2::{Digest, Sha256};

/// An authenticated caller acting inside one tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub name: UserName,
    pub roles: Vec<Role>,
    /// The platform operator acting in this tenant (with admin and auditor powers).
    pub operator: bool,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn require(&self, role: Role) -> Result<()> {
        if self.has(role) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!("the {} role is required", role.as_str())).into())
        }
    }

    /// Admins and auditors see everything in their tenant.
    pub fn oversees(&self) -> bool {
        self.has(Role::Admin) || self.has(Role::Auditor)
    }

    /// Whether a notice is for this caller.
    pub fn concerned_by(&self, n: &super::Notice) -> bool {
        n.tenant == self.tenant && (self.oversees() || n.concerned.contains(&self.name))
    }
}

/// The result of authentication.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The platform operator, outside any tenant, with the id of the token it authenticated
    /// with (`None` for calls made inside the process, such as the demo set-up).
    Operator { token: Option<TokenId> },
    /// Someone acting in a tenant.
    Caller(Caller),
}

impl Principal {
    /// The caller in a tenant; the operator must name a tenant with the tenant header.
    pub fn in_tenant(self) -> Result<Caller> {
        match self {
            Principal::Caller(c) => Ok(c),
            Principal::Operator { .. } => Err(DomainError::invalid(
                "x-paraph-tenant",
                "the platform operator must name the tenant to act in",
            )
            .into()),
        }
    }
}

/// Principals already authenticated, by token digest and requested tenant, while no committed
/// change touched tokens, tenants or users since they were read (see `watched`): a revoked
/// token or a changed role is refused or applied from the very next call. Refusals are never
/// cached.
pub(super) type AuthCache = WatchedCache<([u8; 32], Option<TenantId>), Principal>;

/// The key prefixes an authentication reads.
pub(super) const AUTH_PREFIXES: [&str; 3] = ["token/", "tenant/", "user/"];

/// Principals kept at most.
pub(super) const AUTH_CACHE_MAX: usize = 16_384;

/// How fresh a token's "last used" time is kept: it is written at most once per token in
/// this many seconds, so that authenticating stays a read.
pub const LAST_USED_STEP_SECS: i64 = 60;

/// Where the time a token (by its digest, hex) last authenticated a call is kept: outside
/// `token/`, so that noting a use does not drop the cached principals.
pub(super) fn last_used_key(digest_hex: &str) -> String {
    format!("tokenused/{digest_hex}")
}

/// The digest under which a token is stored.
pub(super) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh secret token: `pph_` + 64 hex characters (256 bits).
pub(super) fn new_secret() -> Result<String> {
    let a = random16()?;
    let b = random16()?;
    Ok(format!("pph_{}{}", hex::encode(a), hex::encode(b)))
}

/// Constant-time equality of two digests.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredToken {
    pub digest: String,
    pub record: TokenRecord,
}

impl Paraph {
    /// Resolves a bearer token (and the optional tenant header) to a principal.
    pub async fn authenticate(&self, token: &str, tenant: Option<&str>) -> Result<Principal> {
        if token.is_empty() || token.len() > 256 {
            return Err(ServiceError::Unauthenticated);
        }
        let digest = token_digest(token);
        let digest_hex = hex::encode(digest);
        let tenant = tenant.map(TenantId::parse).transpose()?;
        let cache_key = (digest, tenant.clone());
        if let Some(p) = self.auth.get(&cache_key) {
            self.note_use(digest);
            return Ok(p);
        }
        // Read before the records: a change committed meanwhile invalidates the entry.
        let epoch = self.auth.epoch();
        let principal = self
            .blocking(move |store| {
                let stored: StoredToken = store
                    .get(&format!("token/{digest_hex}"))?
                    .ok_or(ServiceError::Unauthenticated)?;
                let stored_digest =
                    hex::decode(&stored.digest).map_err(|_| ServiceError::Unauthenticated)?;
                if !ct_eq(&stored_digest, &digest) || stored.record.revoked_at.is_some() {
                    return Err(ServiceError::Unauthenticated);
                }
                match (stored.record.tenant, stored.record.user) {
                    (None, _) => match tenant {
                        None => Ok(Principal::Operator {
                            token: Some(stored.record.id.clone()),
                        }),
                        Some(t) => {
                            if store.get_raw(&format!("tenant/{t}"))?.is_none() {
                                return Err(DomainError::NotFound(format!("tenant '{t}'")).into());
                            }
                            Ok(Principal::Caller(Caller {
                                tenant: t,
                                name: UserName::operator(),
                                roles: vec![Role::Admin, Role::Auditor],
                                operator: true,
                            }))
                        }
                    },
                    (Some(t), Some(u)) => {
                        if tenant.as_ref().is_some_and(|h| h != &t) {
                            return Err(DomainError::NotFound("tenant".into()).into());
                        }
                        let user: User = store
                            .get(&format!("user/{t}/{u}"))?
                            .ok_or(ServiceError::Unauthenticated)?;
                        Ok(Principal::Caller(Caller {
                            tenant: t,
                            name: u,
                            roles: user.roles,
                            operator: false,
                        }))
                    }
                    (Some(_), None) => Err(ServiceError::Unauthenticated),
                }
            })
            .await?;
        self.auth.put(cache_key, epoch, principal.clone());
        self.note_use(digest);
        Ok(principal)
    }

    /// Records that the token with `digest` authenticated a call now, at most once per
    /// [`LAST_USED_STEP_SECS`] per token, in the background (the call does not wait for it;
    /// a failed write only loses that note).
    fn note_use(&self, digest: [u8; 32]) {
        let now = self.clock.now();
        {
            let mut seen = match self.token_use.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if seen
                .get(&digest)
                .is_some_and(|at| now.0 - at < LAST_USED_STEP_SECS)
            {
                return;
            }
            seen.insert(digest, now.0);
        }
        let store = self.store.clone();
        let key = last_used_key(&hex::encode(digest));
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let r = store
                .transact(move |tx| {
                    tx.put(&key, &now)?;
                    Ok::<_, crate::store::StoreError>(())
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "the last use of a token was not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn secrets_are_fresh() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
    }
}
