//! `AuditService`: checkpoints, proofs, events and evidence bundles of the caller's tenant log.

use super::{caller, invalid, to_status, Api};
use crate::domain::{DocumentId, DomainError};
use crate::proto::{self, audit_service_server::AuditService};
use crate::service::audit::EventFilter;
use crate::service::ServiceError;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl AuditService for Api {
    async fn get_checkpoint(
        &self,
        req: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::CheckpointResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let cp = self.svc.checkpoint(&c).await.map_err(to_status)?;
        Ok(Response::new(proto::CheckpointResponse {
            checkpoint: cp.encode(),
            size: cp.checkpoint.size,
            root_hash: cp.checkpoint.root.to_vec(),
            time: cp.checkpoint.time,
            origin: cp.checkpoint.origin.clone(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let (ev, size, proof) = self
            .svc
            .inclusion_proof(&c, r.index, r.tree_size)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::InclusionProof {
            index: ev.index,
            tree_size: size,
            hashes: proof.iter().map(|h| h.to_vec()).collect(),
            event: ev.bytes,
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let (to, proof) = self
            .svc
            .consistency_proof(&c, r.from_size, r.to_size)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ConsistencyProof {
            from_size: r.from_size,
            to_size: to,
            hashes: proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn list_events(
        &self,
        req: Request<proto::ListEventsRequest>,
    ) -> Result<Response<proto::ListEventsResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let filter = if r.document_id.is_empty() {
            if r.count == 0 {
                return Err(invalid(DomainError::invalid(
                    "count",
                    "give a document id, or a range with a count of 1 to 1000",
                )));
            }
            EventFilter::Range {
                start: r.start,
                count: r.count,
            }
        } else {
            EventFilter::Document(DocumentId::parse(&r.document_id).map_err(invalid)?)
        };
        let events = self.svc.list_events(&c, filter).await.map_err(to_status)?;
        Ok(Response::new(proto::ListEventsResponse {
            events: events
                .into_iter()
                .map(|e| proto::LoggedEvent {
                    index: e.index,
                    event: e.bytes,
                })
                .collect(),
        }))
    }

    async fn export_evidence(
        &self,
        req: Request<proto::ExportEvidenceRequest>,
    ) -> Result<Response<proto::EvidenceBundle>, Status> {
        let c = caller(&self.svc, &req).await?;
        let id = DocumentId::parse(&req.into_inner().document_id).map_err(invalid)?;
        let bundle = self.svc.export_evidence(&c, id).await.map_err(to_status)?;
        let bytes = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| to_status(ServiceError::Internal(format!("bundle encoding: {e}"))))?;
        Ok(Response::new(proto::EvidenceBundle { bundle: bytes }))
    }

    async fn get_log_key(
        &self,
        req: Request<proto::GetLogKeyRequest>,
    ) -> Result<Response<proto::LogKey>, Status> {
        // Any authenticated user of a tenant may fetch the public key.
        caller(&self.svc, &req).await?;
        let pem = self.svc.audit_public_key_pem().map_err(to_status)?;
        Ok(Response::new(proto::LogKey {
            public_key_pem: String::from_utf8_lossy(&pem).into_owned(),
        }))
    }
}
