//! The node kinds ZooKeeper hides from clients, read from the source's own
//! files: its newest `snapshot.<zxid>` and the `log.<zxid>` files after it
//! (`dataDir/version-2`, `dataLogDir/version-2`), opened read-only.
//!
//! ZooKeeper 3.8 reports ephemeralOwner 0 to clients for containers and
//! TTL nodes (`DataNode.copyStat`), but keeps the kind in the persisted
//! ephemeralOwner (`EphemeralType`): `Long.MIN_VALUE` for a container,
//! `0xFF` in the top byte, two reserved zero bytes and the TTL in the low
//! 40 bits for a TTL node. The snapshot holds that stat for every node; the
//! log holds the `createContainer` / `createTTL` transactions after it.
//!
//! Formats (ZooKeeper's `FileSnap`, `SnapStream`, `DataTree`,
//! `FileTxnLog`, `SerializeUtils`; jute binary: big-endian ints and longs,
//! strings and buffers as an int length then bytes, -1 for null):
//!
//! - snapshot: header (int magic `ZKSN`, int version, long dbid); sessions
//!   (int count, then long id + int timeout each); the ACL cache (int count,
//!   then long index + ACL vector each); then (path, DataNode{buffer data,
//!   long acl, StatPersisted}) until the path `/`; then the seal: the
//!   Adler-32 of every byte before it as a long, and the string `/`. A
//!   digest and a second seal may follow (ignored). A name ending `.gz` or
//!   `.snappy` is compressed (`zookeeper.snapshot.compression.method`).
//! - log: header (int magic `ZKLG`, int version, long dbid); then per
//!   transaction a long Adler-32, an int length, that many bytes (TxnHeader
//!   {long clientId, int cxid, long zxid, long time, int type} and the
//!   body), and the byte `B`. The file is preallocated with zeros: a zero
//!   length, or a record cut short, is where the written part ends
//!   (ZooKeeper's own reader stops there too); a record that is complete
//!   but whose checksum does not match is a damaged file.
//!
//! A node is identified by its path and czxid (the zxid of the create), so
//! a path deleted and created again with another kind is never confused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// What kind of znode the source holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Normal,
    Container,
    /// Time to live in milliseconds.
    Ttl(i64),
}

impl Kind {
    /// The kind a persisted ephemeralOwner encodes (`EphemeralType.get`
    /// with extended types enabled); session ids are ephemerals, `Normal`
    /// here (they are skipped by the migration anyway).
    pub fn from_owner(owner: i64) -> Kind {
        const EXTENDED_MASK: u64 = 0xff00_0000_0000_0000;
        const RESERVED_MASK: u64 = 0x00ff_ff00_0000_0000;
        let o = owner as u64;
        if owner == i64::MIN {
            Kind::Container
        } else if o & EXTENDED_MASK == EXTENDED_MASK && o & RESERVED_MASK == 0 {
            Kind::Ttl((o & !(EXTENDED_MASK | RESERVED_MASK)) as i64)
        } else {
            Kind::Normal
        }
    }
}

const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
const LOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
/// Larger than any record ZooKeeper writes (jute.maxbuffer is 1 MiB by
/// default, a multi of them stays far below this).
const MAX_RECORD: usize = 256 * 1024 * 1024;

// ZooKeeper's OpCode values of the transactions that matter here.
const OP_DELETE: i32 = 2;
const OP_MULTI: i32 = 14;
const OP_CREATE_CONTAINER: i32 = 19;
const OP_DELETE_CONTAINER: i32 = 20;
const OP_CREATE_TTL: i32 = 21;

/// Adler-32 (java.util.zip.Adler32), the checksum of both formats.
fn adler32(bytes: &[u8]) -> u64 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes keep the sums below 2^32 between reductions (zlib's NMAX).
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (u64::from(b) << 16) | u64::from(a)
}

/// Why a read stopped: the bytes ran out, or they are not what the format
/// allows.
#[derive(Debug)]
enum Stop {
    Short,
    Bad(String),
}

