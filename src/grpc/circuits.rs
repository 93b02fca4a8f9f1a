//! `CircuitService`: versioned circuit templates.

use super::convert::circuit_to;
use super::{caller, idem, invalid, to_status, Api};
use crate::domain::{CircuitName, CircuitSpec};
use crate::proto::{self, circuit_service_server::CircuitService};
use tonic::{Request, Response, Status};

pub type CircuitApi = Api;

#[tonic::async_trait]
impl CircuitService for Api {
    async fn create_circuit(
        &self,
        req: Request<proto::CreateCircuitRequest>,
    ) -> Result<Response<proto::Circuit>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let spec = CircuitSpec::try_from(r)?;
        let circuit = self
            .svc
            .create_circuit(&c, spec, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(circuit_to(&circuit)))
    }

    async fn get_circuit(
        &self,
        req: Request<proto::GetCircuitRequest>,
    ) -> Result<Response<proto::Circuit>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let name = CircuitName::parse(&r.name).map_err(invalid)?;
        let version = (r.version > 0).then_some(r.version);
        let circuit = self
            .svc
            .get_circuit(&c, name, version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(circuit_to(&circuit)))
    }

    async fn list_circuits(
        &self,
        req: Request<proto::ListCircuitsRequest>,
    ) -> Result<Response<proto::ListCircuitsResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let circuits = self.svc.list_circuits(&c).await.map_err(to_status)?;
        Ok(Response::new(proto::ListCircuitsResponse {
            circuits: circuits.iter().map(circuit_to).collect(),
        }))
    }
}
