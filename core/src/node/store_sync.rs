//! The store syncer thread: every [`crate::checkpoint::INTERVAL`] it makes
//! the state store durable (fjall persist), records the applied index it
//! covered in the checkpoint file, and tells the raft loop, which may then
//! truncate the WAL below it (D10: the WAL is truncated only below an
//! applied index durable in the store). The store is never synced on the
//! write path; this thread keeps even its periodic flush, which carries
//! every batch since the last one, off the raft loop.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::state::State;

/// What the syncer reports: the store is durable up to this applied index
/// (and the checkpoint records it), or the sync failed.
pub(super) type Report = Result<u64, String>;

pub(super) struct StoreSyncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl StoreSyncer {
    pub(super) fn start(
        state: Arc<RwLock<State>>,
        data_dir: PathBuf,
        report: impl Fn(Report) + Send + 'static,
    ) -> std::io::Result<StoreSyncer> {
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("store-sync".into())
            .spawn(move || {
                let mut done = 0u64;
                loop {
                    {
                        let (m, cv) = &*s;
                        let g = m.lock().unwrap_or_else(|p| p.into_inner());
                        let (g, _) = cv
                            .wait_timeout(g, crate::checkpoint::INTERVAL)
                            .unwrap_or_else(|p| p.into_inner());
                        if *g {
                            return;
                        }
                    }
                    // Every batch up to `applied` is committed to the store
                    // (apply commits before it moves the index).
                    let (engine, applied) = {
                        let st = state.read().unwrap_or_else(|p| p.into_inner());
                        (Arc::clone(&st.engine), st.applied_index)
                    };
                    if applied <= done {
                        continue;
                    }
                    let r = engine
                        .sync()
                        .and_then(|()| crate::checkpoint::write(&data_dir, applied));
                    match r {
                        Ok(()) => {
                            done = applied;
                            report(Ok(applied));
                        }
                        Err(e) => {
                            report(Err(e.to_string()));
                            return;
                        }
                    }
                }
            })?;
        Ok(StoreSyncer {
            stop,
            thread: Some(thread),
        })
    }

    pub(super) fn stop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreSyncer {
    fn drop(&mut self) {
        self.stop();
    }
}
