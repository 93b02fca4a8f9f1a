//! The platform operator's bearer tokens: issued, rotated, revoked and listed online by the
//! operator, and issued offline by whoever holds the stopped server's data directory; and the
//! listing of a tenant's tokens by its admins.
//!
//! Owns the rule that a revocation never leaves the platform without a live operator token:
//! `operatortokens`, the ids of the live ones, changes in the same transactions as the tokens,
//! and revoking the last one is refused unless a new one is issued in that same transaction (a
//! rotation). An operator token acts with admin and auditor powers in every tenant, so every
//! tenant's audit log records when one is issued or revoked. It must not touch tenant tokens
//! (`tenancy` issues and revokes those) nor decide who a token is (`auth`).

use super::auth::StoredToken;
use super::tenancy::{put_token, IssuedToken};
use super::{append_log, random16, Idem, Paraph, Principal, Result, ServiceError};
use crate::domain::{DomainError, Role, TenantId, Timestamp, TokenId, UserName};
use crate::store::{Store, Tx};
use serde::{Deserialize, Serialize};

/// The key holding the ids of the live operator tokens.
const LIVE_KEY: &str = "operatortokens";
/// The actor of the changes the operator makes online.
const ONLINE_ACTOR: &str = "_operator";
/// The actor of a token issued offline, from the data directory.
const OFFLINE_ACTOR: &str = "_data-directory";

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub id: TokenId,
    /// `None` for an operator token.
    pub user: Option<UserName>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The token the listing call was made with.
    pub current: bool,
    /// When the token last authenticated a call (to [`super::auth::LAST_USED_STEP_SECS`]).
    pub last_used_at: Option<Timestamp>,
}

/// A new operator token, and the tokens revoked in the same step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOperatorToken {
    pub token: IssuedToken,
    pub revoked: Vec<TokenId>,
}

/// Which operator tokens a new one replaces.
#[derive(Debug, Clone)]
enum Replaces {
    Nothing,
    /// One token (the caller's, in a rotation).
    Token(TokenId),
    /// Every other live operator token (an offline recovery after a leak).
    AllOthers,
}

/// What a change of operator tokens reads before its transaction (transactions cannot scan):
/// the tenants whose logs record it, and the live operator tokens, used only when the store,
/// initialised by an older version, has no `operatortokens` yet (the first change writes it,
/// and every later one reads it inside its transaction).
struct Context {
    tenants: Vec<TenantId>,
    live_seed: Vec<TokenId>,
}

fn read_context(store: &Store) -> Result<Context> {
    let tenants = store
        .scan::<crate::domain::Tenant>("tenant/", None, usize::MAX)?
        .into_iter()
        .map(|(_, t)| t.id)
        .collect();
    let live_seed = store
        .scan::<StoredToken>("token/", None, usize::MAX)?
        .into_iter()
        .filter(|(_, t)| t.record.tenant.is_none() && t.record.revoked_at.is_none())
        .map(|(_, t)| t.record.id)
        .collect();
    Ok(Context { tenants, live_seed })
}

fn live_tokens(tx: &Tx<'_>, seed: &[TokenId]) -> Result<Vec<TokenId>> {
    Ok(tx
        .get::<Vec<TokenId>>(LIVE_KEY)?
        .unwrap_or_else(|| seed.to_vec()))
}

/// Records an operator token change in every tenant's log.
fn record(
    tx: &mut Tx<'_>,
    tenants: &[TenantId],
    now: Timestamp,
    actor: &str,
    id: &TokenId,
    kind: &str,
    detail: &str,
) -> Result<()> {
    for t in tenants {
        append_log(
            tx,
            t,
            now,
            actor,
            format!("operator-token/{id}"),
            kind,
            detail.to_owned(),
        )?;
    }
    Ok(())
}

/// Marks a live operator token revoked (the caller updates `operatortokens`).
fn mark_revoked(tx: &mut Tx<'_>, id: &TokenId, now: Timestamp) -> Result<()> {
    let not_found = || ServiceError::from(DomainError::NotFound(format!("operator token '{id}'")));
    let digest: String = tx.get(&format!("tokenid/{id}"))?.ok_or_else(not_found)?;
    let key = format!("token/{digest}");
    let mut stored: StoredToken = tx.get(&key)?.ok_or_else(not_found)?;
    if stored.record.tenant.is_some() {
        return Err(not_found());
    }
    if stored.record.revoked_at.is_none() {
        stored.record.revoked_at = Some(now);
        tx.put(&key, &stored)?;
    }
    Ok(())
}

