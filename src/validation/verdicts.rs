//! Passed path validations remembered for the instants at which they cannot change, so that a
//! chain validated again (the same officer signing, the same signature validated twice) does not
//! repeat the RSA and ECDSA verifications, the CRL processing and the policy tree of OpenSSL.
//!
//! Owns only memoisation; [`super::chain`] decides. Why a remembered verdict is the verdict a
//! new validation would reach:
//!
//! - **Only passes, only judged at the current time.** A refusal is always recomputed (so its
//!   message and code are always those of a fresh run), and so is a validation at a proof of
//!   existence earlier than now, which also depends on revocation dates.
//! - **Kept apart per tenant** (the trust settings' owner): a tenant cannot learn from the
//!   speed of an answer what another tenant validated.
//! - **The key is every input, exactly**: the SHA-256 of the signer's certificate, of every
//!   anchor and intermediate (configured or carried by the signature), of every configured CRL
//!   and of every CRL the signature carries (whether or not it verifies: which ones do is a
//!   function of those same certificates), in their order, with the policy → level allowlist and
//!   the level required. A CRL published, a certificate added, a policy remapped: another key.
//! - **Time enters as a position.** Apart from its inputs, the outcome depends on the
//!   validation time only through comparisons with the notBefore/notAfter of the certificates
//!   and the thisUpdate/nextUpdate of the CRLs (OpenSSL's checks, and the choice of the newest
//!   CRL of each scope). A verdict reached at `t` is kept with the nearest such instants on
//!   either side of `t`, and answers only strictly between them: crossing an expiry, a
//!   nextUpdate or the issue of a newer CRL means validating again. When `t` falls exactly on an
//!   instant, or a date cannot be read, nothing is kept.
//!
//! The map is bounded and emptied when full; a miss costs one validation.

use super::chain::ChainOk;
use super::material::{CertInfo, CrlInfo};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Verdicts kept before the map is emptied.
const CAPACITY: usize = 4096;

/// What a validation at the current time depends on, apart from that time.
pub(crate) struct Inputs<'a> {
    pub leaf: &'a CertInfo,
    pub anchors: &'a [CertInfo],
    pub untrusted: &'a [CertInfo],
    pub configured: &'a [CrlInfo],
    pub offered: &'a [CrlInfo],
    pub policy_levels: &'a BTreeMap<String, u8>,
    pub required_level: Option<u8>,
    /// Whose validation this is: passes are never shared between owners.
    pub owner: &'a str,
}

/// A remembered pass: valid for validation times strictly between `after` and `before`.
#[derive(Clone)]
struct Verdict {
    ok: ChainOk,
    after: i64,
    before: i64,
}

static VERDICTS: Mutex<Option<HashMap<[u8; 32], Verdict>>> = Mutex::new(None);

impl Inputs<'_> {
    /// The key of these inputs.
    pub fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"paraph chain verdict v1");
        h.update((self.owner.len() as u64).to_be_bytes());
        h.update(self.owner.as_bytes());
        h.update([self.required_level.map_or(0, |l| l.saturating_add(1))]);
        h.update((self.policy_levels.len() as u64).to_be_bytes());
        for (oid, level) in self.policy_levels {
            h.update((oid.len() as u64).to_be_bytes());
            h.update(oid.as_bytes());
            h.update([*level]);
        }
        h.update(self.leaf.sha256);
        for (tag, certs) in [(b'A', self.anchors), (b'U', self.untrusted)] {
            h.update([tag]);
            h.update((certs.len() as u64).to_be_bytes());
            for c in certs {
                h.update(c.sha256);
            }
        }
        for (tag, crls) in [(b'C', self.configured), (b'O', self.offered)] {
            h.update([tag]);
            h.update((crls.len() as u64).to_be_bytes());
            for c in crls {
                h.update(c.sha256);
            }
        }
        h.finalize().into()
    }
}

/// Every instant the outcome compares the validation time with: the validity of every
/// certificate and the thisUpdate/nextUpdate of every CRL that may be used. `None` when a
/// certificate's dates could not be read.
pub(crate) fn instants(
    leaf: &CertInfo,
    anchors: &[CertInfo],
    untrusted: &[CertInfo],
    configured: &[CrlInfo],
    carried: &[CrlInfo],
) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    for c in std::iter::once(leaf).chain(anchors).chain(untrusted) {
        let (from, to) = c.validity?;
        out.push(from);
        out.push(to);
    }
    for c in configured.iter().chain(carried) {
        out.push(c.this_update);
        out.extend(c.next_update);
    }
    Some(out)
}

