//! `AdminService`: tenants, users, tokens.

use super::convert::{role_from, ts, user_to};
use super::{caller, idem, invalid, principal, to_status, Api};
use crate::domain::{TenantId, TokenId, UserName};
use crate::proto::{self, admin_service_server::AdminService};
use crate::service::tenancy::IssuedToken;
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
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = TokenId::parse(&r.token_id).map_err(invalid)?;
        let id = self
            .svc
            .revoke_token(&c, id, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::RevokeTokenResponse {
            token_id: id.to_string(),
        }))
    }

    async fn set_trust(
        &self,
        _req: Request<proto::SetTrustRequest>,
    ) -> Result<Response<proto::TrustSettings>, Status> {
        Err(Status::unimplemented("trust settings are being built"))
    }

    async fn get_trust(
        &self,
        _req: Request<proto::GetTrustRequest>,
    ) -> Result<Response<proto::TrustSettings>, Status> {
        Err(Status::unimplemented("trust settings are being built"))
    }

    async fn bind_certificate(
        &self,
        _req: Request<proto::BindCertificateRequest>,
    ) -> Result<Response<proto::User>, Status> {
        Err(Status::unimplemented("certificate binding is being built"))
    }
}