/// The fresh material of a new token, drawn before its transaction.
struct Fresh {
    secret: String,
    id: TokenId,
}

impl Fresh {
    fn draw() -> Result<Fresh> {
        Ok(Fresh {
            secret: super::auth::new_secret()?,
            id: TokenId::from_random(random16()?),
        })
    }
}

/// Issues an operator token and revokes what it replaces, in one transaction.
fn issue_in(
    tx: &mut Tx<'_>,
    ctx: &Context,
    now: Timestamp,
    actor: &str,
    fresh: &Fresh,
    replaces: &Replaces,
) -> Result<NewOperatorToken> {
    let mut live = live_tokens(tx, &ctx.live_seed)?;
    let retired: Vec<TokenId> = match replaces {
        Replaces::Nothing => Vec::new(),
        Replaces::Token(id) => {
            if !live.contains(id) {
                return Err(DomainError::WrongState(format!(
                    "operator token '{id}' is not live: nothing to rotate"
                ))
                .into());
            }
            vec![id.clone()]
        }
        Replaces::AllOthers => live.clone(),
    };
    let token = put_token(tx, None, None, &fresh.secret, fresh.id.clone(), now)?;
    let detail = match replaces {
        Replaces::Nothing => "",
        Replaces::Token(_) => "rotation",
        Replaces::AllOthers => "replaces every other operator token",
    };
    let detail = match (actor, detail) {
        (OFFLINE_ACTOR, "") => "offline recovery".to_owned(),
        (OFFLINE_ACTOR, d) => format!("offline recovery, {d}"),
        (_, d) => d.to_owned(),
    };
    record(
        tx,
        &ctx.tenants,
        now,
        actor,
        &token.id,
        "operator_token_issued",
        &detail,
    )?;
    for id in &retired {
        mark_revoked(tx, id, now)?;
        record(
            tx,
            &ctx.tenants,
            now,
            actor,
            id,
            "operator_token_revoked",
            &format!("replaced by {}", token.id),
        )?;
    }
    live.retain(|id| !retired.contains(id));
    live.push(token.id.clone());
    tx.put(LIVE_KEY, &live)?;
    Ok(NewOperatorToken {
        token,
        revoked: retired,
    })
}

/// Writes `operatortokens` for the first operator token of a new store (bootstrap).
pub(super) fn first_operator_token(tx: &mut Tx<'_>, id: &TokenId) -> Result<()> {
    tx.put(LIVE_KEY, &vec![id.clone()])?;
    Ok(())
}

/// The operator's own token id, or refused for anyone else.
fn operator_only(who: &Principal) -> Result<Option<TokenId>> {
    match who {
        Principal::Operator { token } => Ok(token.clone()),
        Principal::Caller(_) => Err(DomainError::Forbidden(
            "only the platform operator, acting outside any tenant, manages operator tokens".into(),
        )
        .into()),
    }
}

impl Paraph {
    /// Issues a platform operator token; with `revoke_caller`, the token of the call is revoked
    /// in the same transaction (a rotation).
    pub async fn issue_operator_token(
        &self,
        who: &Principal,
        revoke_caller: bool,
        idem: Option<Idem>,
    ) -> Result<NewOperatorToken> {
        let caller_token = operator_only(who)?;
        let replaces = match (revoke_caller, caller_token) {
            (false, _) => Replaces::Nothing,
            (true, Some(id)) => Replaces::Token(id),
            (true, None) => {
                return Err(DomainError::WrongState(
                    "this call carries no operator token to rotate".into(),
                )
                .into())
            }
        };
        let fresh = Fresh::draw()?;
        let now = self.clock.now();
        let ctx = self.blocking(read_context).await?;
        self.mutate(
            "_platform/_operator".to_owned(),
            "IssueOperatorToken",
            idem,
            move |tx| {
                let out = issue_in(tx, &ctx, now, ONLINE_ACTOR, &fresh, &replaces)?;
                Ok((out, Vec::new()))
            },
        )
        .await
    }

