//! A read-only walker of bbolt files: every top-level bucket's entries, in
//! key order. `bbolt-rs` writes the files janus sends, but cannot open the
//! ones etcd writes (etcd runs bolt with `NoFreelistSync`, whose freelist
//! page id bbolt-rs refuses), and a restore reads both; the layout read
//! here is bbolt's `page.go`, `node.go` and `bucket.go`:
//!
//! - two meta pages (0 and 1) at page-size offsets: magic `0xED0CDAED`,
//!   version 2, page size, flags, root bucket (root page, sequence),
//!   freelist page, high-water page id, txid, FNV-64a checksum of the
//!   fields before it; the valid meta with the higher txid is current;
//! - a page: id (u64), flags (u16: branch 1, leaf 2, meta 4, freelist 16),
//!   count (u16), overflow (u32), then `count` 16-byte elements; a branch
//!   element is (pos u32, ksize u32, child page u64), a leaf element
//!   (flags u32, pos u32, ksize u32, vsize u32), `pos` counted from the
//!   element itself;
//! - a leaf entry with flag 1 is a bucket: its value is the bucket header
//!   (root page u64, sequence u64), followed by an inline page when the
//!   root is 0.
//!
//! Every offset is checked against the file: a malformed file is an error,
//! never a panic or a loop (page visits are bounded by the page count).

const MAGIC: u32 = 0xED0C_DAED;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;

/// (bucket name, its entries) for every top-level bucket; a nested
/// bucket's entry has an empty value (bolt's `ForEach` gives nil).
pub type Buckets = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

/// Leaf entries: (element flags, key, value).
type Leaves = Vec<(u32, Vec<u8>, Vec<u8>)>;

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("offset {at} past the end"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| format!("offset {at} past the end"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("offset {at} past the end"))
}

fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Meta {
    page_size: usize,
    root: u64,
    high_water: u64,
    txid: u64,
}

fn meta_at(file: &[u8], at: usize) -> Result<Meta, String> {
    let m = at + PAGE_HEADER;
    if u32_at(file, m)? != MAGIC {
        return Err("not a bolt file (bad magic)".into());
    }
    let body = file
        .get(m..m + 56)
        .ok_or_else(|| "truncated meta page".to_string())?;
    if fnv64a(body) != u64_at(file, m + 56)? {
        return Err("meta page checksum mismatch".into());
    }
    Ok(Meta {
        page_size: u32_at(file, m + 8)? as usize,
        root: u64_at(file, m + 16)?,
        high_water: u64_at(file, m + 40)?,
        txid: u64_at(file, m + 48)?,
    })
}

/// The current meta page.
fn meta(file: &[u8]) -> Result<Meta, String> {
    let first = meta_at(file, 0)?;
    if first.page_size < 512 || first.page_size > 1 << 20 {
        return Err(format!("bad page size {}", first.page_size));
    }
    match meta_at(file, first.page_size) {
        Ok(second) if second.txid > first.txid => Ok(second),
        _ => Ok(first),
    }
}

struct Walker<'a> {
    file: &'a [u8],
    page_size: usize,
    budget: u64,
}

impl<'a> Walker<'a> {
    /// The leaf entries under the page at byte offset `at` (a page or an
    /// inline bucket's page), in order: (flags, key, value).
    fn entries(
        &mut self,
        page: &[u8],
        out: &mut Vec<(u32, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), String> {
        if self.budget == 0 {
            return Err("page graph has a cycle".into());
        }
        self.budget -= 1;
        let flags = u16_at(page, 8)?;
        let count = u16_at(page, 10)? as usize;
        for i in 0..count {
            let e = PAGE_HEADER + i * ELEMENT;
            if flags & BRANCH != 0 {
                let child = u64_at(page, e + 8)?;
                let child_page = self.page(child)?;
                self.entries(child_page, out)?;
            } else if flags & LEAF != 0 {
                let eflags = u32_at(page, e)?;
                let pos = e + u32_at(page, e + 4)? as usize;
                let ksize = u32_at(page, e + 8)? as usize;
                let vsize = u32_at(page, e + 12)? as usize;
                let k = page.get(pos..pos + ksize).ok_or("leaf key past the page")?;
                let v = page
                    .get(pos + ksize..pos + ksize + vsize)
                    .ok_or("leaf value past the page")?;
                out.push((eflags, k.to_vec(), v.to_vec()));
            } else {
                return Err(format!("unexpected page flags {flags:#x}"));
            }
        }
        Ok(())
    }

    /// The bytes of page `id`, overflow pages included.
    fn page(&self, id: u64) -> Result<&'a [u8], String> {
        let file: &'a [u8] = self.file;
        let at = (id as usize)
            .checked_mul(self.page_size)
            .ok_or("page id overflows")?;
        let overflow = u32_at(file, at + 12)? as usize;
        let len = (overflow + 1)
            .checked_mul(self.page_size)
            .ok_or("page overflow too large")?;
        let end = (at + len).min(file.len());
        file.get(at..end)
            .ok_or_else(|| format!("page {id} past the end of the file"))
    }

    /// A bucket's entries from its header value.
    fn bucket(&mut self, header: &[u8]) -> Result<Leaves, String> {
        let root = u64_at(header, 0)?;
        let mut out = Vec::new();
        if root == 0 {
            let inline = header.get(16..).ok_or("truncated inline bucket")?;
            self.entries(inline, &mut out)?;
        } else {
            let page = self.page(root)?;
            self.entries(page, &mut out)?;
        }
        Ok(out)
    }
}

/// Every top-level bucket of a bolt file, and the file's size as bolt
/// counts it (high-water page id × page size, `Tx.Size`).
pub fn buckets(file: &[u8]) -> Result<(Buckets, u64), String> {
    let m = meta(file)?;
    let mut w = Walker {
        file,
        page_size: m.page_size,
        budget: (file.len() / m.page_size.max(1)) as u64 * 4 + 16,
    };
    let mut top = Vec::new();
    let root = w.page(m.root)?;
    w.entries(root, &mut top)?;
    let mut out = Vec::new();
    for (flags, name, header) in top {
        if flags & BUCKET_LEAF == 0 {
            continue;
        }
        let entries = w
            .bucket(&header)?
            .into_iter()
            .map(|(f, k, v)| (k, if f & BUCKET_LEAF != 0 { Vec::new() } else { v }))
            .collect();
        out.push((name, entries));
    }
    Ok((out, m.high_water * m.page_size as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(buckets(&[0u8; 100]).is_err());
        assert!(buckets(&[0xffu8; 8192]).is_err());
        assert!(buckets(&[]).is_err());
    }
}
