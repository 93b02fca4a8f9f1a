//! A cache of *successful* path validations, so that identical chains are not re-validated.
//!
//! It can never turn a failure into a pass:
//!
//! - only successes are stored; a refusal is always recomputed;
//! - the key is the SHA-256 of everything the result depends on: the leaf, the trust anchors,
//!   the intermediates and the CRLs (DER, in the order given), and every option;
//! - the validation time enters the key exactly, not as a coarse bucket: the result depends on
//!   the time only through comparisons with the notBefore/notAfter of the certificates and the
//!   thisUpdate/nextUpdate of the CRLs, so the key holds, for every such instant, whether the
//!   validation time is before, at, or after it. Two times with the same key give the same
//!   outcome; a time past any expiry or nextUpdate gets a different key.
//!
//! A CRL change (added, removed, replaced) changes the key, so it invalidates earlier entries.

use std::collections::HashMap;
use std::sync::Mutex;

use openssl::x509::{X509Ref, X509};
use sha2::{Digest, Sha256};

use super::{verify, Profile, Refusal, ValidatedChain, VerifyOptions};

/// Bounded map from validation inputs to a successful [`ValidatedChain`]. When full, it is
/// emptied (simple and predictable; a cache miss only costs a validation).
#[derive(Debug)]
pub struct ValidationCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], ValidatedChain>>,
    stats: Mutex<CacheStats>,
}

/// Hit and miss counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl ValidationCache {
    /// A cache holding at most `capacity` successful validations (at least 1).
    pub fn new(capacity: usize) -> Self {
        ValidationCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    /// [`verify`], answering from the cache when an identical validation already passed.
    pub fn verify(&self, leaf: &X509, opts: &VerifyOptions) -> Result<ValidatedChain, Refusal> {
        let Some(key) = cache_key(leaf, opts) else {
            return verify(leaf, opts);
        };
        let hit = self.entries.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(mut v) = hit {
            self.count(true);
            v.at = opts.at;
            return Ok(v);
        }
        self.count(false);
        let result = verify(leaf, opts);
        if let Ok(v) = &result {
            if let Ok(mut m) = self.entries.lock() {
                if m.len() >= self.capacity {
                    m.clear();
                }
                m.insert(key, v.clone());
            }
        }
        result
    }

    /// Number of cached successes.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (e.g. when a tenant's trust settings change; not needed for
    /// correctness, since the key covers them).
    pub fn clear(&self) {
        if let Ok(mut m) = self.entries.lock() {
            m.clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, hit: bool) {
        if let Ok(mut s) = self.stats.lock() {
            if hit {
                s.hits += 1;
            } else {
                s.misses += 1;
            }
        }
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn put_cert(h: &mut Sha256, cert: &X509Ref, instants: &mut Vec<i64>) -> Option<()> {
    let der = cert.to_der().ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
    instants.push(parsed.validity().not_before.timestamp());
    instants.push(parsed.validity().not_after.timestamp());
    put(h, &der);
    Some(())
}

/// The cache key, or `None` if some input cannot be read (then nothing is cached).
fn cache_key(leaf: &X509, opts: &VerifyOptions) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    let mut instants = Vec::new();
    h.update(b"paraph pki cache v1");
    put_cert(&mut h, leaf, &mut instants)?;
    for (tag, certs) in [(b"A", &opts.trust_anchors), (b"U", &opts.untrusted)] {
        h.update(tag);
        h.update((certs.len() as u64).to_be_bytes());
        for c in certs {
            put_cert(&mut h, c, &mut instants)?;
        }
    }
    h.update(b"C");
    h.update((opts.crls.len() as u64).to_be_bytes());
    for crl in &opts.crls {
        let (_, parsed) = x509_parser::parse_x509_crl(crl.der()).ok()?;
        instants.push(parsed.last_update().timestamp());
        if let Some(next) = parsed.next_update() {
            instants.push(next.timestamp());
        }
        put(&mut h, crl.der());
    }
    h.update(b"O");
    h.update([
        match opts.profile {
            Profile::Rfc5280 => 1,
            Profile::Rgs => 2,
        },
        u8::from(opts.explicit_policy),
        u8::from(opts.inhibit_policy_mapping),
        u8::from(opts.inhibit_any_policy),
        u8::from(opts.check_revocation),
        u8::from(opts.x509_strict),
        opts.required_level.map_or(0, |l| l.saturating_add(1)),
    ]);
    h.update((opts.initial_policy_set.len() as u64).to_be_bytes());
    for oid in &opts.initial_policy_set {
        put(&mut h, oid.as_bytes());
    }
    h.update((opts.policy_levels.len() as u64).to_be_bytes());
    for (oid, level) in &opts.policy_levels {
        put(&mut h, oid.as_bytes());
        h.update([*level]);
    }
    // The validation time, as its position relative to every instant the outcome compares it
    // with.
    h.update(b"T");
    instants.sort_unstable();
    instants.dedup();
    for t in instants {
        h.update(t.to_be_bytes());
        h.update([match opts.at.cmp(&t) {
            std::cmp::Ordering::Less => 0u8,
            std::cmp::Ordering::Equal => 1,
            std::cmp::Ordering::Greater => 2,
        }]);
    }
    Some(h.finalize().into())
}
