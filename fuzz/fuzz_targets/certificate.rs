//! Certificates as SetTrust, BindCertificate and PrepareSignature receive them (PEM or DER):
//! parsing, the summaries shown to users, and the certificate policies the RGS level reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = paraph::crypto::certs::certs_from(data) {
        for c in &certs {
            let _ = paraph::crypto::certs::summarize_cert(c);
            if let Ok(der) = c.to_der() {
                let _ = paraph::pki::policy_oids(&der);
            }
        }
    }
    let _ = paraph::crypto::certificate_public_key(data);
    let _ = paraph::pki::policy_oids(data);
});
