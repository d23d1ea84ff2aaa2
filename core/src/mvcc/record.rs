//! The on-disk MVCC record: one per write, keyed by revision.

use serde::{Deserialize, Serialize};

use crate::kv::KeyValue;

/// One write to one key. `mod_revision` is the record's own revision and is
/// not stored twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// ZooKeeper ctime/mtime in ms (proposer's clock, carried in the command).
    pub ctime: i64,
    pub mtime: i64,
    /// A deletion: the key has no value from this revision on.
    pub tombstone: bool,
    /// ZooKeeper null data: a create or setData sent a null buffer. The
    /// value is empty (etcd clients see `""`, ZooKeeper's dataLength is 0)
    /// and getData answers null, as ZooKeeper keeps null apart from empty.
    /// It belongs to this value, not to the znode: any later write (an
    /// etcd put, a setData with bytes) is not null unless it says so, and
    /// an etcd put with `ignore_value` keeps it with the value it keeps.
    pub null_data: bool,
}

/// The layout before `null_data` existed (postcard has no defaults for
/// missing trailing fields), so stores written by earlier builds open.
#[derive(Deserialize)]
struct RecordV0 {
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    create_revision: i64,
    version: i64,
    lease: i64,
    ctime: i64,
    mtime: i64,
    tombstone: bool,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Record, postcard::Error> {
        match postcard::from_bytes(b) {
            Ok(r) => Ok(r),
            Err(e) => match postcard::from_bytes::<RecordV0>(b) {
                Ok(o) => Ok(Record {
                    key: o.key,
                    value: o.value,
                    create_revision: o.create_revision,
                    version: o.version,
                    lease: o.lease,
                    ctime: o.ctime,
                    mtime: o.mtime,
                    tombstone: o.tombstone,
                    null_data: false,
                }),
                Err(_) => Err(e),
            },
        }
    }

    /// The etcd view of this record written at `mod_revision`.
    pub fn to_kv(&self, mod_revision: i64) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_fields_encode_as_the_sequences_earlier_builds_wrote() {
        // Earlier builds serialized key and value as sequences of u8;
        // `serde_bytes` writes them in one go: postcard's bytes are the same.
        #[derive(Serialize)]
        struct Seq(Vec<u8>, Vec<u8>, i64, i64, i64, i64, i64, bool, bool);
        let r = Record {
            key: b"/k".to_vec(),
            value: (0..=255).collect(),
            create_revision: 2,
            version: 1,
            lease: 7,
            ctime: 5,
            mtime: 6,
            tombstone: false,
            null_data: true,
        };
        let seq = Seq(r.key.clone(), r.value.clone(), 2, 1, 7, 5, 6, false, true);
        assert_eq!(r.encode(), postcard::to_stdvec(&seq).unwrap());
        assert_eq!(
            Record::decode(&postcard::to_stdvec(&seq).unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn records_of_earlier_builds_decode_as_not_null() {
        #[derive(Serialize)]
        struct Old<'a>(&'a [u8], &'a [u8], i64, i64, i64, i64, i64, bool);
        let old = postcard::to_stdvec(&Old(b"/k", b"v", 2, 1, 0, 5, 6, false)).unwrap();
        let r = Record::decode(&old).unwrap();
        assert_eq!(
            (r.value.as_slice(), r.mtime, r.null_data),
            (&b"v"[..], 6, false)
        );
        let mut n = r.clone();
        n.null_data = true;
        assert_eq!(Record::decode(&n.encode()).unwrap(), n);
    }
}
