//! Tenants, users, tokens and circuits: the administrative side of the service.

use super::auth::{new_secret, token_digest, StoredToken};
use super::{append_log, random16, Caller, Idem, Paraph, Principal, Result, ServiceError};
use crate::domain::{
    Circuit, CircuitName, CircuitSpec, DomainError, Role, Tenant, TenantId, TokenId, TokenRecord,
    User, UserName,
};
use crate::store::Tx;
use serde::{Deserialize, Serialize};

/// A newly issued token. The secret is returned once and never stored, not even in the
/// idempotency record: a retried call returns the token id without the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: TokenId,
    #[serde(skip_serializing, default)]
    pub secret: String,
    pub tenant: Option<TenantId>,
    pub user: Option<UserName>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTenant {
    pub tenant: Tenant,
    pub admin: User,
    pub admin_token: IssuedToken,
}

/// What the first start prints once.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    pub token: String,
    pub tenant: String,
}

/// Creates and stores a token inside a transaction.
pub(super) fn put_token(
    tx: &mut Tx<'_>,
    tenant: Option<TenantId>,
    user: Option<UserName>,
    secret: &str,
    id: TokenId,
    now: crate::domain::Timestamp,
) -> Result<IssuedToken> {
    let digest = hex::encode(token_digest(secret));
    let record = TokenRecord {
        id: id.clone(),
        tenant: tenant.clone(),
        user: user.clone(),
        created_at: now,
        revoked_at: None,
    };
    tx.put(
        &format!("token/{digest}"),
        &StoredToken {
            digest: digest.clone(),
            record,
        },
    )?;
    tx.put(&format!("tokenid/{id}"), &digest)?;
    Ok(IssuedToken {
        id,
        secret: secret.to_owned(),
        tenant,
        user,
    })
}

/// Keeps `userlist/{tenant}`, the tenant's users under one key (transactions cannot scan).
fn add_to_user_list(tx: &mut Tx<'_>, user: &User) -> Result<()> {
    let key = format!("userlist/{}", user.tenant);
    let mut list: Vec<User> = tx.get(&key)?.unwrap_or_default();
    list.push(user.clone());
    tx.put(&key, &list)?;
    Ok(())
}

/// Replaces a user's entry in `userlist/{tenant}` after a change.
pub(super) fn replace_in_user_list(tx: &mut Tx<'_>, user: &User) -> Result<()> {
    let key = format!("userlist/{}", user.tenant);
    let mut list: Vec<User> = tx.get(&key)?.unwrap_or_default();
    for u in list.iter_mut() {
        if u.name == user.name {
            *u = user.clone();
        }
    }
    tx.put(&key, &list)?;
    Ok(())
}

fn user_roles(tx: &Tx<'_>, tenant: &TenantId, u: &UserName) -> Result<Option<Vec<Role>>> {
    Ok(tx
        .get::<User>(&format!("user/{tenant}/{u}"))?
        .map(|u| u.roles))
}

impl Paraph {
    /// Creates the platform operator token and a first tenant when the store is empty.
    /// Returns `None` when the store was initialised before (nothing is printed twice).
    /// Also brings records stored by older versions to the current layout (see
    /// `migrate_absences_blocking`, `backfill_submitted_blocking`).
    pub fn bootstrap_blocking(&self, first_tenant: &str) -> Result<Option<Bootstrap>> {
        let tenant_id = TenantId::parse(first_tenant)?;
        let secret = new_secret()?;
        let token_id = TokenId::from_random(random16()?);
        let now = self.clock.now();
        let out = self.store.transact_blocking(move |tx| {
            if tx.exists("meta/init")? {
                return Ok(None);
            }
            let tenant = Tenant::new(tenant_id.clone(), "", now)?;
            tx.put(&format!("tenant/{tenant_id}"), &tenant)?;
            put_token(tx, None, None, &secret, token_id.clone(), now)?;
            super::operator::first_operator_token(tx, &token_id)?;
            tx.put("meta/init", &now)?;
            append_log(
                tx,
                &tenant_id,
                now,
                "_system",
                format!("tenant/{tenant_id}"),
                "tenant_created",
                String::new(),
            )?;
            Ok::<_, ServiceError>(Some(Bootstrap {
                token: secret.clone(),
                tenant: tenant_id.to_string(),
            }))
        })?;
        self.migrate_absences_blocking()?;
        self.backfill_submitted_blocking()?;
        Ok(out)
    }

