//! Evidence bundles as `paraph audit verify-bundle` reads them: the JSON reader, then the whole
//! verification with the client's signature checker (a fixed log key: forged bundles must be
//! refused with an error, never a panic).
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::audit::bundle::{self, EvidenceBundle};
use paraph::audit::AuditPublicKey;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(b) = EvidenceBundle::from_json(data) else {
        return;
    };
    let Ok(key) = AuditPublicKey::from_raw(&[7u8; 32]) else {
        return;
    };
    let check = paraph::client::evidence::signature_checker(Vec::new(), BTreeMap::new());
    let _ = bundle::verify(&b, &key, &check);
});
