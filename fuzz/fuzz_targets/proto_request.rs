//! Request bodies as the server decodes them: protobuf bytes to the generated message, then the
//! conversions to domain types a handler applies (circuit creation, the most structured one).
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::domain::{Condition, DocumentId, UserName};
use paraph::proto;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = proto::CreateCircuitRequest::decode(data) {
        let _ = paraph::domain::CircuitSpec::try_from(req);
    }
    if let Ok(req) = proto::SubmitHeader::decode(data) {
        let _ = DocumentId::parse(&req.circuit);
        let _ = UserName::parse(&req.title);
    }
    if let Ok(req) = proto::GetSignaturesRequest::decode(data) {
        let _ = DocumentId::parse(&req.document_id);
        let _ = Condition::parse(&req.document_id);
    }
});