/// A jute binary reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::Short)?;
        let s = self.buf.get(self.pos..end).ok_or(Stop::Short)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i32, Stop> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn long(&mut self) -> Result<i64, Stop> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A buffer or string: length, then bytes (`None`: null).
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, Stop> {
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| Stop::Bad(format!("negative length {n}")))?;
        if n > MAX_RECORD {
            return Err(Stop::Bad(format!("length {n} beyond any ZooKeeper record")));
        }
        self.take(n).map(Some)
    }

    fn string(&mut self) -> Result<String, Stop> {
        let b = self.bytes()?.unwrap_or_default();
        String::from_utf8(b.to_vec()).map_err(|_| Stop::Bad("a path that is not UTF-8".into()))
    }

    /// A vector's element count (`-1`, null, as 0).
    fn count(&mut self) -> Result<usize, Stop> {
        let n = self.int()?;
        if n == -1 {
            return Ok(0);
        }
        let n = usize::try_from(n).map_err(|_| Stop::Bad(format!("negative count {n}")))?;
        if n > MAX_RECORD {
            return Err(Stop::Bad(format!("count {n} beyond any ZooKeeper record")));
        }
        Ok(n)
    }

    fn acl_vector(&mut self) -> Result<(), Stop> {
        for _ in 0..self.count()? {
            self.int()?;
            self.bytes()?;
            self.bytes()?;
        }
        Ok(())
    }
}