    /// Revokes a platform operator token; the last live one is refused.
    pub async fn revoke_operator_token(
        &self,
        who: &Principal,
        id: TokenId,
        idem: Option<Idem>,
    ) -> Result<TokenId> {
        operator_only(who)?;
        let now = self.clock.now();
        let ctx = self.blocking(read_context).await?;
        self.mutate(
            "_platform/_operator".to_owned(),
            "RevokeOperatorToken",
            idem,
            move |tx| {
                let mut live = live_tokens(tx, &ctx.live_seed)?;
                if !live.contains(&id) {
                    // Revoked already (the answer is the same), or no operator token at all.
                    mark_revoked(tx, &id, now)?;
                    return Ok((id.clone(), Vec::new()));
                }
                if live.len() == 1 {
                    return Err(DomainError::WrongState(format!(
                        "operator token '{id}' is the platform's last live operator token: \
                         issue another first, or rotate it (paraph admin token rotate)"
                    ))
                    .into());
                }
                mark_revoked(tx, &id, now)?;
                live.retain(|t| t != &id);
                tx.put(LIVE_KEY, &live)?;
                record(
                    tx,
                    &ctx.tenants,
                    now,
                    ONLINE_ACTOR,
                    &id,
                    "operator_token_revoked",
                    "",
                )?;
                Ok((id.clone(), Vec::new()))
            },
        )
        .await
    }

    /// The id of the token whose SHA-256 is `sha256_hex`, when it is in the caller's scope
    /// (the operator's own tokens, or a tenant admin's tenant); any other is not found.
    pub async fn token_id_of(&self, who: &Principal, sha256_hex: &str) -> Result<TokenId> {
        let scope = match who {
            Principal::Operator { .. } => None,
            Principal::Caller(c) => {
                c.require(Role::Admin)?;
                Some(c.tenant.clone())
            }
        };
        let digest = sha256_hex.trim().to_ascii_lowercase();
        let not_found = || ServiceError::from(DomainError::NotFound("token".into()));
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DomainError::invalid("token_sha256", "64 hexadecimal digits").into());
        }
        self.blocking(move |s| {
            let stored: StoredToken = s.get(&format!("token/{digest}"))?.ok_or_else(not_found)?;
            if stored.record.tenant != scope {
                return Err(not_found());
            }
            Ok(stored.record.id)
        })
        .await
    }

    /// The tokens of the caller's scope, without secrets: the operator's own (operator outside
    /// any tenant) or the tenant's (its admins), oldest first.
    pub async fn list_tokens(
        &self,
        who: &Principal,
        user: Option<UserName>,
    ) -> Result<Vec<TokenView>> {
        let (scope, current) = match who {
            Principal::Operator { token } => (None, token.clone()),
            Principal::Caller(c) => {
                c.require(Role::Admin)?;
                (Some(c.tenant.clone()), None)
            }
        };
        self.blocking(move |s| {
            let mut out: Vec<TokenView> = Vec::new();
            for (_, t) in s.scan::<StoredToken>("token/", None, usize::MAX)? {
                let r = t.record;
                if r.tenant != scope || (user.is_some() && r.user != user) {
                    continue;
                }
                let last_used_at = s.get(&super::auth::last_used_key(&t.digest))?;
                out.push(TokenView {
                    current: current.as_ref() == Some(&r.id),
                    id: r.id,
                    user: r.user,
                    created_at: r.created_at,
                    revoked_at: r.revoked_at,
                    last_used_at,
                });
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
        .await
    }

    /// Offline recovery by whoever holds the data directory (the server stopped: the caller
    /// holds the directory's lock): issues an operator token and, with `revoke_others`,
    /// revokes every other live one (after a leak).
    pub fn recover_operator_token_blocking(&self, revoke_others: bool) -> Result<NewOperatorToken> {
        let fresh = Fresh::draw()?;
        let now = self.clock.now();
        let ctx = read_context(&self.store)?;
        let replaces = if revoke_others {
            Replaces::AllOthers
        } else {
            Replaces::Nothing
        };
        self.store.transact_blocking(move |tx| {
            if !tx.exists("meta/init")? {
                return Err(DomainError::WrongState(
                    "the data directory was never initialised (paraph admin init)".into(),
                )
                .into());
            }
            issue_in(tx, &ctx, now, OFFLINE_ACTOR, &fresh, &replaces)
        })
    }
}
