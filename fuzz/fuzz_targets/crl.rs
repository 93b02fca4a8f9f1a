//! CRLs as SetTrust receives them (PEM or DER): parsing, the summary shown to users, and the
//! check that each CRL is signed by a certificate of the trust settings.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paraph::validation::Der;

fuzz_target!(|data: &[u8]| {
    let Ok(crls) = paraph::crypto::certs::crls_from(data) else {
        return;
    };
    let mut ders = Vec::new();
    for c in &crls {
        let _ = paraph::crypto::certs::summarize_crl(c);
        if let Ok(d) = c.to_der() {
            ders.push(Der(d));
        }
    }
    let cas: Vec<Der> =
        paraph::crypto::certs::certs_from(include_bytes!("../../certs-test/chain.pem"))
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.to_der().ok().map(Der))
            .collect();
    let _ = paraph::validation::trust::check_crls_signed(&cas, &ders);
});
