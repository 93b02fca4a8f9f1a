//! `DocumentService`: submission (streamed), reading, inbox, visas, rejection, withdrawal and
//! the event stream.

use super::convert::{doc_type_from, doc_type_to, document_to, state_from, state_to, ts};
use super::{caller, idem, invalid, to_status, Api};
use crate::domain::{CircuitName, DocumentId, DomainError};
use crate::proto::{self, document_service_server::DocumentService, submit_document_request::Part};
use crate::service::documents::Submission;
use crate::service::ServiceError;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub type DocumentApi = Api;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The next message of an upload, refused with DEADLINE_EXCEEDED when none arrived within
/// the idle timeout (the upload is then dropped: nothing is stored).
async fn next_within<T>(
    stream: &mut Streaming<T>,
    idle: std::time::Duration,
) -> Result<Option<T>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(m) => m,
        Err(_) => Err(to_status(ServiceError::TimedOut(format!(
            "the upload sent nothing for {} s (transfer_idle_timeout_secs): it was abandoned \
             and nothing was stored",
            idle.as_secs()
        )))),
    }
}

/// The pieces of a download as the reader takes them. A download that ended before its last
/// piece without saying why (the reader took nothing for the idle timeout) ends with an error,
/// never as if the content were whole.
struct Pieces {
    rx: tokio_stream::wrappers::ReceiverStream<Result<proto::ContentChunk, Status>>,
    /// Set once every piece was handed over, or an error was.
    complete: Arc<AtomicBool>,
    idle: std::time::Duration,
    ended: bool,
}

impl Stream for Pieces {
    type Item = Result<proto::ContentChunk, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.rx).poll_next(cx) {
            Poll::Ready(None) => {
                self.ended = true;
                if self.complete.load(Ordering::SeqCst) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(to_status(ServiceError::TimedOut(format!(
                        "the download took nothing for {} s (transfer_idle_timeout_secs): it \
                         was ended before its last piece",
                        self.idle.as_secs()
                    ))))))
                }
            }
            other => other,
        }
    }
}

/// One line of a submitter's list: the document's progress through its circuit.
fn submitted_item(d: &crate::domain::Document) -> proto::SubmittedItem {
    use crate::domain::StepStatus;
    let active = d.active_step();
    proto::SubmittedItem {
        id: d.id.to_string(),
        r#type: doc_type_to(d.doc_type) as i32,
        title: d.title.clone(),
        circuit: d.circuit.0.to_string(),
        circuit_version: d.circuit.1,
        state: state_to(d.state) as i32,
        current_step: active.map_or(-1, |i| i as i32),
        current_step_kind: active.map_or(proto::StepKind::Unspecified, |i| {
            super::convert::kind_to(d.steps[i].kind)
        }) as i32,
        waiting_for: d.waiting_for().iter().map(|u| u.to_string()).collect(),
        steps_total: d.steps.len() as u32,
        steps_finished: d
            .steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Done | StepStatus::Skipped))
            .count() as u32,
        created_at: ts(d.created_at),
        updated_at: ts(d.updated_at),
        file_name: d.content.file_name.clone().unwrap_or_default(),
        signature_format: d.format.as_str().to_owned(),
    }
}

fn doc_id(s: &str) -> Result<DocumentId, Status> {
    DocumentId::parse(s).map_err(invalid)
}

impl Api {
    /// A submission whose content was received whole, by either call: the same request
    /// fingerprint (the header and the content's digest) and the same service path, so that a
    /// retry with the same key gets the same document whichever call made it.
    async fn submit_received(
        &self,
        c: &crate::service::Caller,
        header: proto::SubmitHeader,
        content: crate::service::transfers::Received,
    ) -> Result<Response<proto::Document>, Status> {
        // The fingerprint covers the header and the content (through its digest), so a retried
        // submission with the same key but other content is refused.
        let mut fp = Sha256::new();
        fp.update(header_fingerprint_bytes(&header));
        fp.update(content.sha256().as_bytes());
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
        let doc = self.svc.submit(c, sub, key).await.map_err(to_status)?;
        Ok(Response::new(document_to(&doc)))
    }
}

