//! A cache of successful certificate path validations for the signing hot path.
//!
//! Owns only memoisation; the validation itself is [`crate::validation::validate_chain`]. Safety
//! rules (a cache must never turn a refusal into a pass):
//!
//! - only successes are kept; a refusal is always recomputed;
//! - the key is the SHA-256 of the tenant, the trust settings' generation (bumped by every
//!   change of anchors, intermediates, CRLs or policy map, so a CRL reload invalidates it), the
//!   required level and the exact DER of the leaf and of the extra certificates supplied;
//! - an entry answers only for validation times inside the window where nothing the result
//!   depends on changes: after every notBefore and CRL thisUpdate involved, before every
//!   notAfter and CRL nextUpdate involved. Outside it, the chain is validated again.

use crate::domain::TenantId;
use crate::validation::{validate_chain, ChainOk, ChainRefusal, TrustSettings};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache is emptied (a miss only costs one validation).
const CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    ok: ChainOk,
    /// Valid for validation times in `[from, until)`.
    from: i64,
    until: i64,
}

/// Successful validations by exact inputs, with their validity window.
#[derive(Debug, Default)]
pub struct ChainCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(
    tenant: &TenantId,
    trust: &TrustSettings,
    leaf: &[u8],
    extra: &[Vec<u8>],
    level: Option<u8>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    part(tenant.as_str().as_bytes());
    part(&trust.generation.to_be_bytes());
    part(&[level.map_or(0, |l| l.saturating_add(1))]);
    part(leaf);
    for e in extra {
        part(e);
    }
    h.finalize().into()
}

/// The instants between which the validation outcome cannot change: the latest notBefore /
/// thisUpdate and the earliest notAfter / nextUpdate of the chain and the tenant's CRLs.
/// `None` when a date cannot be read (then the result is not cached).
fn window(ok: &ChainOk, trust: &TrustSettings) -> Option<(i64, i64)> {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    for der in &ok.chain {
        let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
        from = from.max(c.validity().not_before.timestamp());
        until = until.min(c.validity().not_after.timestamp());
    }
    for crl in &trust.crls {
        let (_, c) = x509_parser::parse_x509_crl(&crl.0).ok()?;
        from = from.max(c.last_update().timestamp());
        // A CRL without nextUpdate never expires by date.
        if let Some(n) = c.next_update() {
            until = until.min(n.timestamp());
        }
    }
    Some((from, until))
}

impl ChainCache {
    pub fn new() -> ChainCache {
        ChainCache::default()
    }

    /// [`validate_chain`] without CRLs beyond the tenant's, answered from the cache when the
    /// same chain already passed under the same trust generation and `at` is in its window.
    pub fn validate(
        &self,
        tenant: &TenantId,
        trust: &TrustSettings,
        leaf: &[u8],
        extra: &[Vec<u8>],
        at: i64,
        level: Option<u8>,
    ) -> Result<ChainOk, ChainRefusal> {
        let k = key(tenant, trust, leaf, extra, level);
        if let Some(e) = self.entries.lock().ok().and_then(|m| m.get(&k).cloned()) {
            if e.from <= at && at < e.until {
                return Ok(e.ok);
            }
        }
        let ok = validate_chain(trust, leaf, extra, &[], at, level)?;
        if let Some((from, until)) = window(&ok, trust) {
            if from <= at && at < until {
                if let Ok(mut m) = self.entries.lock() {
                    if m.len() >= CAPACITY {
                        m.clear();
                    }
                    m.insert(
                        k,
                        Entry {
                            ok: ok.clone(),
                            from,
                            until,
                        },
                    );
                }
            }
        }
        Ok(ok)
    }

    /// Number of cached successes.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Der;

    const AT: i64 = 1_780_000_000;
    // 2049-12-01: the test CRLs' nextUpdate.
    const CRL_NEXT_UPDATE: i64 = 2_521_929_600;

    fn der(file: &str) -> Vec<u8> {
        let pem = std::fs::read(format!("certs-test/{file}")).unwrap();
        openssl::x509::X509::from_pem(&pem)
            .unwrap()
            .to_der()
            .unwrap()
    }

    fn trust(generation: u64, crl_file: &str) -> TrustSettings {
        let crls = crate::crypto::certs::crls_from(
            &std::fs::read(format!("certs-test/{crl_file}")).unwrap(),
        )
        .unwrap();
        TrustSettings {
            anchors: vec![Der(der("root-ca.cert.pem"))],
            intermediates: vec![Der(der("signing-ca.cert.pem"))],
            crls: crls.iter().map(|c| Der(c.to_der().unwrap())).collect(),
            policy_levels: [("1.3.6.1.4.1.99999.1.1.3".to_string(), 3u8)]
                .into_iter()
                .collect(),
            signature_policy: None,
            generation,
            owner: String::new(),
        }
    }

    #[test]
    fn hits_only_within_the_window_and_the_trust_generation() {
        let cache = ChainCache::new();
        let t = TenantId::parse("t1").unwrap();
        let leaf = der("officer-l3-p256.cert.pem");
        let gen1 = trust(1, "crls.pem");
        cache.validate(&t, &gen1, &leaf, &[], AT, Some(3)).unwrap();
        assert_eq!(cache.len(), 1);
        cache
            .validate(&t, &gen1, &leaf, &[], AT + 10, Some(3))
            .unwrap();
        assert_eq!(cache.len(), 1, "a hit adds nothing");
        // Past the CRLs' nextUpdate the chain is validated again, and refused.
        let late = cache
            .validate(&t, &gen1, &leaf, &[], CRL_NEXT_UPDATE + 1, Some(3))
            .unwrap_err();
        assert!(late.code.contains("CRL"), "{}", late.code);
        // Before the certificate's notBefore: refused too, never answered from the cache.
        assert!(cache
            .validate(&t, &gen1, &leaf, &[], 1_700_000_000, Some(3))
            .is_err());
        // A new trust generation (e.g. reloaded CRLs) is a new key: an expired CRL refuses.
        let gen2 = trust(2, "signing-ca.crl-expired.pem");
        assert!(cache.validate(&t, &gen2, &leaf, &[], AT, Some(3)).is_err());
        // A refusal is never cached; a higher level than the policy gives is refused each time.
        let revoked = der("neg-revoked.cert.pem");
        for _ in 0..2 {
            assert!(cache.validate(&t, &gen1, &revoked, &[], AT, None).is_err());
        }
        assert_eq!(cache.len(), 1);
    }
}
