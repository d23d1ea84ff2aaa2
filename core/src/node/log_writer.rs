//! The log writer thread (raft thesis 10.2.1, raft-rs async persistence):
//! the raft loop appends a Ready's entries and hard state to the WAL's
//! buffer and asks this thread to make Ready number N durable; the thread
//! does one group commit (`Wal::sync`) covering every Ready appended so
//! far and reports the highest number it covered. Meanwhile the raft loop
//! sends the leader's appends to followers, applies committed entries and
//! takes new proposals: the loop never waits for a disk flush unless it
//! appends again while one is under way.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::wal::Wal;

#[derive(Default)]
struct Want {
    /// Highest Ready number whose appends are in the WAL buffer.
    requested: u64,
    stop: bool,
}

/// Handle of the writer thread.
pub(super) struct LogWriter {
    want: Arc<(Mutex<Want>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer reports: every Ready up to the number is durable, or
/// the WAL failed (the member must stop).
pub(super) type Report = Result<u64, String>;

impl LogWriter {
    /// Starts the thread; `report` is called from it after each sync.
    pub(super) fn start(
        wal: Arc<Mutex<Wal>>,
        report: impl Fn(Report) + Send + 'static,
    ) -> std::io::Result<LogWriter> {
        let want: Arc<(Mutex<Want>, Condvar)> = Arc::default();
        let w = Arc::clone(&want);
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                let mut done = 0u64;
                loop {
                    let n = {
                        let (m, cv) = &*w;
                        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                        while g.requested <= done && !g.stop {
                            g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
                        }
                        if g.requested <= done {
                            return;
                        }
                        g.requested
                    };
                    // Everything appended up to Ready `n` (and maybe more)
                    // is in the buffer: one sync covers it all.
                    let r = wal.lock().unwrap_or_else(|p| p.into_inner()).sync();
                    match r {
                        Ok(()) => {
                            done = n;
                            report(Ok(n));
                        }
                        Err(e) => {
                            report(Err(e.to_string()));
                            return;
                        }
                    }
                }
            })?;
        Ok(LogWriter {
            want,
            thread: Some(thread),
        })
    }

    /// Ready `number` has been appended to the WAL buffer.
    pub(super) fn request(&self, number: u64) {
        let (m, cv) = &*self.want;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        g.requested = g.requested.max(number);
        cv.notify_one();
    }

    /// Finishes outstanding syncs and joins the thread.
    pub(super) fn stop(&mut self) {
        {
            let (m, cv) = &*self.want;
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            g.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop();
    }
}
