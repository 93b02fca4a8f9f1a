//! The injectable clock. The domain never reads time; the service asks a [`Clock`], which tests
//! replace by a [`ManualClock`] they set explicitly (no sleeping in tests).

use crate::domain::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// For clocks that jump (tests): a receiver that changes whenever the time is set, so the
    /// scheduler reacts at once instead of at its next periodic pass.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        None
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp(secs)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    at: Arc<AtomicI64>,
    changed: Arc<tokio::sync::watch::Sender<i64>>,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        let (changed, _) = tokio::sync::watch::channel(at.0);
        ManualClock {
            at: Arc::new(AtomicI64::new(at.0)),
            changed: Arc::new(changed),
        }
    }
    pub fn set(&self, at: Timestamp) {
        self.at.store(at.0, Ordering::SeqCst);
        self.changed.send_replace(at.0);
    }
    pub fn advance(&self, secs: i64) {
        let now = self.at.fetch_add(secs, Ordering::SeqCst) + secs;
        self.changed.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.at.load(Ordering::SeqCst))
    }
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        Some(self.changed.subscribe())
    }
}
