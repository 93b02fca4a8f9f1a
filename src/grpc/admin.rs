//! `AdminService`: tenants, users, tokens, trust settings, certificate bindings, server
//! statistics.

use super::convert::{cert_summary_to, role_from, ts, user_to};
use super::{caller, idem, invalid, principal, to_status, Api};
use crate::crypto::SignaturePolicy;
use crate::domain::{DomainError, Timestamp};
use crate::domain::{TenantId, TokenId, UserName};
use crate::proto::{self, admin_service_server::AdminService};
use crate::service::tenancy::IssuedToken;
use crate::service::trust::{TrustInput, TrustView};
use crate::service::Principal;
use tonic::{Request, Response, Status};

pub type AdminApi = Api;

fn issued_to(t: &IssuedToken) -> proto::IssuedToken {
    proto::IssuedToken {
        token_id: t.id.to_string(),
        token: t.secret.clone(),
        user: t.user.as_ref().map(|u| u.to_string()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl AdminService for Api {
    async fn create_tenant(
        &self,
        req: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        let who = principal(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = TenantId::parse(&r.id).map_err(invalid)?;
        let admin = UserName::parse(if r.admin_user.is_empty() {
            "admin"
        } else {
            &r.admin_user
        })
        .map_err(invalid)?;
        let t = self
            .svc
            .create_tenant(&who, id, r.display_name, admin, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::CreateTenantResponse {
            tenant: Some(proto::Tenant {
                id: t.tenant.id.to_string(),
                display_name: t.tenant.display_name.clone(),
                created_at: ts(t.tenant.created_at),
            }),
            admin: Some(user_to(&t.admin)),
            admin_token: Some(issued_to(&t.admin_token)),
        }))
    }

    async fn create_user(
        &self,
        req: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let name = UserName::parse(&r.name).map_err(invalid)?;
        let roles = r
            .roles
            .iter()
            .map(|v| role_from(*v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let u = self
            .svc
            .create_user(&c, name, r.display_name, roles, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to(&u)))
    }

    async fn list_users(
        &self,
        req: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let users = self.svc.list_users(&c).await.map_err(to_status)?;
        Ok(Response::new(proto::ListUsersResponse {
            users: users.iter().map(user_to).collect(),
        }))
    }

    async fn issue_token(
        &self,
        req: Request<proto::IssueTokenRequest>,
    ) -> Result<Response<proto::IssueTokenResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let user = UserName::parse(&r.user).map_err(invalid)?;
        let t = self
            .svc
            .issue_token(&c, user, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::IssueTokenResponse {
            token: Some(issued_to(&t)),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::RevokeTokenResponse>, Status> {
        let who = principal(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = if r.token_id.is_empty() && !r.token_sha256.is_empty() {
            self.svc
                .token_id_of(&who, &r.token_sha256)
                .await
                .map_err(to_status)?
        } else {
            TokenId::parse(&r.token_id).map_err(invalid)?
        };
        let id = match who {
            Principal::Operator { .. } => self.svc.revoke_operator_token(&who, id, key).await,
            Principal::Caller(c) => self.svc.revoke_token(&c, id, key).await,
        }
        .map_err(to_status)?;
        Ok(Response::new(proto::RevokeTokenResponse {
            token_id: id.to_string(),
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let who = principal(&self.svc, &req).await?;
        let user = match req.get_ref().user.as_str() {
            "" => None,
            u => Some(UserName::parse(u).map_err(invalid)?),
        };
        let tokens = self.svc.list_tokens(&who, user).await.map_err(to_status)?;
        Ok(Response::new(proto::ListTokensResponse {
            tokens: tokens
                .iter()
                .map(|t| proto::TokenInfo {
                    token_id: t.id.to_string(),
                    user: t.user.as_ref().map(|u| u.to_string()).unwrap_or_default(),
                    created_at: ts(t.created_at),
                    revoked_at: t.revoked_at.and_then(ts),
                    current: t.current,
                    last_used_at: t.last_used_at.and_then(ts),
                })
                .collect(),
        }))
    }

    async fn issue_operator_token(
        &self,
        req: Request<proto::IssueOperatorTokenRequest>,
    ) -> Result<Response<proto::IssueOperatorTokenResponse>, Status> {
        let who = principal(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let out = self
            .svc
            .issue_operator_token(&who, r.revoke_caller, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::IssueOperatorTokenResponse {
            token: Some(issued_to(&out.token)),
            revoked_token_id: out
                .revoked
                .first()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn set_trust(
        &self,
        req: Request<proto::SetTrustRequest>,
    ) -> Result<Response<proto::TrustSettings>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let mut levels = std::collections::BTreeMap::new();
        for p in &r.policy_levels {
            let level = u8::try_from(p.level)
                .ok()
                .filter(|l| (1..=3).contains(l))
                .ok_or_else(|| {
                    invalid(DomainError::invalid(
                        "policy_levels",
                        format!("level of {} must be 1, 2 or 3", p.oid),
                    ))
                })?;
            levels.insert(p.oid.clone(), level);
        }
        let input = TrustInput {
            anchors: r.anchors,
            intermediates: r.intermediates,
            crls: r.crls,
            policy_levels: levels,
            signature_policy: r.signature_policy.map(|p| SignaturePolicy {
                oid: p.oid,
                sha256: p.sha256,
                uri: p.uri,
            }),
        };
        let view = self
            .svc
            .set_trust(&c, input, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(trust_to(&view)))
    }

    async fn get_trust(
        &self,
        req: Request<proto::GetTrustRequest>,
    ) -> Result<Response<proto::TrustSettings>, Status> {
        let c = caller(&self.svc, &req).await?;
        let view = self.svc.get_trust(&c).await.map_err(to_status)?;
        Ok(Response::new(trust_to(&view)))
    }

    async fn bind_certificate(
        &self,
        req: Request<proto::BindCertificateRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let user = UserName::parse(&r.user).map_err(invalid)?;
        if r.certificate.is_empty() || r.certificate.len() > 64 * 1024 {
            return Err(invalid(DomainError::invalid(
                "certificate",
                "must be 1 byte to 64 KiB",
            )));
        }
        let u = self
            .svc
            .bind_certificate(&c, user, r.certificate, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(user_to(&u)))
    }

    async fn get_me(
        &self,
        req: Request<proto::GetMeRequest>,
    ) -> Result<Response<proto::Me>, Status> {
        let c = caller(&self.svc, &req).await?;
        let (user, levels) = self.svc.me(&c).await.map_err(to_status)?;
        Ok(Response::new(proto::Me {
            user: Some(user_to(&user)),
            policy_levels: levels
                .iter()
                .map(|(oid, level)| proto::PolicyLevel {
                    oid: oid.clone(),
                    level: u32::from(*level),
                })
                .collect(),
        }))
    }

    async fn get_server_stats(
        &self,
        req: Request<proto::GetServerStatsRequest>,
    ) -> Result<Response<proto::ServerStats>, Status> {
        let who = principal(&self.svc, &req).await?;
        let s = self.svc.server_stats(&who).await.map_err(to_status)?;
        Ok(Response::new(proto::ServerStats {
            rss_bytes: s.rss_bytes,
            peak_rss_bytes: s.peak_rss_bytes,
            uptime_seconds: s.uptime_seconds,
            storage_engine: s.storage_engine.to_string(),
            store_bytes: s.store_bytes,
        }))
    }
}

fn trust_to(v: &TrustView) -> proto::TrustSettings {
    proto::TrustSettings {
        anchors: v.anchors.iter().map(cert_summary_to).collect(),
        intermediates: v.intermediates.iter().map(cert_summary_to).collect(),
        crls: v
            .crls
            .iter()
            .map(|c| proto::CrlSummary {
                issuer: c.issuer.clone(),
                this_update: ts(Timestamp(c.this_update)),
                next_update: c.next_update.map(Timestamp).and_then(ts),
                revoked: c.revoked as u32,
            })
            .collect(),
        policy_levels: v
            .policy_levels
            .iter()
            .map(|(oid, level)| proto::PolicyLevel {
                oid: oid.clone(),
                level: u32::from(*level),
            })
            .collect(),
        signature_policy: v.signature_policy.as_ref().map(|p| proto::SignaturePolicy {
            oid: p.oid.clone(),
            sha256: p.sha256.clone(),
            uri: p.uri.clone(),
        }),
        seal_configured: v.seal.is_some(),
        seal: v.seal.as_ref().map(cert_summary_to),
    }
}
