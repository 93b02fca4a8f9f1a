//! Checked identifiers. Each is parsed once at the edge and is valid by construction afterwards.

use super::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

fn check_slug(
    field: &str,
    s: &str,
    min: usize,
    max: usize,
    extra: &[char],
) -> Result<(), DomainError> {
    if s.len() < min || s.len() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be {min} to {max} characters long"),
        ));
    }
    let ok_first = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c));
    if !ok_first || !ok_rest {
        let allowed: String = extra.iter().collect();
        return Err(DomainError::invalid(
            field,
            format!("must start with a-z or 0-9 and use only a-z, 0-9 and '{allowed}'"),
        ));
    }
    Ok(())
}

macro_rules! slug_id {
    ($(#[$m:meta])* $name:ident, $field:literal, $min:literal, $max:literal, $extra:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                check_slug($field, s, $min, $max, $extra)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(
    /// A tenant (organisation) identifier, e.g. `ville-de-testville`.
    TenantId, "tenant", 2, 63, &['-']
);
slug_id!(
    /// A user's name, unique within a tenant, e.g. `m.durand`.
    UserName, "user", 1, 64, &['.', '_', '-']
);
impl UserName {
    /// The name under which the platform operator appears when acting in a tenant. It cannot
    /// collide with a user: user names start with a letter or digit.
    pub fn operator() -> UserName {
        UserName("_operator".to_owned())
    }

    /// The name under which the tenant's server seal appears in a document's actions.
    pub fn seal() -> UserName {
        UserName("_seal".to_owned())
    }
}

slug_id!(
    /// A circuit's name, e.g. `mandats-courants`.
    CircuitName, "circuit", 1, 64, &['.', '_', '-']
);

macro_rules! hex_id {
    ($(#[$m:meta])* $name:ident, $field:literal) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Builds the identifier from 16 random bytes supplied by the caller.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                Self(hex::encode(bytes))
            }
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(DomainError::invalid($field, "must be 32 lowercase hexadecimal characters"))
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// A document (dossier) identifier: 128 random bits in hex.
    DocumentId, "document id"
);
hex_id!(
    /// An absence's identifier: 128 random bits in hex.
    AbsenceId, "absence id"
);
hex_id!(
    /// A token's public identifier (used to revoke it); unrelated to the secret.
    TokenId, "token id"
);

/// A client-chosen key that makes a mutating call idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// `Ok(None)` for an empty key (the call is not idempotent).
    pub fn parse(s: &str) -> Result<Option<Self>, DomainError> {
        if s.is_empty() {
            return Ok(None);
        }
        if s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid(
                "idempotency_key",
                "must be 1 to 128 printable ASCII characters without spaces",
            ));
        }
        Ok(Some(Self(s.to_owned())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TenantId::parse("ville-de-lyon").is_ok());
        assert!(TenantId::parse("a").is_err());
        assert!(TenantId::parse("-abc").is_err());
        assert!(TenantId::parse("Abc").is_err());
        assert!(UserName::parse("m.durand_2").is_ok());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("a b").is_err());
        assert!(UserName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn hex_ids() {
        let id = DocumentId::from_random([0xab; 16]);
        assert_eq!(DocumentId::parse(id.as_str()), Ok(id));
        assert!(DocumentId::parse("xyz").is_err());
        assert!(DocumentId::parse(&"A".repeat(32)).is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(IdempotencyKey::parse(""), Ok(None));
        assert!(IdempotencyKey::parse("k-1").unwrap().is_some());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }
}
