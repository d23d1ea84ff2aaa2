//! The floor under one durable write: an `fdatasync` of a 4 KiB append to a
//! preallocated file (one WAL group commit on this disk) plus a loopback
//! TCP round trip (a client's request and its reply). No server answers a
//! single client's write faster than that; `compare` prints it beside a
//! run with a 1-client level, measured with the same clock.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The append a group commit writes, as the target states it.
const APPEND: usize = 4096;
/// Bytes of a small request and its reply.
const MESSAGE: usize = 64;

/// Medians of the two parts, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    pub fdatasync_p50_ms: f64,
    pub rtt_p50_ms: f64,
}

impl Floor {
    /// The floor of one write at one client.
    pub fn p50_ms(&self) -> f64 {
        self.fdatasync_p50_ms + self.rtt_p50_ms
    }
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} ms (fdatasync of a 4 KiB append {:.3} ms + loopback round trip {:.3} ms, p50)",
            self.p50_ms(),
            self.fdatasync_p50_ms,
            self.rtt_p50_ms
        )
    }
}

/// Measures both parts, `samples` times each, in a file under `dir` (the
/// file system the servers' data directories are on).
pub fn measure(dir: &Path, samples: usize) -> std::io::Result<Floor> {
    Ok(Floor {
        fdatasync_p50_ms: fdatasync_p50(dir, samples)?,
        rtt_p50_ms: rtt_p50(samples)?,
    })
}

fn median_ms(mut d: Vec<Duration>) -> f64 {
    d.sort_unstable();
    d.get(d.len() / 2)
        .map_or(f64::NAN, |m| m.as_secs_f64() * 1000.0)
}

fn fdatasync_p50(dir: &Path, samples: usize) -> std::io::Result<f64> {
    let tmp = tempfile::tempdir_in(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(tmp.path().join("floor.wal"))?;
    // Preallocated as the WAL's segments are: blocks written and synced
    // once, so each append's sync carries data, not new extents.
    let zeros = vec![0u8; APPEND];
    for i in 0..samples {
        file.write_all_at(&zeros, (i * APPEND) as u64)?;
    }
    file.sync_all()?;
    let data = vec![0x5au8; APPEND];
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        file.write_all_at(&data, (i * APPEND) as u64)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    Ok(median_ms(times))
}

fn rtt_p50(samples: usize) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let msg = [1u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        c.write_all(&msg)?;
        c.read_exact(&mut buf)?;
        times.push(t.elapsed());
    }
    drop(c);
    echo.join()
        .map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok(median_ms(times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_parts_are_measured() {
        let f = measure(&std::env::temp_dir(), 20).expect("floor");
        assert!(f.fdatasync_p50_ms > 0.0 && f.fdatasync_p50_ms.is_finite());
        assert!(f.rtt_p50_ms > 0.0 && f.rtt_p50_ms.is_finite());
        assert!((f.p50_ms() - f.fdatasync_p50_ms - f.rtt_p50_ms).abs() < 1e-9);
    }
}
