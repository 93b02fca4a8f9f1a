//! Tenants, users, roles and token records.

use super::{DomainError, TenantId, Timestamp, TokenId, UserName};
use serde::{Deserialize, Serialize};

/// What a user may do in his tenant. A user holds one or more roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits documents (finance software service accounts too) and withdraws his own.
    Submitter,
    /// Acts (visa, signature) on the steps assigned to him.
    Officer,
    /// Manages the tenant: users, tokens, circuits.
    Admin,
    /// Reads everything in the tenant, changes nothing.
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, DomainError> {
        match s {
            "submitter" => Ok(Role::Submitter),
            "officer" => Ok(Role::Officer),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            _ => Err(DomainError::invalid(
                "role",
                format!("unknown role '{s}' (submitter, officer, admin, auditor)"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Officer => "officer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub created_at: Timestamp,
}

impl Tenant {
    pub fn new(id: TenantId, display_name: &str, now: Timestamp) -> Result<Tenant, DomainError> {
        Ok(Tenant {
            display_name: check_display_name(display_name, id.as_str())?,
            id,
            created_at: now,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub tenant: TenantId,
    pub name: UserName,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub created_at: Timestamp,
    /// Certificates this user signs with (pinned by SHA-256 fingerprint).
    #[serde(default)]
    pub certificates: Vec<BoundCertificate>,
}

/// A signing certificate pinned to a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundCertificate {
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Dotted OIDs of its certificate policies (mapped to RGS levels by the trust settings).
    #[serde(default)]
    pub policies: Vec<String>,
}

impl User {
    pub fn new(
        tenant: TenantId,
        name: UserName,
        display_name: &str,
        roles: &[Role],
        now: Timestamp,
    ) -> Result<User, DomainError> {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            return Err(DomainError::invalid(
                "roles",
                "at least one role is required",
            ));
        }
        Ok(User {
            display_name: check_display_name(display_name, name.as_str())?,
            tenant,
            name,
            roles,
            created_at: now,
            certificates: Vec::new(),
        })
    }
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the certificate with this SHA-256 fingerprint is bound to the user.
    pub fn signs_with(&self, sha256: &str) -> bool {
        self.certificates.iter().any(|c| c.sha256 == sha256)
    }
}

/// Display names: free text, trimmed, 1..=200 characters, no control characters. Empty means
/// "same as the identifier".
fn check_display_name(s: &str, default: &str) -> Result<String, DomainError> {
    let s = s.trim();
    if s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "display_name",
            "at most 200 characters, no control characters",
        ));
    }
    Ok(if s.is_empty() {
        default.to_owned()
    } else {
        s.to_owned()
    })
}

/// Who a bearer token belongs to. Only the SHA-256 of the secret is ever stored, as the key of
/// this record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    /// `None` for the platform operator.
    pub tenant: Option<TenantId>,
    pub user: Option<UserName>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}
