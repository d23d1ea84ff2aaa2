//! The file operations the WAL needs, behind a trait, so that a test can
//! put the WAL on [`PowerCutFs`]: a file system in memory that keeps, for
//! every file, what was last made durable, and on [`PowerCutFs::cut`]
//! throws away every byte written since — what a power cut does to data the
//! kernel had not written back. (SIGKILL keeps the page cache, so it cannot
//! show a missing fdatasync; this can.)

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A directory of segment files.
pub trait WalFs: Send + Sync + std::fmt::Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names in `dir` (not paths).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens an existing file for writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Creates `path` filled with `len` zero bytes, durably (file data and
    /// directory entry synced): written blocks make later fdatasyncs cheap,
    /// unlike a sparse file whose every sync also commits block allocation.
    fn create_zeroed(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, durably (directory synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
}

/// One open segment.
pub trait WalFile: Send {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct OsFs;

struct OsFile(std::fs::File);

impl WalFile for OsFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl WalFs for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(OsFile(f)))
    }
    fn create_zeroed(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>> {
        // Written under a temporary name and renamed, so a crash never
        // leaves a half-zeroed segment under a segment's name.
        let tmp = path.with_extension("tmp");
        {
            let f = std::fs::File::create(&tmp)?;
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(zeros.len() as u64) as usize;
                std::os::unix::fs::FileExt::write_all_at(&f, &zeros[..n], off)?;
                off += n as u64;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(d) = path.parent() {
            sync_dir(d)?;
        }
        self.open(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        if let Some(d) = path.parent() {
            sync_dir(d)?;
        }
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        if let Some(d) = to.parent() {
            sync_dir(d)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct MemFile {
    /// What a reader sees now (the page cache).
    current: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Bytes written since the last sync (start, end).
    dirty: Option<(usize, usize)>,
}

#[derive(Default)]
struct MemInner {
    files: BTreeMap<PathBuf, MemFile>,
    /// After a cut and until [`PowerCutFs::restore`], every write fails:
    /// the machine is off.
    off: bool,
    syncs: u64,
}

/// An in-memory file system that can lose unsynced data (see the module).
/// Directory operations (create, remove) are durable at once.
#[derive(Clone, Default)]
pub struct PowerCutFs {
    inner: Arc<Mutex<MemInner>>,
}

impl std::fmt::Debug for PowerCutFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowerCutFs")
    }
}

fn off_err() -> io::Error {
    io::Error::other("power is off")
}

impl PowerCutFs {
    pub fn new() -> PowerCutFs {
        PowerCutFs::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes off: every file falls back to its durable content and
    /// further writes fail until [`PowerCutFs::restore`].
    pub fn cut(&self) {
        let mut g = self.lock();
        g.off = true;
        for f in g.files.values_mut() {
            f.current = f.durable.clone();
            f.dirty = None;
        }
    }

    /// Power is back (after a [`PowerCutFs::cut`]).
    pub fn restore(&self) {
        self.lock().off = false;
    }

    /// fdatasync calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

struct MemHandle {
    fs: PowerCutFs,
    path: PathBuf,
}

impl WalFile for MemHandle {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut g = self.fs.lock();
        if g.off {
            return Err(off_err());
        }
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let end = offset as usize + buf.len();
        if f.current.len() < end {
            f.current.resize(end, 0);
        }
        f.current[offset as usize..end].copy_from_slice(buf);
        let (lo, hi) = f.dirty.unwrap_or((offset as usize, end));
        f.dirty = Some((lo.min(offset as usize), hi.max(end)));
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut g = self.fs.lock();
        if g.off {
            return Err(off_err());
        }
        g.syncs += 1;
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if let Some((lo, hi)) = f.dirty.take() {
            if f.durable.len() < hi {
                f.durable.resize(hi, 0);
            }
            f.durable[lo..hi].copy_from_slice(&f.current[lo..hi]);
        }
        Ok(())
    }
}

impl WalFs for PowerCutFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let g = self.lock();
        Ok(g.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let g = self.lock();
        g.files
            .get(path)
            .map(|f| f.current.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        if !self.lock().files.contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn create_zeroed(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>> {
        {
            let mut g = self.lock();
            if g.off {
                return Err(off_err());
            }
            let zeros = vec![0u8; len as usize];
            g.files.insert(
                path.to_path_buf(),
                MemFile {
                    current: zeros.clone(),
                    durable: zeros,
                    dirty: None,
                },
            );
        }
        self.open(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut g = self.lock();
        if g.off {
            return Err(off_err());
        }
        g.files.remove(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut g = self.lock();
        if g.off {
            return Err(off_err());
        }
        let f = g
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        g.files.insert(to.to_path_buf(), f);
        Ok(())
    }
}