#[tonic::async_trait]
impl DocumentService for Api {
    async fn submit_document(
        &self,
        req: Request<Streaming<proto::SubmitDocumentRequest>>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let idle = self.svc.limits().transfer_idle_timeout;
        let mut stream = req.into_inner();
        let header = match next_within(&mut stream, idle).await? {
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
        // Refused before any content is taken: a caller who may not submit.
        let mut upload = self.svc.begin_upload(&c).map_err(to_status)?;
        while let Some(msg) = next_within(&mut stream, idle).await? {
            match msg.part {
                Some(Part::Chunk(bytes)) => upload.push(bytes).await.map_err(to_status)?,
                _ => {
                    return Err(invalid(DomainError::invalid(
                        "chunk",
                        "only content chunks may follow the header",
                    )))
                }
            }
        }
        let content = upload.finish().await.map_err(to_status)?;
        self.submit_received(&c, header, content).await
    }

    async fn submit_document_inline(
        &self,
        req: Request<proto::SubmitDocumentInlineRequest>,
    ) -> Result<Response<proto::Document>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let header = r.header.ok_or_else(|| {
            invalid(DomainError::invalid(
                "header",
                "the submission header is required",
            ))
        })?;
        // The content takes the streamed upload's way: the same limit, budget and hash.
        let mut upload = self.svc.begin_upload(&c).map_err(to_status)?;
        if !r.content.is_empty() {
            upload.push(r.content).await.map_err(to_status)?;
        }
        let content = upload.finish().await.map_err(to_status)?;
        self.submit_received(&c, header, content).await
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
        let (_, mut content) = self
            .svc
            .open_content(&c, id, req.get_ref().revision)
            .await
            .map_err(to_status)?;
        let idle = self.svc.limits().transfer_idle_timeout;
        // One piece read ahead at most: a slow reader holds a piece or two, not the document.
        let (tx, out) = tokio::sync::mpsc::channel(1);
        let complete = Arc::new(AtomicBool::new(false));
        let done = complete.clone();
        tokio::spawn(async move {
            loop {
                let item = match content.next().await {
                    Ok(Some(data)) => Ok(proto::ContentChunk { data }),
                    Ok(None) => {
                        done.store(true, Ordering::SeqCst);
                        break;
                    }
                    Err(e) => Err(to_status(e)),
                };
                let failed = item.is_err();
                match tokio::time::timeout(idle, tx.send(item)).await {
                    Ok(Ok(())) if !failed => {}
                    // Failed, the reader hung up, or he took nothing for the idle timeout: the
                    // piece and the download slot are given back (see `Pieces`).
                    _ => {
                        done.store(failed, Ordering::SeqCst);
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(Pieces {
            rx: tokio_stream::wrappers::ReceiverStream::new(out),
            complete,
            idle,
            ended: false,
        })))
    }

    async fn list_inbox(
        &self,
        req: Request<proto::ListInboxRequest>,
    ) -> Result<Response<proto::ListInboxResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let size = page_size(r.page_size)?;
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
                        step_kind: super::convert::kind_to(s.kind) as i32,
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

    async fn list_submitted(
        &self,
        req: Request<proto::ListSubmittedRequest>,
    ) -> Result<Response<proto::ListSubmittedResponse>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let size = page_size(r.page_size)?;
        let state = match proto::DocumentState::try_from(r.state) {
            Ok(proto::DocumentState::Unspecified) => None,
            Ok(s) => Some(state_from(s)),
            Err(_) => {
                return Err(invalid(DomainError::invalid(
                    "state",
                    format!("unknown document state {}", r.state),
                )))
            }
        };
        let before = (!r.page_token.is_empty()).then_some(r.page_token);
        let (docs, next) = self
            .svc
            .submitted(&c, size, before, state)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ListSubmittedResponse {
            documents: docs.iter().map(submitted_item).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_content_summary(
        &self,
        req: Request<proto::GetContentSummaryRequest>,
    ) -> Result<Response<proto::ContentSummary>, Status> {
        let c = caller(&self.svc, &req).await?;
        let r = req.into_inner();
        let id = doc_id(&r.id)?;
        let s = self
            .svc
            .content_summary(&c, id, r.revision)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ContentSummary {
            signature_format: s.format.as_str().to_owned(),
            content_sha256: s.sha256,
            bordereaux: s
                .bordereaux
                .into_iter()
                .map(|b| proto::BordereauSummary {
                    id: b.summary.id,
                    exercise: b.summary.exercise,
                    kind: b.summary.kind,
                    pieces: u32::try_from(b.summary.pieces).unwrap_or(u32::MAX),
                    total_cents: b.summary.total_cents,
                    beneficiaries: b.summary.beneficiaries,
                    signed: b.summary.signed,
                    signer: b.signer.unwrap_or_default(),
                    claimed_role: b.claimed_role.unwrap_or_default(),
                    signing_time: b.signing_time.unwrap_or_default(),
                    defect: b.defect.unwrap_or_default(),
                })
                .collect(),
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

/// The header's protobuf encoding with its metadata entries in key order. prost holds a map
/// field in a `HashMap` and encodes it in that map's iteration order, which differs from one
/// decoded message to the next: fingerprinting `encode_to_vec` made a retried submission with
/// two metadata entries or more look like another request (INVALID_ARGUMENT) about half the
/// time. Fields are encoded one after the other in field order, so with at most one entry
/// these are exactly the bytes `encode_to_vec` gives (and fingerprints stored before stay
/// valid).
fn header_fingerprint_bytes(h: &proto::SubmitHeader) -> Vec<u8> {
    let before = proto::SubmitHeader {
        r#type: h.r#type,
        title: h.title.clone(),
        circuit: h.circuit.clone(),
        ..Default::default()
    };
    // Every field numbered after the map (those added later included).
    let mut after = h.clone();
    after.r#type = 0;
    after.title.clear();
    after.circuit.clear();
    after.metadata.clear();
    let mut out = prost::Message::encode_to_vec(&before);
    let mut entries: Vec<(&String, &String)> = h.metadata.iter().collect();
    entries.sort();
    for (k, v) in entries {
        let one = proto::SubmitHeader {
            metadata: [(k.clone(), v.clone())].into_iter().collect(),
            ..Default::default()
        };
        out.extend(prost::Message::encode_to_vec(&one));
    }
    out.extend(prost::Message::encode_to_vec(&after));
    out
}

/// A list call's `page_size`: 50 when unset, at most 500.
fn page_size(n: u32) -> Result<usize, Status> {
    match n {
        0 => Ok(50),
        n if n <= 500 => Ok(n as usize),
        _ => Err(invalid(DomainError::invalid("page_size", "at most 500"))),
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::header_fingerprint_bytes;
    use crate::proto::SubmitHeader;

    fn header(metadata: &[(&str, &str)]) -> SubmitHeader {
        SubmitHeader {
            r#type: 1,
            title: "Mandat 2026-001".into(),
            circuit: "demo".into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file_name: "m.pdf".into(),
            signature_format: String::new(),
            idempotency_key: "0190f0e3a1b2c3d4e5f6a7b8c9d0e1f2".into(),
        }
    }

    #[test]
    fn the_same_header_always_gives_the_same_bytes_whatever_the_order_of_its_metadata() {
        let entries: Vec<(String, String)> = (0..16)
            .map(|i| (format!("key{i:02}"), format!("value {i}")))
            .collect();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let first = header_fingerprint_bytes(&header(&refs));
        let mut reversed = refs.clone();
        reversed.reverse();
        for _ in 0..20 {
            // Each decoded message has a map of its own, iterated in its own order.
            assert_eq!(header_fingerprint_bytes(&header(&reversed)), first);
        }
        let mut other = refs.clone();
        other[3].1 = "another value";
        assert_ne!(header_fingerprint_bytes(&header(&other)), first);
    }

    #[test]
    fn with_at_most_one_metadata_entry_the_bytes_are_protobufs_own() {
        for h in [header(&[]), header(&[("amount", "1200.50")])] {
            assert_eq!(
                header_fingerprint_bytes(&h),
                prost::Message::encode_to_vec(&h)
            );
        }
    }
}
