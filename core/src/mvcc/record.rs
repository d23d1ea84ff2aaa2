//! The on-disk MVCC record: one per write, keyed by revision.

use serde::{Deserialize, Serialize};

use crate::kv::KeyValue;

/// One write to one key. `mod_revision` is the record's own revision and is
/// not stored twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// ZooKeeper ctime/mtime in ms (proposer's clock, carried in the command).
    pub ctime: i64,
    pub mtime: i64,
    /// A deletion: the key has no value from this revision on.
    pub tombstone: bool,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Record, postcard::Error> {
        postcard::from_bytes(b)
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