    /// The platform operator creates a tenant with its first administrator.
    pub async fn create_tenant(
        &self,
        who: &Principal,
        id: TenantId,
        display_name: String,
        admin: UserName,
        idem: Option<Idem>,
    ) -> Result<NewTenant> {
        if !matches!(who, Principal::Operator { .. }) {
            return Err(DomainError::Forbidden(
                "only the platform operator creates tenants".into(),
            )
            .into());
        }
        let now = self.clock.now();
        let secret = new_secret()?;
        let token_id = TokenId::from_random(random16()?);
        let tenant = Tenant::new(id.clone(), &display_name, now)?;
        let admin = User::new(id.clone(), admin, "", &[Role::Admin], now)?;
        self.mutate(
            "_platform/_operator".to_owned(),
            "CreateTenant",
            idem,
            move |tx| {
                let key = format!("tenant/{}", tenant.id);
                if tx.exists(&key)? {
                    return Err(
                        DomainError::AlreadyExists(format!("tenant '{}'", tenant.id)).into(),
                    );
                }
                tx.put(&key, &tenant)?;
                tx.put(&format!("user/{}/{}", tenant.id, admin.name), &admin)?;
                add_to_user_list(tx, &admin)?;
                let t = put_token(
                    tx,
                    Some(tenant.id.clone()),
                    Some(admin.name.clone()),
                    &secret,
                    token_id.clone(),
                    now,
                )?;
                append_log(
                    tx,
                    &tenant.id,
                    now,
                    "_operator",
                    key,
                    "tenant_created",
                    String::new(),
                )?;
                Ok((
                    NewTenant {
                        tenant: tenant.clone(),
                        admin: admin.clone(),
                        admin_token: t,
                    },
                    Vec::new(),
                ))
            },
        )
        .await
    }

    pub async fn create_user(
        &self,
        caller: &Caller,
        name: UserName,
        display_name: String,
        roles: Vec<Role>,
        idem: Option<Idem>,
    ) -> Result<User> {
        caller.require(Role::Admin)?;
        let user = User::new(
            caller.tenant.clone(),
            name,
            &display_name,
            &roles,
            self.clock.now(),
        )?;
        let actor = caller.name.to_string();
        self.mutate(
            format!("{}/{actor}", caller.tenant),
            "CreateUser",
            idem,
            move |tx| {
                let key = format!("user/{}/{}", user.tenant, user.name);
                if tx.exists(&key)? {
                    return Err(DomainError::AlreadyExists(format!("user '{}'", user.name)).into());
                }
                tx.put(&key, &user)?;
                add_to_user_list(tx, &user)?;
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                append_log(
                    tx,
                    &user.tenant,
                    user.created_at,
                    &actor,
                    format!("user/{}", user.name),
                    "user_created",
                    roles.join(","),
                )?;
                Ok((user.clone(), Vec::new()))
            },
        )
        .await
    }

    /// The caller's own user record and the tenant's policy levels (OID -> RGS level): what a
    /// client needs to pick the caller's certificate on a card. Any user of the tenant; the
    /// platform operator has no user record (NOT_FOUND).
    pub async fn me(
        &self,
        caller: &Caller,
    ) -> Result<(User, std::collections::BTreeMap<String, u8>)> {
        let key = format!("user/{}/{}", caller.tenant, caller.name);
        let user: Option<User> = self.blocking(move |s| Ok(s.get(&key)?)).await?;
        let user = user
            .ok_or_else(|| DomainError::NotFound(format!("user '{}' (the caller)", caller.name)))?;
        let levels = self.load_trust(&caller.tenant).await?.policy_levels;
        Ok((user, levels))
    }

    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<User>> {
        if !caller.oversees() {
            return Err(
                DomainError::Forbidden("the admin or auditor role is required".into()).into(),
            );
        }
        let prefix = format!("user/{}/", caller.tenant);
        self.blocking(move |s| {
            Ok(s.scan::<User>(&prefix, None, usize::MAX)?
                .into_iter()
                .map(|(_, u)| u)
                .collect())
        })
        .await
    }

    pub async fn issue_token(
        &self,
        caller: &Caller,
        user: UserName,
        idem: Option<Idem>,
    ) -> Result<IssuedToken> {
        caller.require(Role::Admin)?;
        let now = self.clock.now();
        let secret = new_secret()?;
        let token_id = TokenId::from_random(random16()?);
        let tenant = caller.tenant.clone();
        let actor = caller.name.to_string();
        self.mutate(format!("{tenant}/{actor}"), "IssueToken", idem, move |tx| {
            if !tx.exists(&format!("user/{tenant}/{user}"))? {
                return Err(DomainError::NotFound(format!("user '{user}'")).into());
            }
            let t = put_token(
                tx,
                Some(tenant.clone()),
                Some(user.clone()),
                &secret,
                token_id.clone(),
                now,
            )?;
            append_log(
                tx,
                &tenant,
                now,
                &actor,
                format!("token/{token_id}"),
                "token_issued",
                format!("for {user}"),
            )?;
            Ok((t, Vec::new()))
        })
        .await
    }

