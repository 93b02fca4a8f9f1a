//! CMS signatures as ValidateSignature receives them: the parser, then the whole validator
//! against the test PKI's trust settings.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::validation::{validate_cms, Der, TrustSettings};
use std::sync::OnceLock;

fn trust() -> &'static TrustSettings {
    static TRUST: OnceLock<TrustSettings> = OnceLock::new();
    TRUST.get_or_init(|| {
        let der = |pem: &[u8]| {
            paraph::crypto::certs::certs_from(pem)
                .ok()
                .and_then(|v| v.first().and_then(|c| c.to_der().ok()))
                .map(Der)
        };
        let root = der(include_bytes!("../../certs-test/root-ca.cert.pem"));
        let ca = der(include_bytes!("../../certs-test/signing-ca.cert.pem"));
        let crls = paraph::crypto::certs::crls_from(include_bytes!("../../certs-test/crls.pem"))
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.to_der().ok().map(Der))
            .collect();
        TrustSettings {
            anchors: root.into_iter().collect(),
            intermediates: ca.into_iter().collect(),
            crls,
            policy_levels: [
                ("1.3.6.1.4.1.99999.1.1.1".to_string(), 1),
                ("1.3.6.1.4.1.99999.1.1.2".to_string(), 2),
                ("1.3.6.1.4.1.99999.1.1.3".to_string(), 3),
            ]
            .into_iter()
            .collect(),
            ..TrustSettings::default()
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = paraph::crypto::parse(data) {
        // A CMS that parses takes its CRLs in and out again without failing.
        if let Ok(with) = paraph::crypto::with_crls(data, &p.crls) {
            let _ = paraph::crypto::parse(&with);
        }
    }
    let _ = validate_cms(trust(), b"content", data, 1_767_225_600, &[], None);
});
