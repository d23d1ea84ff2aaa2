//! One WAL record on disk: `len: u32 LE | crc: u32 LE | kind: u8 | body`,
//! where `len` counts `kind` and `body` (so it is never 0) and `crc` is
//! CRC-32 (crc32fast) over `kind` and `body`.
//!
//! A zero length marks the end of the written part of a preallocated
//! (zero-filled) segment; anything else that does not check out is either a
//! torn tail or corruption, which the reader (`Wal::open`) tells apart.

/// Bytes before the kind byte.
pub const HEADER: usize = 8;
/// Largest record body accepted on read (a raft entry is bounded far below
/// this by the proposal size limits; a larger length is garbage).
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A raft entry (protobuf bytes); it replaces every entry at or above
    /// its index.
    Entry = 1,
    /// The raft hard state (protobuf bytes); the last one wins.
    HardState = 2,
    /// Entries up to `index` (u64 BE) are dropped; `term` (u64 BE) is the
    /// term of that index. Written at the head of every segment and when the
    /// log is compacted.
    Start = 3,
    /// Every entry is dropped and the log restarts after `index`/`term`
    /// (a snapshot was installed).
    Reset = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Entry),
            2 => Some(Kind::HardState),
            3 => Some(Kind::Start),
            4 => Some(Kind::Reset),
            _ => None,
        }
    }
}

/// Appends one framed record to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, body: &[u8]) {
    let len = (body.len() + 1) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind as u8]);
    h.update(body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
}

/// Bytes `encode` produces for a body of `body_len` bytes.
pub fn framed_len(body_len: usize) -> usize {
    HEADER + 1 + body_len
}

/// The body of a Start or Reset record.
pub fn index_term(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

pub fn parse_index_term(body: &[u8]) -> Option<(u64, u64)> {
    let i = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let t = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    (body.len() == 16).then_some((i, t))
}

/// What the reader finds at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// A valid record, and the offset just past it.
    Record {
        kind: Kind,
        body: &'a [u8],
        next: usize,
    },
    /// Zeros (or too few bytes for a header): the end of the written part.
    End,
    /// A record that does not check out; `claimed_end` is where it would
    /// end if its length field were right (clamped to the buffer).
    Bad { why: String, claimed_end: usize },
}

/// Decodes the record at `at` in `buf`.
pub fn read(buf: &[u8], at: usize) -> Read<'_> {
    let Some(h) = buf.get(at..at + HEADER) else {
        // Fewer bytes than a header: a tail of zeros is the end, anything
        // else a torn header.
        return if buf[at.min(buf.len())..].iter().all(|b| *b == 0) {
            Read::End
        } else {
            Read::Bad {
                why: "truncated record header".into(),
                claimed_end: buf.len(),
            }
        };
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len == 0 {
        if crc == 0 {
            return Read::End;
        }
        return Read::Bad {
            why: "zero length with a checksum".into(),
            claimed_end: at + HEADER,
        };
    }
    if len > MAX_BODY + 1 {
        return Read::Bad {
            why: format!("record length {len} out of range"),
            claimed_end: buf.len(),
        };
    }
    let end = at + HEADER + len;
    let Some(payload) = buf.get(at + HEADER..end) else {
        return Read::Bad {
            why: format!("record of {len} bytes runs past the end of the file"),
            claimed_end: buf.len(),
        };
    };
    if crc32fast::hash(payload) != crc {
        return Read::Bad {
            why: "checksum mismatch".into(),
            claimed_end: end,
        };
    }
    match Kind::from_u8(payload[0]) {
        Some(kind) => Read::Record {
            kind,
            body: &payload[1..],
            next: end,
        },
        None => Read::Bad {
            why: format!("unknown record kind {}", payload[0]),
            claimed_end: end,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_end_marker() {
        let mut b = Vec::new();
        encode(&mut b, Kind::Entry, b"hello");
        encode(&mut b, Kind::Start, &index_term(7, 3));
        let first_len = framed_len(5);
        b.extend_from_slice(&[0u8; 32]);
        match read(&b, 0) {
            Read::Record { kind, body, next } => {
                assert_eq!((kind, body, next), (Kind::Entry, &b"hello"[..], first_len));
            }
            r => panic!("{r:?}"),
        }
        match read(&b, first_len) {
            Read::Record { kind, body, next } => {
                assert_eq!(kind, Kind::Start);
                assert_eq!(parse_index_term(body), Some((7, 3)));
                assert_eq!(read(&b, next), Read::End);
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut b = Vec::new();
        encode(&mut b, Kind::HardState, b"some hard state bytes");
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(read(&c, 0), Read::Record { .. }),
                "flip of bit {bit} accepted"
            );
        }
    }
}