    pub async fn revoke_token(
        &self,
        caller: &Caller,
        id: TokenId,
        idem: Option<Idem>,
    ) -> Result<TokenId> {
        caller.require(Role::Admin)?;
        let now = self.clock.now();
        let tenant = caller.tenant.clone();
        let actor = caller.name.to_string();
        self.mutate(
            format!("{tenant}/{actor}"),
            "RevokeToken",
            idem,
            move |tx| {
                let not_found =
                    || ServiceError::from(DomainError::NotFound(format!("token '{id}'")));
                let digest: String = tx.get(&format!("tokenid/{id}"))?.ok_or_else(not_found)?;
                let key = format!("token/{digest}");
                let mut stored: StoredToken = tx.get(&key)?.ok_or_else(not_found)?;
                // Another tenant's token (or the operator's) is indistinguishable from no token.
                if stored.record.tenant.as_ref() != Some(&tenant) {
                    return Err(not_found());
                }
                if stored.record.revoked_at.is_none() {
                    stored.record.revoked_at = Some(now);
                    tx.put(&key, &stored)?;
                    append_log(
                        tx,
                        &tenant,
                        now,
                        &actor,
                        format!("token/{id}"),
                        "token_revoked",
                        String::new(),
                    )?;
                }
                Ok((id.clone(), Vec::new()))
            },
        )
        .await
    }

    /// Creates a circuit, or the next version of an existing one.
    pub async fn create_circuit(
        &self,
        caller: &Caller,
        spec: CircuitSpec,
        idem: Option<Idem>,
    ) -> Result<Circuit> {
        caller.require(Role::Admin)?;
        // Fail closed: a circuit that could never complete is refused. Signature steps need
        // the tenant's trust settings, seal steps its seal key.
        let has_seal = self.seals.contains_key(&caller.tenant);
        let trust_usable = if spec
            .steps
            .iter()
            .any(|s| s.kind == crate::domain::StepKind::Signature)
        {
            self.load_trust(&caller.tenant).await?.usable()
        } else {
            true
        };
        for (i, st) in spec.steps.iter().enumerate() {
            let missing = match st.kind {
                crate::domain::StepKind::Visa => None,
                crate::domain::StepKind::Signature => (!trust_usable).then_some(
                    "signature steps need the tenant's trust settings (anchors and policy levels)",
                ),
                crate::domain::StepKind::Seal => {
                    (!has_seal).then_some("seal steps need the tenant's seal key")
                }
            };
            if let Some(what) = missing {
                return Err(DomainError::WrongState(format!(
                    "step {i}: {what}, which are not configured"
                ))
                .into());
            }
        }
        let now = self.clock.now();
        let tenant = caller.tenant.clone();
        let by = caller.name.clone();
        self.mutate(format!("{tenant}/{by}"), "CreateCircuit", idem, move |tx| {
            let latest_key = format!("circuitlatest/{tenant}/{}", spec.name);
            let version = tx.get::<u32>(&latest_key)?.unwrap_or(0) + 1;
            let lookup_err = std::cell::RefCell::new(None);
            let roles = |u: &UserName| match user_roles(tx, &tenant, u) {
                Ok(r) => r,
                Err(e) => {
                    lookup_err.borrow_mut().get_or_insert(e.to_string());
                    None
                }
            };
            let circuit = Circuit::define(spec.clone(), version, &roles, by.clone(), now);
            if let Some(e) = lookup_err.into_inner() {
                return Err(ServiceError::Internal(e));
            }
            let circuit = circuit?;
            tx.put(
                &format!("circuit/{tenant}/{}/{version:010}", circuit.name),
                &circuit,
            )?;
            tx.put(&latest_key, &version)?;
            append_log(
                tx,
                &tenant,
                now,
                by.as_str(),
                format!("circuit/{}/{version}", circuit.name),
                "circuit_created",
                String::new(),
            )?;
            Ok((circuit, Vec::new()))
        })
        .await
    }

    /// A circuit version (`None`: the latest).
    pub async fn get_circuit(
        &self,
        caller: &Caller,
        name: CircuitName,
        version: Option<u32>,
    ) -> Result<Circuit> {
        let tenant = caller.tenant.clone();
        self.blocking(move |s| load_circuit(s, &tenant, &name, version))
            .await
    }

    /// The latest version of every circuit of the tenant.
    pub async fn list_circuits(&self, caller: &Caller) -> Result<Vec<Circuit>> {
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            let mut out = Vec::new();
            for (key, version) in
                s.scan::<u32>(&format!("circuitlatest/{tenant}/"), None, usize::MAX)?
            {
                let name = key.rsplit('/').next().unwrap_or_default();
                if let Some(c) = s.get(&format!("circuit/{tenant}/{name}/{version:010}"))? {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }
}

pub(super) fn load_circuit(
    s: &crate::store::Store,
    tenant: &TenantId,
    name: &CircuitName,
    version: Option<u32>,
) -> Result<Circuit> {
    let not_found = || ServiceError::from(DomainError::NotFound(format!("circuit '{name}'")));
    let version = match version {
        Some(v) => v,
        None => s
            .get::<u32>(&format!("circuitlatest/{tenant}/{name}"))?
            .ok_or_else(not_found)?,
    };
    s.get(&format!("circuit/{tenant}/{name}/{version:010}"))?
        .ok_or_else(not_found)
}
