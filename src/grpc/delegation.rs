//! `DelegationService`: absences, their listing, and reassignment by an admin.

use super::convert::{doc_type_from, doc_type_to, document_to, ts};
use super::{caller, idem, invalid, to_status, Api};
use crate::domain::{
    Absence, AbsenceId, AbsenceRequest, CircuitName, DocumentId, DomainError, Reassignment, Scope,
    Timestamp, UserName,
};
use crate::proto::{self, delegation_service_server::DelegationService};
use tonic::{Request, Response, Status};

fn absence_to(a: &Absence, now: Timestamp) -> proto::Absence {
    proto::Absence {
        id: a.id.to_string(),
        user: a.user.to_string(),
        from: ts(a.from),
        to: ts(a.to),
        delegate: a.delegate.to_string(),
        types: a
            .scope
            .doc_types
            .iter()
            .map(|t| doc_type_to(*t) as i32)
            .collect(),
        circuits: a.scope.circuits.iter().map(|c| c.to_string()).collect(),
        declared_by: a.declared_by.to_string(),
        declared_at: ts(a.declared_at),
        cancelled_at: a.cancelled_at.and_then(ts),
        active: a.is_active(now),
    }
}

fn required_time(t: Option<proto::Timestamp>, field: &str) -> Result<Timestamp, Status> {
    t.map(|t| Timestamp(t.seconds))
        .ok_or_else(|| invalid(DomainError::invalid(field, "is required")))
}

fn user_field(s: &str, field: &str) -> Result<UserName, Status> {
    UserName::parse(s).map_err(|_| {
        invalid(DomainError::invalid(
            field,
            format!("'{s}' is not a user name"),
        ))
    })
}

#[tonic::async_trait]
impl DelegationService for Api {
    async fn declare_absence(
        &self,
        req: Request<proto::DeclareAbsenceRequest>,
    ) -> Result<Response<proto::Absence>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let user = match r.user.as_str() {
            "" => c.name.clone(),
            u => user_field(u, "user")?,
        };
        let doc_types = r
            .types
            .iter()
            .map(|t| doc_type_from(*t).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let circuits = r
            .circuits
            .iter()
            .map(|n| CircuitName::parse(n).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let req = AbsenceRequest {
            user,
            from: required_time(r.from, "from")?,
            to: required_time(r.to, "to")?,
            delegate: user_field(&r.delegate, "delegate")?,
            scope: Scope::new(doc_types, circuits).map_err(invalid)?,
        };
        let a = self
            .svc
            .declare_absence(&c, req, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(absence_to(&a, self.svc.now())))
    }

    async fn cancel_absence(
        &self,
        req: Request<proto::CancelAbsenceRequest>,
    ) -> Result<Response<proto::Absence>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = AbsenceId::parse(&r.id).map_err(invalid)?;
        let a = self
            .svc
            .cancel_absence(&c, id, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(absence_to(&a, self.svc.now())))
    }

    async fn list_absences(
        &self,
        req: Request<proto::ListAbsencesRequest>,
    ) -> Result<Response<proto::ListAbsencesResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let user = match r.user.as_str() {
            "" => None,
            u => Some(user_field(u, "user")?),
        };
        let all = self
            .svc
            .list_absences(&c, user, r.include_past)
            .await
            .map_err(to_status)?;
        let now = self.svc.now();
        Ok(Response::new(proto::ListAbsencesResponse {
            absences: all.iter().map(|a| absence_to(a, now)).collect(),
        }))
    }

    async fn reassign(
        &self,
        req: Request<proto::ReassignRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = DocumentId::parse(&r.document_id).map_err(invalid)?;
        let from = user_field(&r.from, "from")?;
        let to = user_field(&r.to, "to")?;
        let doc = self
            .svc
            .reassign(
                &c,
                id,
                Reassignment {
                    step: r.step,
                    from,
                    to,
                    reason: r.reason,
                },
                key,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }
}
