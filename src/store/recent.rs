//! The writer's memory of what it read and wrote lately: a bounded cache in front of sled and
//! the value log, so that a mutation reading a record the previous step of the same document
//! wrote a few milliseconds earlier (its document, its log position, the tenant's log head, the
//! preparation it completes) does not walk sled's tree and re-read the value log.
//!
//! Coherence rests on one fact: every write goes through the writer, which tells this cache
//! about each group's writes when (and only when) the group is handed to the applier, failed
//! groups excepted. A value read from sled is remembered only when no group not yet applied
//! wrote the key (the caller checks those first), so it is the latest. Removals are remembered
//! as known absences.
//!
//! Memory is bounded: two generations of at most `budget / 2` bytes each (keys and values
//! counted, plus a fixed overhead per entry). When the young one is full, the old one is dropped
//! and the young one becomes old; a hit in the old one is carried over to the young one. A key
//! is in at most one generation's newest state: a write always lands in the young one, and a
//! lookup tries the young one first.
//!
//! This module must not know what the records mean, and never reaches sled or the log itself.

use sled::IVec;
use std::collections::HashMap;

/// Bookkeeping counted per entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 64;

pub struct Recent {
    young: HashMap<Vec<u8>, Option<IVec>>,
    old: HashMap<Vec<u8>, Option<IVec>>,
    young_bytes: usize,
    /// Bytes one generation may hold.
    generation: usize,
}

fn cost(key: &[u8], value: &Option<IVec>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD
}

impl Recent {
    /// A cache holding at most about `budget` bytes.
    pub fn new(budget: usize) -> Recent {
        Recent {
            young: HashMap::new(),
            old: HashMap::new(),
            young_bytes: 0,
            generation: budget / 2,
        }
    }

    /// What the cache knows of `key`: `None` if nothing, `Some(None)` if the key is known to be
    /// absent.
    pub fn get(&mut self, key: &[u8]) -> Option<Option<IVec>> {
        if let Some(v) = self.young.get(key) {
            return Some(v.clone());
        }
        let v = self.old.remove(key)?;
        self.put(key.to_vec(), v.clone());
        Some(v)
    }

    /// Remembers the current state of `key` (`None`: absent).
    pub fn put(&mut self, key: Vec<u8>, value: Option<IVec>) {
        let c = cost(&key, &value);
        if c > self.generation {
            // Too large to keep: forget any older state instead.
            self.forget(&key);
            return;
        }
        if self.young_bytes + c > self.generation {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        // An older state in the old generation must not outlive this one.
        self.old.remove(&key);
        if let Some(previous) = self.young.insert(key.clone(), value) {
            self.young_bytes = self.young_bytes.saturating_sub(cost(&key, &previous));
        }
        self.young_bytes += c;
    }

    pub fn forget(&mut self, key: &[u8]) {
        if let Some(previous) = self.young.remove(key) {
            self.young_bytes = self.young_bytes.saturating_sub(cost(key, &previous));
        }
        self.old.remove(key);
    }

    /// Bytes held, as counted (for tests and the bound).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.young_bytes + self.old.iter().map(|(k, v)| cost(k, v)).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<IVec> {
        Some(IVec::from(s.as_bytes()))
    }

    #[test]
    fn the_latest_state_wins_absences_included() {
        let mut r = Recent::new(1 << 20);
        assert_eq!(r.get(b"k"), None, "unknown");
        r.put(b"k".to_vec(), v("1"));
        r.put(b"k".to_vec(), v("2"));
        assert_eq!(r.get(b"k"), Some(v("2")));
        r.put(b"k".to_vec(), None);
        assert_eq!(r.get(b"k"), Some(None), "a removal is a known absence");
    }

    #[test]
    fn memory_stays_bounded_and_a_rewrite_never_resurrects_an_old_value() {
        let budget = 10_000;
        let mut r = Recent::new(budget);
        for i in 0..10_000u32 {
            r.put(format!("key{i}").into_bytes(), v(&"x".repeat(50)));
            assert!(r.bytes() <= budget, "{} bytes held", r.bytes());
        }
        // Early keys are forgotten, late ones kept.
        assert_eq!(r.get(b"key0"), None);
        assert_eq!(r.get(b"key9999"), Some(v(&"x".repeat(50))));
        // A key in the old generation, rewritten, then the generations turn: the rewrite wins.
        let mut r = Recent::new(4 * (ENTRY_OVERHEAD + 8));
        r.put(b"a".to_vec(), v("old"));
        r.put(b"b".to_vec(), v("b"));
        r.put(b"c".to_vec(), v("c")); // turns: a and b are old
        r.put(b"a".to_vec(), v("new"));
        r.put(b"d".to_vec(), v("d")); // turns again: the new a is old, the first one is gone
        r.put(b"e".to_vec(), v("e"));
        assert_eq!(r.get(b"a"), Some(v("new")));
        // A value too large for a generation is not kept, and its key's older state is dropped.
        r.put(b"a".to_vec(), Some(IVec::from(vec![0u8; 10_000])));
        assert_eq!(r.get(b"a"), None);
    }

    #[test]
    fn a_hit_in_the_old_generation_is_kept_for_longer() {
        let mut r = Recent::new(4 * (ENTRY_OVERHEAD + 8));
        r.put(b"hot".to_vec(), v("h"));
        r.put(b"x1".to_vec(), v("1"));
        r.put(b"x2".to_vec(), v("2")); // turns: hot is old
        assert_eq!(r.get(b"hot"), Some(v("h"))); // carried back to the young one
        r.put(b"x3".to_vec(), v("3")); // turns: hot is old again, not dropped
        assert_eq!(r.get(b"hot"), Some(v("h")));
        assert_eq!(r.get(b"x1"), None, "a cold entry went with its generation");
    }
}
