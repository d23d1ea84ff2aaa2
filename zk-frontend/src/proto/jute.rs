//! Jute primitives (`BinaryInputArchive` / `BinaryOutputArchive`), by hand.
//!
//! Decoding uses nom over a byte slice. Every length read from the wire is
//! checked against the bytes that remain *before* anything is allocated, so a
//! hostile length (`0x7fffffff`) costs nothing: a frame is at most
//! `max_frame_bytes` long and no decoded value can be larger than its frame.
//! Null buffers/strings/vectors (length -1) decode as empty, as every
//! ZooKeeper server path treats them, except znode data, which ZooKeeper
//! stores as null and answers as null ([`nullable_buffer`]).

use bytes::{BufMut, BytesMut};
use janus_core::znode::{Acl, Id, Stat};
use nom::bytes::complete::take;
use nom::error::{Error as NomError, ErrorKind};
use nom::number::complete::{be_i32, be_i64, be_u8};
use nom::IResult;

/// Result of a jute decoder.
pub type JResult<'a, T> = IResult<&'a [u8], T>;

fn fail<T>(input: &[u8]) -> JResult<'_, T> {
    Err(nom::Err::Error(NomError::new(input, ErrorKind::Verify)))
}

pub fn int(i: &[u8]) -> JResult<'_, i32> {
    be_i32(i)
}

pub fn long(i: &[u8]) -> JResult<'_, i64> {
    be_i64(i)
}

/// Java's `readBoolean`: any non-zero byte is true.
pub fn boolean(i: &[u8]) -> JResult<'_, bool> {
    let (i, b) = be_u8(i)?;
    Ok((i, b != 0))
}

/// A length-prefixed byte buffer; -1 is null (decoded as empty).
pub fn buffer(i: &[u8]) -> JResult<'_, Vec<u8>> {
    let (rest, len) = be_i32(i)?;
    if len == -1 {
        return Ok((rest, Vec::new()));
    }
    if len < 0 || len as usize > rest.len() {
        return fail(i);
    }
    let (rest, b) = take(len as usize)(rest)?;
    Ok((rest, b.to_vec()))
}

/// A length-prefixed byte buffer where -1 (null) stays `None`: znode data,
/// which ZooKeeper keeps null, distinct from empty.
pub fn nullable_buffer(i: &[u8]) -> JResult<'_, Option<Vec<u8>>> {
    if let Ok((rest, -1)) = be_i32::<_, NomError<&[u8]>>(i) {
        return Ok((rest, None));
    }
    let (rest, b) = buffer(i)?;
    Ok((rest, Some(b)))
}

/// A length-prefixed UTF-8 string; invalid UTF-8 is replaced as Java's
/// `new String(bytes, UTF_8)` does, so it cannot fail a request by itself.
pub fn ustring(i: &[u8]) -> JResult<'_, String> {
    let (rest, b) = buffer(i)?;
    Ok((rest, String::from_utf8_lossy(&b).into_owned()))
}

/// A length-prefixed UTF-8 string where -1 (null) stays `None`
/// (reconfig's optional server lists).
pub fn nullable_string(i: &[u8]) -> JResult<'_, Option<String>> {
    let (rest, b) = nullable_buffer(i)?;
    Ok((rest, b.map(|b| String::from_utf8_lossy(&b).into_owned())))
}

/// A vector: count, then elements. `min_elem` is the smallest encoding of one
/// element, used to reject counts that cannot fit in the remaining input
/// before allocating.
pub fn vector<'a, T>(
    i: &'a [u8],
    min_elem: usize,
    mut elem: impl FnMut(&'a [u8]) -> JResult<'a, T>,
) -> JResult<'a, Vec<T>> {
    let (mut rest, count) = be_i32(i)?;
    if count == -1 {
        return Ok((rest, Vec::new()));
    }
    if count < 0 || (count as usize).saturating_mul(min_elem.max(1)) > rest.len() {
        return fail(i);
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (r, v) = elem(rest)?;
        rest = r;
        out.push(v);
    }
    Ok((rest, out))
}

pub fn string_vec(i: &[u8]) -> JResult<'_, Vec<String>> {
    vector(i, 4, ustring)
}

pub fn id(i: &[u8]) -> JResult<'_, Id> {
    let (i, scheme) = ustring(i)?;
    let (i, id) = ustring(i)?;
    Ok((i, Id { scheme, id }))
}