/// The remembered pass for `key`, if `at` lies in its window.
pub(crate) fn get(key: &[u8; 32], at: i64) -> Option<ChainOk> {
    let map = VERDICTS.lock().ok()?;
    let v = map.as_ref()?.get(key)?;
    (v.after < at && at < v.before).then(|| v.ok.clone())
}

/// Remembers that the inputs of `key` passed at `at`, for the window `instants` leave around it.
pub(crate) fn put(key: [u8; 32], ok: &ChainOk, at: i64, instants: &[i64]) {
    if instants.contains(&at) {
        return;
    }
    let after = instants
        .iter()
        .copied()
        .filter(|t| *t < at)
        .max()
        .unwrap_or(i64::MIN);
    let before = instants
        .iter()
        .copied()
        .filter(|t| *t > at)
        .min()
        .unwrap_or(i64::MAX);
    if let Ok(mut map) = VERDICTS.lock() {
        let map = map.get_or_insert_with(HashMap::new);
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            key,
            Verdict {
                ok: ok.clone(),
                after,
                before,
            },
        );
    }
}

/// Forgets every remembered pass: the next validation of any chain runs in full (benchmarks
/// of a first validation; an operator-facing reload has no need of it, since the key covers
/// every input).
pub fn forget() {
    if let Ok(mut map) = VERDICTS.lock() {
        *map = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ChainOk {
        ChainOk {
            level: 2,
            subject: "CN=x".into(),
            policy_oid: None,
            chain: vec![vec![1]],
            chain_subjects: vec!["CN=x".into()],
        }
    }

    #[test]
    fn a_verdict_answers_only_strictly_between_the_instants_around_it() {
        let key = [7u8; 32];
        put(key, &ok(), 150, &[100, 200, 300, 50]);
        assert!(get(&key, 150).is_some());
        assert!(get(&key, 101).is_some());
        assert!(get(&key, 199).is_some());
        assert!(get(&key, 100).is_none(), "on the instant before");
        assert!(get(&key, 200).is_none(), "on the instant after");
        assert!(get(&key, 250).is_none(), "past an expiry or a nextUpdate");
        assert!(
            get(&key, 60).is_none(),
            "before a notBefore or a thisUpdate"
        );
        assert!(get(&[8u8; 32], 150).is_none(), "another key");
    }

    #[test]
    fn each_owner_and_each_input_has_a_key_of_its_own() {
        let der = |f: &str| {
            let pem = std::fs::read(format!("certs-test/{f}")).expect("test PKI");
            openssl::x509::X509::from_pem(&pem)
                .expect("PEM")
                .to_der()
                .expect("DER")
        };
        let leaf = crate::validation::material::certificate_info(&der("officer-l2-p256.cert.pem"))
            .expect("leaf");
        let root =
            crate::validation::material::certificate_info(&der("root-ca.cert.pem")).expect("root");
        let levels: BTreeMap<String, u8> = [("1.2.3".to_string(), 2)].into_iter().collect();
        let key = |owner: &str, anchors: &[CertInfo], required_level: Option<u8>| {
            Inputs {
                leaf: &leaf,
                anchors,
                untrusted: &[],
                configured: &[],
                offered: &[],
                policy_levels: &levels,
                required_level,
                owner,
            }
            .key()
        };
        let anchors = [root];
        let a = key("ville-a", &anchors, Some(2));
        assert_eq!(a, key("ville-a", &anchors, Some(2)));
        assert_ne!(a, key("ville-b", &anchors, Some(2)), "another tenant");
        assert_ne!(a, key("ville-a", &[], Some(2)), "other anchors");
        assert_ne!(a, key("ville-a", &anchors, Some(3)), "another level");
    }

    #[test]
    fn nothing_is_kept_at_an_instant() {
        let key = [9u8; 32];
        put(key, &ok(), 200, &[100, 200, 300]);
        assert!(get(&key, 200).is_none());
        assert!(get(&key, 150).is_none());
    }
}
