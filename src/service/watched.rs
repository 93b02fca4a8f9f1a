//! Values read from the store and kept in memory while nothing they were read from changed:
//! each entry carries the epoch of a store [`KeyWatch`] on the keys it was built from, read
//! BEFORE those keys were, and is used only while the watch still shows that epoch. The store
//! moves the watch after applying a group that wrote under its prefixes and before answering
//! any of that group's callers, so once a change is acknowledged no stale entry is served; a
//! read racing with a change is at worst a miss. Owns no knowledge of what it caches.

use crate::store::KeyWatch;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub(super) struct WatchedCache<K, V> {
    watch: Arc<KeyWatch>,
    /// Entries kept at most (the map is emptied when full).
    max: usize,
    entries: Mutex<HashMap<K, (u64, V)>>,
}

impl<K: Eq + Hash, V: Clone> WatchedCache<K, V> {
    pub(super) fn new(watch: Arc<KeyWatch>, max: usize) -> WatchedCache<K, V> {
        WatchedCache {
            watch,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The epoch to give [`WatchedCache::put`]: read it before reading the records.
    pub(super) fn epoch(&self) -> u64 {
        self.watch.epoch()
    }

    /// The entry for `key`, if nothing it was read from changed since.
    pub(super) fn get(&self, key: &K) -> Option<V> {
        let epoch = self.watch.epoch();
        let entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((e, v)) if *e == epoch => Some(v.clone()),
            _ => None,
        }
    }

    /// Keeps `value`, read from the store after [`WatchedCache::epoch`] returned `epoch`.
    pub(super) fn put(&self, key: K, epoch: u64, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max {
                entries.clear();
            }
            entries.insert(key, (epoch, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn an_entry_serves_until_a_write_under_the_watched_prefix_is_committed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open");
        let cache: WatchedCache<&str, u32> = WatchedCache::new(store.watch(&["user/"]), 2);
        let e = cache.epoch();
        cache.put("alice", e, 1);
        assert_eq!(cache.get(&"alice"), Some(1));
        store
            .transact_blocking(|tx| tx.put_raw("doc/x", b"1"))
            .expect("commit");
        assert_eq!(cache.get(&"alice"), Some(1), "an unrelated write keeps it");
        store
            .transact_blocking(|tx| tx.put_raw("user/t/alice", b"2"))
            .expect("commit");
        assert_eq!(cache.get(&"alice"), None, "a committed change retires it");
        // An entry read under an epoch that has moved since is never served.
        cache.put("bob", e, 3);
        assert_eq!(cache.get(&"bob"), None);
        let e = cache.epoch();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            cache.put(k, e, v);
        }
        assert_eq!(
            cache.get(&"c"),
            Some(3),
            "a full map is emptied, the new entry kept"
        );
        assert_eq!(cache.get(&"a"), None);
    }
}
