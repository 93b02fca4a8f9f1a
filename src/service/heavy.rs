//! The pool heavy CPU work runs on (signature validation): a fixed number of threads of its
//! own, fed through a bounded queue. Work beyond the queue is refused at once rather than
//! waiting, and whatever runs here never takes a thread of the runtime's blocking pool, which
//! store reads (inbox, show) use: those stay responsive while validations run.

use super::{Result, ServiceError};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct HeavyPool {
    jobs: SyncSender<Job>,
    workers: usize,
    queue: usize,
}

impl HeavyPool {
    /// Starts `workers` threads (at least one) taking work from a queue of `queue` places. A
    /// thread that cannot be started is logged; with none, every job is refused.
    pub fn new(workers: usize, queue: usize) -> HeavyPool {
        let wanted = workers.max(1);
        let mut workers = 0;
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..wanted {
            let rx = rx.clone();
            let started = std::thread::Builder::new()
                .name(format!("paraph-validate-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job (a bug) loses its answer only: its caller sees the
                        // pool's answer channel closed.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                });
            match started {
                Ok(_) => workers += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a validation worker"),
            }
        }
        HeavyPool {
            jobs,
            workers,
            queue,
        }
    }

    /// Runs `f` on the pool and waits for its answer; refused with RESOURCE_EXHAUSTED when
    /// every worker is busy and the queue is full.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.workers == 0 {
            return Err(ServiceError::Internal(
                "no validation worker could be started".into(),
            ));
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ServiceError::Busy(format!(
                    "the validation pool is full ({} validation_workers busy, {} waiting in \
                     validation_queue): retry later",
                    self.workers, self.queue
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ServiceError::Internal("the validation pool stopped".into()))
            }
        }
        answered
            .await
            .map_err(|_| ServiceError::Internal("a validation failed unexpectedly".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_beyond_the_workers_and_the_queue_is_refused_naming_the_settings() {
        let pool = Arc::new(HeavyPool::new(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started.send(());
                    let _ = hold.recv();
                    Ok(1)
                })
                .await
            })
        };
        running.recv().await.expect("the first job runs");
        // The second job takes the one place of the queue (its first poll queues it).
        let mut queued = Box::pin(pool.run(|| Ok(2)));
        tokio::select! {
            biased;
            _ = &mut queued => panic!("the worker is busy"),
            _ = std::future::ready(()) => {}
        }
        let refused = pool
            .run(|| Ok(3))
            .await
            .expect_err("no worker free, no place");
        assert!(
            refused.to_string().contains("validation_queue"),
            "{refused}"
        );
        release.send(()).expect("release");
        assert_eq!(busy.await.expect("join").expect("run"), 1);
        assert_eq!(queued.await.expect("run"), 2);
    }
}