pub fn acl(i: &[u8]) -> JResult<'_, Acl> {
    let (i, perms) = int(i)?;
    let (i, id) = id(i)?;
    Ok((i, Acl { perms, id }))
}

pub fn acl_vec(i: &[u8]) -> JResult<'_, Vec<Acl>> {
    vector(i, 12, acl)
}

pub fn stat(i: &[u8]) -> JResult<'_, Stat> {
    let (i, czxid) = long(i)?;
    let (i, mzxid) = long(i)?;
    let (i, ctime) = long(i)?;
    let (i, mtime) = long(i)?;
    let (i, version) = int(i)?;
    let (i, cversion) = int(i)?;
    let (i, aversion) = int(i)?;
    let (i, ephemeral_owner) = long(i)?;
    let (i, data_length) = int(i)?;
    let (i, num_children) = int(i)?;
    let (i, pzxid) = long(i)?;
    Ok((
        i,
        Stat {
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid,
        },
    ))
}

/// Jute writer over a growable buffer.
#[derive(Default, Debug)]
pub struct Writer {
    pub buf: BytesMut,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            buf: BytesMut::with_capacity(64),
        }
    }
    pub fn int(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }
    pub fn long(&mut self, v: i64) -> &mut Self {
        self.buf.put_i64(v);
        self
    }
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.buf.put_u8(v as u8);
        self
    }
    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v);
        self
    }
    /// A buffer that may be null (length -1), as ZooKeeper writes null data.
    pub fn nullable_buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(b) => self.buffer(b),
            None => self.int(-1),
        }
    }
    pub fn ustring(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }
    pub fn string_vec<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.int(v.len() as i32);
        for s in v {
            self.ustring(s.as_ref());
        }
        self
    }
    pub fn id(&mut self, v: &Id) -> &mut Self {
        self.ustring(&v.scheme).ustring(&v.id)
    }
    pub fn acl_vec(&mut self, v: &[Acl]) -> &mut Self {
        self.int(v.len() as i32);
        for a in v {
            self.int(a.perms).id(&a.id);
        }
        self
    }
    pub fn stat(&mut self, s: &Stat) -> &mut Self {
        self.long(s.czxid)
            .long(s.mzxid)
            .long(s.ctime)
            .long(s.mtime)
            .int(s.version)
            .int(s.cversion)
            .int(s.aversion)
            .long(s.ephemeral_owner)
            .int(s.data_length)
            .int(s.num_children)
            .long(s.pzxid)
    }
    pub fn into_bytes(self) -> BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_roundtrip_and_null() {
        let mut w = Writer::new();
        w.buffer(b"abc").int(-1);
        let b = w.into_bytes();
        let (rest, v) = buffer(&b).unwrap();
        assert_eq!(v, b"abc");
        let (rest, v) = buffer(rest).unwrap();
        assert!(v.is_empty() && rest.is_empty());
    }

    #[test]
    fn nullable_buffer_keeps_null_apart_from_empty() {
        let mut w = Writer::new();
        w.nullable_buffer(None)
            .nullable_buffer(Some(b""))
            .nullable_buffer(Some(b"x"));
        let b = w.into_bytes();
        assert_eq!(&b[..8], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let (rest, v) = nullable_buffer(&b).unwrap();
        assert_eq!(v, None);
        let (rest, v) = nullable_buffer(rest).unwrap();
        assert_eq!(v, Some(Vec::new()));
        let (rest, v) = nullable_buffer(rest).unwrap();
        assert_eq!((v, rest.len()), (Some(b"x".to_vec()), 0));
        assert!(nullable_buffer(&[0xff, 0xff, 0xff, 0xfe]).is_err());
    }

    #[test]
    fn hostile_lengths_are_rejected_before_allocation() {
        let mut w = Writer::new();
        w.int(i32::MAX);
        assert!(buffer(&w.buf).is_err());
        assert!(string_vec(&w.buf).is_err());
        assert!(acl_vec(&w.buf).is_err());
        let mut w = Writer::new();
        w.int(-7);
        assert!(buffer(&w.buf).is_err());
        assert!(string_vec(&w.buf).is_err());
    }

    #[test]
    fn stat_roundtrip() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: i64::MIN,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut w = Writer::new();
        w.stat(&s);
        assert_eq!(w.buf.len(), 68);
        assert_eq!(stat(&w.buf).unwrap().1, s);
    }
}
