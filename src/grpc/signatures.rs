//! `SignatureService`: two-phase signing, stored signatures, validation reports.

use super::convert::{document_to, state_to, ts};
use super::{caller, idem, invalid, to_status, Api};
use crate::domain::{DocumentId, DomainError, Timestamp};
use crate::proto::{self, signature_service_server::SignatureService};
use crate::service::signatures::SignatureRecord;
use crate::validation::{Indication, Report};
use tonic::{Request, Response, Status};

pub type SignatureApi = Api;

pub fn signature_to(r: &SignatureRecord) -> proto::SignatureInfo {
    proto::SignatureInfo {
        index: r.index,
        step: r.step,
        signer: r.signer.to_string(),
        on_behalf_of: r
            .on_behalf_of
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        subject: r.subject.clone(),
        certificate_sha256: r.cert_sha256.clone(),
        level: u32::from(r.level),
        signing_time: ts(r.signing_time),
        cms: r.cms.0.clone(),
        seal: r.seal,
        absence_id: r
            .absence
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        route: r.route.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        crl_sha256: r.crl_refs.clone(),
    }
}

fn indication_to(i: Indication) -> proto::Indication {
    match i {
        Indication::TotalPassed => proto::Indication::TotalPassed,
        Indication::TotalFailed => proto::Indication::TotalFailed,
        Indication::Indeterminate => proto::Indication::Indeterminate,
    }
}

pub fn report_to(r: &Report) -> proto::ValidationReport {
    proto::ValidationReport {
        indication: indication_to(r.indication) as i32,
        sub_indication: r.sub_indication.clone(),
        signers: r
            .signers
            .iter()
            .map(|s| proto::SignerReport {
                indication: indication_to(s.indication) as i32,
                sub_indication: s.sub_indication.clone(),
                message: s.message.clone(),
                signer: s.signer.clone(),
                level: u32::from(s.level),
                signing_time: s.signing_time.map(Timestamp).and_then(ts),
                chain: s.chain.clone(),
                policy_oid: s.policy_oid.clone().unwrap_or_default(),
                validation_time: ts(Timestamp(s.validation_time)),
                proof_of_existence: s.proof_of_existence.map(Timestamp).and_then(ts),
                reference: s.reference.clone().unwrap_or_default(),
                claimed_role: s.claimed_role.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl SignatureService for Api {
    async fn prepare_signature(
        &self,
        req: Request<proto::PrepareSignatureRequest>,
    ) -> Result<Response<proto::Preparation>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = DocumentId::parse(&r.document_id).map_err(invalid)?;
        let p = self
            .svc
            .prepare_signature(&c, id, r.step, r.certificate_chain, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::Preparation {
            id: p.id,
            signed_attributes: p.signed_attrs.0,
            signature_algorithm: p.alg,
            signing_time: ts(p.signing_time),
            expires_at: ts(p.expires_at),
            step: p.step,
            document_id: p.document.to_string(),
            signature_format: p.format.as_str().to_owned(),
            items: p
                .items
                .into_iter()
                .map(|i| proto::ToBeSigned {
                    label: i.label,
                    data: i.data,
                    reference_digest: i.reference_digest,
                })
                .collect(),
        }))
    }

    async fn complete_signature(
        &self,
        req: Request<proto::CompleteSignatureRequest>,
    ) -> Result<Response<proto::CompleteSignatureResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let done = self
            .svc
            .complete_signature(
                &c,
                r.preparation_id,
                if r.signature_values.is_empty() {
                    vec![r.signature_value]
                } else {
                    r.signature_values
                },
                key,
            )
            .await
            .map_err(to_status)?;
        let d = document_to(&done.document);
        Ok(Response::new(proto::CompleteSignatureResponse {
            document_id: d.id,
            step: done.signature.step,
            signature: Some(signature_to(&done.signature)),
            state: state_to(done.document.state) as i32,
            current_step: d.current_step,
        }))
    }

    async fn get_signatures(
        &self,
        req: Request<proto::GetSignaturesRequest>,
    ) -> Result<Response<proto::GetSignaturesResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let id = DocumentId::parse(&req.get_ref().document_id).map_err(invalid)?;
        let (recs, combined) = self.svc.get_signatures(&c, id).await.map_err(to_status)?;
        let mut crls: Vec<String> = Vec::new();
        for h in recs.iter().flat_map(|r| &r.crl_refs) {
            if !crls.contains(h) {
                crls.push(h.clone());
            }
        }
        Ok(Response::new(proto::GetSignaturesResponse {
            signatures: recs.iter().map(signature_to).collect(),
            combined_cms: combined,
            crl_sha256: crls,
        }))
    }

    async fn get_validation_material(
        &self,
        req: Request<proto::GetValidationMaterialRequest>,
    ) -> Result<Response<proto::ValidationMaterial>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let id = DocumentId::parse(&r.document_id).map_err(invalid)?;
        let der = self
            .svc
            .validation_material(&c, id, r.sha256)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ValidationMaterial { der }))
    }

    async fn validate_signature(
        &self,
        req: Request<proto::ValidateSignatureRequest>,
    ) -> Result<Response<proto::ValidationReport>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let level = match r.required_level {
            0 => None,
            l @ 1..=3 => Some(l as u8),
            _ => {
                return Err(invalid(DomainError::invalid(
                    "required_level",
                    "must be 0 to 3",
                )))
            }
        };
        let document = if r.document_id.is_empty() {
            None
        } else {
            Some(DocumentId::parse(&r.document_id).map_err(invalid)?)
        };
        let report = self
            .svc
            .validate_signature(
                &c,
                r.data,
                r.signature,
                r.at.map(|t| t.seconds),
                level,
                document,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(report_to(&report)))
    }
}
