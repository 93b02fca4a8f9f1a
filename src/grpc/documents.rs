//! `DocumentService`: submission (streamed), reading, inbox, visas, rejection, withdrawal and
//! the event stream.

use super::convert::{doc_type_from, doc_type_to, document_to, state_to, ts};
use super::{caller, idem, invalid, to_status, Api};
use crate::domain::{CircuitName, DocumentId, DomainError, StepKind};
use crate::proto::{self, document_service_server::DocumentService, submit_document_request::Part};
use crate::service::documents::Submission;
use crate::service::ServiceError;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub type DocumentApi = Api;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Content is served in chunks of this size.
const CHUNK: usize = 1024 * 1024;

fn doc_id(s: &str) -> Result<DocumentId, Status> {
    DocumentId::parse(s).map_err(invalid)
}

#[tonic::async_trait]
impl DocumentService for Api {
    async fn submit_document(
        &self,
        req: Request<Streaming<proto::SubmitDocumentRequest>>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let max = self.svc.limits().max_document_bytes;
        let mut stream = req.into_inner();
        let header = match stream.message().await? {
            Some(proto::SubmitDocumentRequest {
                part: Some(Part::Header(h)),
            }) => h,
            _ => {
                return Err(invalid(DomainError::invalid(
                    "header",
                    "the first message must carry the submission header",
                )))
            }
        };
        let mut content = Vec::new();
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(Part::Chunk(bytes)) => {
                    if (content.len() + bytes.len()) as u64 > max {
                        return Err(to_status(ServiceError::TooLarge(format!(
                            "document exceeds the limit of {max} bytes"
                        ))));
                    }
                    content.extend_from_slice(&bytes);
                }
                _ => {
                    return Err(invalid(DomainError::invalid(
                        "chunk",
                        "only content chunks may follow the header",
                    )))
                }
            }
        }
        // The fingerprint covers the header and the content, so a retried submission with the
        // same key but other content is refused.
        let mut fp = Sha256::new();
        fp.update(prost::Message::encode_to_vec(&header));
        fp.update(&content);
        let key = idem(
            &header.idempotency_key,
            &proto::ContentChunk {
                data: fp.finalize().to_vec(),
            },
        )?;
        let sub = Submission {
            doc_type: doc_type_from(header.r#type).map_err(invalid)?,
            title: header.title,
            circuit: CircuitName::parse(&header.circuit).map_err(invalid)?,
            metadata: header.metadata.into_iter().collect(),
            file_name: Some(header.file_name),
            format: crate::domain::SignatureFormat::parse(&header.signature_format)
                .map_err(invalid)?,
            content,
        };
        let doc = self.svc.submit(&c, sub, key).await.map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }

    async fn get_document(
        &self,
        req: Request<proto::GetDocumentRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let id = doc_id(&req.get_ref().id)?;
        let doc = self.svc.get_document(&c, id).await.map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }

    type GetContentStream = BoxStream<proto::ContentChunk>;

    async fn get_content(
        &self,
        req: Request<proto::GetContentRequest>,
    ) -> Result<Response<Self::GetContentStream>, Status> {
        let c = caller(&self.svc, &req).await?;
        let id = doc_id(&req.get_ref().id)?;
        let revision = req.get_ref().revision;
        let (_, bytes) = self
            .svc
            .get_content(&c, id, revision)
            .await
            .map_err(to_status)?;
        let chunks: Vec<Result<proto::ContentChunk, Status>> = bytes
            .chunks(CHUNK)
            .map(|b| Ok(proto::ContentChunk { data: b.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn list_inbox(
        &self,
        req: Request<proto::ListInboxRequest>,
    ) -> Result<Response<proto::ListInboxResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let size = match r.page_size {
            0 => 50,
            n if n <= 500 => n as usize,
            _ => {
                return Err(invalid(DomainError::invalid("page_size", "at most 500")));
            }
        };
        let after = (!r.page_token.is_empty()).then_some(r.page_token);
        let (items, next) = self.svc.inbox(&c, size, after).await.map_err(to_status)?;
        Ok(Response::new(proto::ListInboxResponse {
            items: items
                .iter()
                .map(|i| {
                    let d = &i.document;
                    let s = &d.steps[i.step];
                    proto::InboxItem {
                        id: d.id.to_string(),
                        r#type: doc_type_to(d.doc_type) as i32,
                        title: d.title.clone(),
                        circuit: d.circuit.0.to_string(),
                        step: i.step as u32,
                        step_kind: match s.kind {
                            StepKind::Visa => proto::StepKind::Visa,
                            StepKind::Signature => proto::StepKind::Signature,
                            StepKind::Seal => proto::StepKind::Seal,
                        } as i32,
                        waiting_since: s.activated_at.and_then(ts),
                        due_at: s.due_at.and_then(ts),
                        on_behalf_of: i
                            .on_behalf_of
                            .iter()
                            .map(|u| u.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        submitter: d.submitter.to_string(),
                        route: i.route.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                    }
                })
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn approve(
        &self,
        req: Request<proto::ApproveRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = doc_id(&r.id)?;
        let comment = (!r.comment.trim().is_empty()).then_some(r.comment);
        let doc = self
            .svc
            .approve(&c, id, r.step, comment, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }

    async fn reject(
        &self,
        req: Request<proto::RejectRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = doc_id(&r.id)?;
        let doc = self
            .svc
            .reject(&c, id, r.step, r.reason, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }

    async fn withdraw(
        &self,
        req: Request<proto::WithdrawRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let key = idem(&r.idempotency_key, &r)?;
        let id = doc_id(&r.id)?;
        let doc = self
            .svc
            .withdraw(&c, id, r.reason, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }

    type WatchEventsStream = BoxStream<proto::DocumentEvent>;

    async fn watch_events(
        &self,
        req: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let c = caller(&self.svc, &req).await?;
        let mut rx = self.svc.subscribe();
        let mut stopping = self.stopping.clone();
        let (tx, out) = tokio::sync::mpsc::channel(64);
        // Forwards the caller's notices until he hangs up or the server stops.
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = stopping.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                    r = rx.recv() => r,
                };
                let msg = match item {
                    Ok(n) if c.concerned_by(&n) => Ok(proto::DocumentEvent {
                        seq: n.event.seq,
                        at: ts(n.event.at),
                        document_id: n.document.to_string(),
                        kind: n.event.kind.as_str().to_owned(),
                        actor: n
                            .event
                            .actor
                            .as_ref()
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        step: n.event.step.map(|s| s as i32).unwrap_or(-1),
                        detail: n.event.detail.clone(),
                        state: state_to(n.state) as i32,
                        title: n.title.clone(),
                        on_behalf_of: super::convert::opt_name(&n.event.on_behalf_of),
                    }),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        Err(Status::data_loss(format!(
                        "{k} events were dropped: the watcher fell behind; re-read the documents"
                    )))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(out);
        Ok(Response::new(Box::pin(stream)))
    }
}
