//! A small pool of threads that do nothing but password hashing.
//!
//! argon2id allocates its whole memory cost (19 MiB by default) for every
//! hash. Run on tokio's blocking pool, each hash may land on another thread
//! and the allocator keeps a separate arena per thread, so the process ends
//! up holding that memory many times over. A fixed set of threads, one per
//! core, bounds both the CPU and the memory that hashing can take; each
//! keeps argon2's working memory between hashes instead of freeing it (see
//! `domain::with_blocks`), so the allocator has none to hoard.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct HashingPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl HashingPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    crate::domain::keep_hashing_memory();
                    loop {
                        // The lock is held only to take the next job.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `work` on a hashing thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("hashing pool poisoned"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("hashing pool stopped"))?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("hashing job dropped"))
    }
}