/// A snapshot's or log's file name zxid (`snapshot.1a2b`, `log.1a2b`,
/// `snapshot.1a2b.gz`).
fn zxid_of(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let hex = rest.split('.').next()?;
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

/// `dir/version-2` if it exists (the dataDir was named), else `dir` (the
/// version-2 folder itself was named).
fn version_dir(dir: &Path) -> PathBuf {
    let v = dir.join("version-2");
    if v.is_dir() {
        v
    } else {
        dir.to_path_buf()
    }
}

/// Files named `<prefix>.<hex zxid>[...]` in `dir`, by zxid.
fn files(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("source data dir: cannot list {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("source data dir: cannot list {}", dir.display()))?;
        let name = e.file_name();
        if let Some(z) = name.to_str().and_then(|n| zxid_of(n, prefix)) {
            out.push((z, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Kinds of the nodes in one snapshot: (path → (czxid, kind)) of every
/// container and TTL node.
fn read_snapshot(file: &Path) -> anyhow::Result<HashMap<String, (i64, Kind)>> {
    let name = file.display();
    let fname = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if fname.ends_with(".gz") || fname.ends_with(".snappy") {
        bail!(
            "{name}: a compressed snapshot (zookeeper.snapshot.compression.method); janus reads \
             uncompressed ones only: take one with the default method, or leave out \
             --source-data-dir"
        );
    }
    let buf = std::fs::read(file).with_context(|| format!("{name}: cannot read"))?;
    let mut r = Reader::new(&buf);
    let what = |e: Stop| match e {
        Stop::Short => {
            anyhow::anyhow!("{name}: malformed snapshot: it ends before its last node (truncated)")
        }
        Stop::Bad(why) => anyhow::anyhow!("{name}: malformed snapshot: {why}"),
    };
    let magic = r.int().map_err(what)?;
    if magic != SNAP_MAGIC {
        bail!("{name}: not a ZooKeeper snapshot (magic {magic:#x}, expected \"ZKSN\")");
    }
    r.int().map_err(what)?;
    r.long().map_err(what)?;
    let sessions = r.count().map_err(what)?;
    for _ in 0..sessions {
        r.long().map_err(what)?;
        r.int().map_err(what)?;
    }
    let acls = r.count().map_err(what)?;
    for _ in 0..acls {
        r.long().map_err(what)?;
        r.acl_vector().map_err(what)?;
    }
    let mut kinds = HashMap::new();
    loop {
        let path = r.string().map_err(what)?;
        if path == "/" {
            break;
        }
        if !path.is_empty() && !path.starts_with('/') {
            return Err(what(Stop::Bad(format!("node path {path:?}"))));
        }
        r.bytes().map_err(what)?;
        r.long().map_err(what)?;
        let czxid = r.long().map_err(what)?;
        for _ in 0..3 {
            r.long().map_err(what)?; // mzxid, ctime, mtime
        }
        for _ in 0..3 {
            r.int().map_err(what)?; // version, cversion, aversion
        }
        let owner = r.long().map_err(what)?;
        r.long().map_err(what)?; // pzxid
        let kind = Kind::from_owner(owner);
        if kind != Kind::Normal {
            kinds.insert(path, (czxid, kind));
        }
    }
    let sum = adler32(&buf[..r.pos]);
    let seal = r.long().map_err(what)?;
    let slash = r.string().map_err(what)?;
    if seal as u64 != sum || slash != "/" {
        bail!(
            "{name}: malformed snapshot: checksum {seal:#x} does not match its content ({sum:#x})"
        );
    }
    Ok(kinds)
}

/// One transaction's effect on kinds.
enum Change {
    Create(String, Kind),
    Delete(String),
}

/// The kind changes in one transaction body of type `op`.
fn changes(op: i32, body: &mut Reader, out: &mut Vec<Change>) -> Result<(), Stop> {
    match op {
        OP_CREATE_CONTAINER | OP_CREATE_TTL => {
            let path = body.string()?;
            body.bytes()?;
            body.acl_vector()?;
            body.int()?; // parentCVersion
            let kind = if op == OP_CREATE_TTL {
                Kind::Ttl(body.long()?)
            } else {
                Kind::Container
            };
            out.push(Change::Create(path, kind));
        }
        OP_DELETE | OP_DELETE_CONTAINER => out.push(Change::Delete(body.string()?)),
        OP_MULTI => {
            for _ in 0..body.count()? {
                let t = body.int()?;
                let data = body.bytes()?.unwrap_or_default();
                changes(t, &mut Reader::new(data), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Where reading one log file got to.
struct LogPos {
    /// The file's name zxid.
    zxid: i64,
    /// Offset of the first record not read yet.
    offset: usize,
}

/// The kinds of a source's nodes, kept current by reading its log as it
/// grows.
pub struct Kinds {
    snap_dir: PathBuf,
    log_dir: PathBuf,
    /// Containers and TTL nodes: path → (czxid, kind).
    special: HashMap<String, (i64, Kind)>,
    /// The highest zxid read (snapshot name or log record).
    pub last_zxid: i64,
    /// The snapshot's zxid: log records up to it are in the snapshot.
    snap_zxid: i64,
    /// The log file being read and where.
    pos: Option<LogPos>,
    /// Files already read to their end (a newer log exists).
    done: BTreeMap<i64, PathBuf>,
}

impl Kinds {
    /// Reads the newest snapshot in `data_dir` and the logs after it in
    /// `log_dir` (the same when `None`).
    pub fn open(data_dir: &Path, log_dir: Option<&Path>) -> anyhow::Result<Kinds> {
        let snap_dir = version_dir(data_dir);
        let log_dir = version_dir(log_dir.unwrap_or(data_dir));
        let snaps = files(&snap_dir, "snapshot")?;
        let logs = files(&log_dir, "log")?;
        if snaps.is_empty() && logs.is_empty() {
            bail!(
                "source data dir: no snapshot.* or log.* files in {} (name the source's dataDir, \
                 and --source-data-log-dir if its dataLogDir differs)",
                snap_dir.display()
            );
        }
        let mut k = Kinds {
            snap_dir,
            log_dir,
            special: HashMap::new(),
            last_zxid: 0,
            snap_zxid: 0,
            pos: None,
            done: BTreeMap::new(),
        };
        if let Some((zxid, file)) = snaps.last() {
            k.special = read_snapshot(file)?;
            k.last_zxid = *zxid;
            k.snap_zxid = *zxid;
        }
        // The log holding the snapshot's zxid and every later one (a
        // snapshot is fuzzy: the transactions after its zxid may or may not
        // be in it, and are replayed).
        let snap_zxid = k.last_zxid;
        let first = logs.iter().rposition(|(z, _)| *z <= snap_zxid).unwrap_or(0);
        for (z, f) in &logs[..first] {
            k.done.insert(*z, f.clone());
        }
        k.refresh()?;
        Ok(k)
    }

    /// Reads what the source appended to its log since the last read
    /// (ZooKeeper only appends; a new log file starts after the old one,
    /// which is then complete).
    pub fn refresh(&mut self) -> anyhow::Result<()> {
        let logs: Vec<(i64, PathBuf)> = files(&self.log_dir, "log")?
            .into_iter()
            .filter(|(z, _)| !self.done.contains_key(z))
            .collect();
        let last = logs.len().saturating_sub(1);
        for (i, (zxid, file)) in logs.into_iter().enumerate() {
            let offset = match self.pos.take() {
                Some(p) if p.zxid == zxid => p.offset,
                _ => 0,
            };
            let end = self.read_log(&file, offset)?;
            if i < last {
                self.done.insert(zxid, file);
            } else {
                self.pos = Some(LogPos { zxid, offset: end });
            }
        }
        Ok(())
    }

    /// Reads `file` from `offset` (0: from its header); returns the offset
    /// of the first record not written yet.
    fn read_log(&mut self, file: &Path, offset: usize) -> anyhow::Result<usize> {
        let name = file.display();
        let buf = std::fs::read(file).with_context(|| format!("{name}: cannot read"))?;
        let mut r = Reader::new(&buf);
        let bad =
            |at: usize, why: String| anyhow::anyhow!("{name}: malformed log at byte {at}: {why}");
        if offset == 0 {
            match (r.int(), r.int(), r.long()) {
                (Ok(LOG_MAGIC), Ok(_), Ok(_)) => {}
                (Ok(m), Ok(_), Ok(_)) => {
                    bail!("{name}: not a ZooKeeper log (magic {m:#x}, expected \"ZKLG\")")
                }
                // A file just created, its header not written yet.
                _ => return Ok(0),
            }
        } else {
            r.pos = offset;
        }
        loop {
            let start = r.pos;
            let (crc, len) = match (r.long(), r.int()) {
                (Ok(c), Ok(l)) => (c, l),
                _ => return Ok(start),
            };
            if len == 0 {
                return Ok(start);
            }
            let len = match usize::try_from(len) {
                Ok(l) if l <= MAX_RECORD => l,
                _ => return Err(bad(start, format!("record length {len}"))),
            };
            let Ok(txn) = r.take(len) else {
                return Ok(start);
            };
            match r.u8() {
                Ok(b'B') => {}
                // Cut short: ZooKeeper's reader stops here too.
                _ => return Ok(start),
            }
            if adler32(txn) != crc as u64 {
                return Err(bad(start, "checksum does not match the record".into()));
            }
            let mut t = Reader::new(txn);
            let header = (t.long(), t.int(), t.long(), t.long(), t.int());
            let (Ok(_), Ok(_), Ok(zxid), Ok(_), Ok(op)) = header else {
                return Err(bad(
                    start,
                    "record shorter than a transaction header".into(),
                ));
            };
            if zxid <= self.snap_zxid {
                continue;
            }
            let mut out = Vec::new();
            match changes(op, &mut t, &mut out) {
                Ok(()) => {}
                Err(Stop::Short) => {
                    return Err(bad(start, format!("transaction type {op} cut short")))
                }
                Err(Stop::Bad(why)) => return Err(bad(start, why)),
            }
            for c in out {
                match c {
                    Change::Create(p, kind) => {
                        self.special.insert(p, (zxid, kind));
                    }
                    Change::Delete(p) => {
                        self.special.remove(&p);
                    }
                }
            }
            self.last_zxid = self.last_zxid.max(zxid);
        }
    }

    /// The kind of the node at `path` created at `czxid`, or `None` when
    /// the files read so far end before `czxid` (call [`Kinds::refresh`]).
    pub fn kind(&self, path: &str, czxid: i64) -> Option<Kind> {
        match self.special.get(path) {
            Some((z, k)) if *z == czxid => Some(*k),
            _ if czxid <= self.last_zxid => Some(Kind::Normal),
            _ => None,
        }
    }

    /// Where the snapshot was read from, for messages.
    pub fn dir(&self) -> &Path {
        &self.snap_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        // zlib's reference: adler32("Wikipedia") = 0x11E60398.
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
        let big = vec![0xffu8; 100_000];
        // Reductions every 5552 bytes keep it exact on long inputs.
        let mut a: u64 = 1;
        let mut b: u64 = 0;
        for &x in &big {
            a = (a + u64::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&big), (b << 16) | a);
    }

    #[test]
    fn owner_encodings_of_ephemeral_type() {
        assert_eq!(Kind::from_owner(i64::MIN), Kind::Container);
        assert_eq!(
            Kind::from_owner(0xff00_0000_0000_1388u64 as i64),
            Kind::Ttl(5000)
        );
        assert_eq!(Kind::from_owner(0), Kind::Normal);
        assert_eq!(Kind::from_owner(0x0100_0000_0000_0001), Kind::Normal);
    }

    #[test]
    fn file_names() {
        assert_eq!(zxid_of("snapshot.1a", "snapshot"), Some(0x1a));
        assert_eq!(zxid_of("snapshot.1a.gz", "snapshot"), Some(0x1a));
        assert_eq!(zxid_of("log.100000001", "log"), Some(0x1_0000_0001));
        assert_eq!(zxid_of("logs.1", "log"), None);
        assert_eq!(zxid_of("log.zz", "log"), None);
    }
}
