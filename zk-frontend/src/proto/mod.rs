//! ZooKeeper's wire records (`zookeeper.jute`, module `org.apache.zookeeper.proto`)
//! and constants (`ZooDefs.OpCode`, `KeeperException.Code`, `Watcher.Event`).
//!
//! [`decode_request`] turns one frame payload (after the 4-byte length) into a
//! [`RequestHeader`] and a [`Request`]; it never panics and never allocates
//! more than the frame holds (see [`jute`]).

pub mod jute;

use janus_core::znode::Acl;
use jute::{
    acl_vec, boolean, buffer, int, long, nullable_buffer, nullable_string, string_vec, ustring,
    JResult, Writer,
};

/// `ZooDefs.OpCode`.
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// `KeeperException.Code` values.
pub mod code {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const DATA_INCONSISTENCY: i32 = -3;
    pub const CONNECTION_LOSS: i32 = -4;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const OPERATION_TIMEOUT: i32 = -7;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NEW_CONFIG_NO_QUORUM: i32 = -13;
    pub const UNKNOWN_SESSION: i32 = -12;
    pub const API_ERROR: i32 = -100;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NOT_READ_ONLY: i32 = -119;
    pub const NO_WATCHER: i32 = -121;
    pub const RECONFIG_DISABLED: i32 = -123;
    pub const QUOTA_EXCEEDED: i32 = -125;
}

/// Reserved xids (`ClientCnxn`).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// `Watcher.Event.EventType`.
pub mod event_type {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// `Watcher.Event.KeeperState.SyncConnected`.
pub const STATE_SYNC_CONNECTED: i32 = 3;

/// Decoding failed: the frame is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

fn finish<T>(r: JResult<'_, T>) -> Result<T, Malformed> {
    r.map(|(_, v)| v).map_err(|_| Malformed)
}

/// `ConnectRequest`; `read_only` is `None` when the client (pre-3.4) omitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(b: &[u8]) -> Result<ConnectRequest, Malformed> {
        finish((|i| {
            let (i, protocol_version) = int(i)?;
            let (i, last_zxid_seen) = long(i)?;
            let (i, timeout) = int(i)?;
            let (i, session_id) = long(i)?;
            let (i, passwd) = buffer(i)?;
            let (i, read_only) = if i.is_empty() {
                (i, None)
            } else {
                let (i, b) = boolean(i)?;
                (i, Some(b))
            };
            Ok((
                i,
                ConnectRequest {
                    protocol_version,
                    last_zxid_seen,
                    timeout,
                    session_id,
                    passwd,
                    read_only,
                },
            ))
        })(b))
    }
}

/// `ConnectResponse`; the readOnly byte is written only if the client sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn encode(&self) -> bytes::BytesMut {
        let mut w = Writer::new();
        w.int(self.protocol_version)
            .int(self.timeout)
            .long(self.session_id)
            .buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.boolean(ro);
        }
        w.into_bytes()
    }
}

/// `RequestHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub op: i32,
}

/// `CreateRequest` / `CreateTTLRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReq {
    pub path: String,
    /// `None`: null data.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    /// Only for createTTL (0 otherwise).
    pub ttl: i64,
}

/// One op inside a multi or multiRead, with the opcode it was sent as
/// (create and create2 answer differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    Create {
        op: i32,
        req: CreateReq,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    GetChildren {
        path: String,
    },
    GetData {
        path: String,
    },
}

/// `SetWatches` / `SetWatches2` (the persistent lists are empty for v1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatchesReq {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// A decoded client request (the body after the [`RequestHeader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create, create2, createContainer, createTTL (`op` tells which).
    Create {
        op: i32,
        req: CreateReq,
    },
    /// delete and deleteContainer.
    Delete {
        op: i32,
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// getChildren and getChildren2 (`op` tells which).
    GetChildren {
        op: i32,
        path: String,
        watch: bool,
    },
    GetAllChildrenNumber {
        path: String,
    },
    GetEphemerals {
        prefix: String,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Auth {
        scheme: String,
        auth: Vec<u8>,
    },
    SetWatches(SetWatchesReq),
    AddWatch {
        path: String,
        mode: i32,
    },
    CheckWatches {
        path: String,
        kind: i32,
    },
    RemoveWatches {
        path: String,
        kind: i32,
    },
    WhoAmI,
    CloseSession,
    /// sasl (`GetSASLRequest`): one token of the exchange.
    Sasl {
        token: Vec<u8>,
    },
    /// reconfig (`ReconfigRequest`): `None` is a null string.
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        cur_config_id: i64,
    },
    /// An opcode janus knows but does not serve (reconfig, sasl, ...) or
    /// does not know at all: answered with an error code, not a crash.
    Unsupported(i32),
}

fn path_watch(i: &[u8]) -> JResult<'_, (String, bool)> {
    let (i, p) = ustring(i)?;
    let (i, w) = boolean(i)?;
    Ok((i, (p, w)))
}

fn path_int(i: &[u8]) -> JResult<'_, (String, i32)> {
    let (i, p) = ustring(i)?;
    let (i, v) = int(i)?;
    Ok((i, (p, v)))
}

fn create_req(i: &[u8], ttl: bool) -> JResult<'_, CreateReq> {
    let (i, path) = ustring(i)?;
    let (i, data) = nullable_buffer(i)?;
    let (i, acl) = acl_vec(i)?;
    let (i, flags) = int(i)?;
    let (i, ttl) = if ttl { long(i)? } else { (i, 0) };
    Ok((
        i,
        CreateReq {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    ))
}

fn set_data(i: &[u8]) -> JResult<'_, (String, Option<Vec<u8>>, i32)> {
    let (i, p) = ustring(i)?;
    let (i, d) = nullable_buffer(i)?;
    let (i, v) = int(i)?;
    Ok((i, (p, d, v)))
}

/// `MultiOperationRecord`: (MultiHeader, op)* until a header with done=true.
fn multi_ops(mut i: &[u8]) -> JResult<'_, Vec<MultiOp>> {
    let mut ops = Vec::new();
    loop {
        let (r, typ) = int(i)?;
        let (r, done) = boolean(r)?;
        let (r, _err) = int(r)?;
        if done {
            return Ok((r, ops));
        }
        let (r, op) = match typ {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => {
                let (r, req) = create_req(r, false)?;
                (r, MultiOp::Create { op: typ, req })
            }
            op::CREATE_TTL => {
                let (r, req) = create_req(r, true)?;
                (r, MultiOp::Create { op: typ, req })
            }
            op::DELETE => {
                let (r, (path, version)) = path_int(r)?;
                (r, MultiOp::Delete { path, version })
            }
            op::SET_DATA => {
                let (r, (path, data, version)) = set_data(r)?;
                (
                    r,
                    MultiOp::SetData {
                        path,
                        data,
                        version,
                    },
                )
            }
            op::CHECK => {
                let (r, (path, version)) = path_int(r)?;
                (r, MultiOp::Check { path, version })
            }
            op::GET_CHILDREN => {
                let (r, (path, _)) = path_watch(r)?;
                (r, MultiOp::GetChildren { path })
            }
            op::GET_DATA => {
                let (r, (path, _)) = path_watch(r)?;
                (r, MultiOp::GetData { path })
            }
            _ => {
                return Err(nom::Err::Error(nom::error::Error::new(
                    i,
                    nom::error::ErrorKind::Tag,
                )))
            }
        };
        ops.push(op);
        i = r;
    }
}

fn set_watches(i: &[u8], v2: bool) -> JResult<'_, SetWatchesReq> {
    let (i, relative_zxid) = long(i)?;
    let (i, data) = string_vec(i)?;
    let (i, exist) = string_vec(i)?;
    let (i, child) = string_vec(i)?;
    let (i, persistent, persistent_recursive) = if v2 {
        let (i, p) = string_vec(i)?;
        let (i, r) = string_vec(i)?;
        (i, p, r)
    } else {
        (i, Vec::new(), Vec::new())
    };
    Ok((
        i,
        SetWatchesReq {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            persistent_recursive,
        },
    ))
}

/// Decodes one request frame (header + body). Trailing bytes are ignored,
/// as ZooKeeper's `BinaryInputArchive` ignores them.
pub fn decode_request(b: &[u8]) -> Result<(RequestHeader, Request), Malformed> {
    let (body, (xid, op)) = (|i| {
        let (i, x) = int(i)?;
        let (i, o) = int(i)?;
        Ok::<_, nom::Err<nom::error::Error<&[u8]>>>((i, (x, o)))
    })(b)
    .map_err(|_| Malformed)?;
    let hdr = RequestHeader { xid, op };
    let req = match op {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => Request::Create {
            op,
            req: finish(create_req(body, false))?,
        },
        op::CREATE_TTL => Request::Create {
            op,
            req: finish(create_req(body, true))?,
        },
        op::DELETE | op::DELETE_CONTAINER => {
            if op == op::DELETE {
                let (path, version) = finish(path_int(body))?;
                Request::Delete { op, path, version }
            } else {
                let path = finish(ustring(body))?;
                Request::Delete {
                    op,
                    path,
                    version: -1,
                }
            }
        }
        op::EXISTS => {
            let (path, watch) = finish(path_watch(body))?;
            Request::Exists { path, watch }
        }
        op::GET_DATA => {
            let (path, watch) = finish(path_watch(body))?;
            Request::GetData { path, watch }
        }
        op::SET_DATA => {
            let (path, data, version) = finish(set_data(body))?;
            Request::SetData {
                path,
                data,
                version,
            }
        }
        op::GET_ACL => Request::GetAcl {
            path: finish(ustring(body))?,
        },
        op::SET_ACL => {
            let (path, acl, version) = finish((|i| {
                let (i, p) = ustring(i)?;
                let (i, a) = acl_vec(i)?;
                let (i, v) = int(i)?;
                Ok((i, (p, a, v)))
            })(body))?;
            Request::SetAcl { path, acl, version }
        }
        op::GET_CHILDREN | op::GET_CHILDREN2 => {
            let (path, watch) = finish(path_watch(body))?;
            Request::GetChildren { op, path, watch }
        }
        op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
            path: finish(ustring(body))?,
        },
        op::GET_EPHEMERALS => Request::GetEphemerals {
            prefix: finish(ustring(body))?,
        },
        op::SYNC => Request::Sync {
            path: finish(ustring(body))?,
        },
        op::PING => Request::Ping,
        op::CHECK => {
            let (path, version) = finish(path_int(body))?;
            Request::Check { path, version }
        }
        op::MULTI => Request::Multi(finish(multi_ops(body))?),
        op::MULTI_READ => Request::MultiRead(finish(multi_ops(body))?),
        op::AUTH => {
            let (scheme, auth) = finish((|i| {
                let (i, _typ) = int(i)?;
                let (i, s) = ustring(i)?;
                let (i, a) = buffer(i)?;
                Ok((i, (s, a)))
            })(body))?;
            Request::Auth { scheme, auth }
        }
        op::SASL => Request::Sasl {
            token: finish(buffer(body))?,
        },
        op::RECONFIG => {
            let (joining, leaving, new_members, cur_config_id) = finish((|i| {
                let (i, j) = nullable_string(i)?;
                let (i, l) = nullable_string(i)?;
                let (i, n) = nullable_string(i)?;
                let (i, c) = long(i)?;
                Ok((i, (j, l, n, c)))
            })(body))?;
            Request::Reconfig {
                joining,
                leaving,
                new_members,
                cur_config_id,
            }
        }
        op::SET_WATCHES => Request::SetWatches(finish(set_watches(body, false))?),
        op::SET_WATCHES2 => Request::SetWatches(finish(set_watches(body, true))?),
        op::ADD_WATCH => {
            let (path, mode) = finish(path_int(body))?;
            Request::AddWatch { path, mode }
        }
        op::CHECK_WATCHES => {
            let (path, kind) = finish(path_int(body))?;
            Request::CheckWatches { path, kind }
        }
        op::REMOVE_WATCHES => {
            let (path, kind) = finish(path_int(body))?;
            Request::RemoveWatches { path, kind }
        }
        op::WHO_AM_I => Request::WhoAmI,
        op::CLOSE_SESSION => Request::CloseSession,
        other => Request::Unsupported(other),
    };
    Ok((hdr, req))
}

/// Encodes a reply: `ReplyHeader` then the optional body.
pub fn encode_reply(xid: i32, zxid: i64, err: i32, body: Option<&[u8]>) -> bytes::BytesMut {
    let mut w = Writer::new();
    w.int(xid).long(zxid).int(err);
    if let Some(b) = body {
        w.buf.extend_from_slice(b);
    }
    w.into_bytes()
}

/// Encodes a watch notification (xid -1, zxid -1, `WatcherEvent`).
pub fn encode_notification(event_type: i32, path: &str) -> bytes::BytesMut {
    let mut w = Writer::new();
    w.int(xid::NOTIFICATION).long(-1).int(0);
    w.int(event_type).int(STATE_SYNC_CONNECTED).ustring(path);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(xid: i32, op: i32, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.int(xid).int(op);
        body(&mut w);
        w.into_bytes().to_vec()
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut w = Writer::new();
        w.int(0).long(5).int(30000).long(0).buffer(&[0; 16]);
        let old = w.buf.clone();
        w.boolean(false);
        let new = ConnectRequest::decode(&w.buf).unwrap();
        assert_eq!(new.read_only, Some(false));
        assert_eq!(new.timeout, 30000);
        assert_eq!(ConnectRequest::decode(&old).unwrap().read_only, None);
        assert!(ConnectRequest::decode(&old[..10]).is_err());
    }

    #[test]
    fn create_and_multi() {
        let f = frame(7, op::CREATE2, |w| {
            w.ustring("/a").buffer(b"x").acl_vec(&Acl::open()).int(1);
        });
        let (h, r) = decode_request(&f).unwrap();
        assert_eq!(
            h,
            RequestHeader {
                xid: 7,
                op: op::CREATE2
            }
        );
        match r {
            Request::Create { op, req } => {
                assert_eq!(op, op::CREATE2);
                assert_eq!(req.path, "/a");
                assert_eq!(req.flags, 1);
                assert_eq!(req.acl, Acl::open());
            }
            other => panic!("{other:?}"),
        }
        let f = frame(8, op::MULTI, |w| {
            w.int(op::CHECK).boolean(false).int(-1).ustring("/a").int(3);
            w.int(op::DELETE)
                .boolean(false)
                .int(-1)
                .ustring("/a")
                .int(-1);
            w.int(-1).boolean(true).int(-1);
        });
        let (_, r) = decode_request(&f).unwrap();
        assert_eq!(
            r,
            Request::Multi(vec![
                MultiOp::Check {
                    path: "/a".into(),
                    version: 3
                },
                MultiOp::Delete {
                    path: "/a".into(),
                    version: -1
                }
            ])
        );
        // A multi without its terminating header is malformed.
        let f = frame(8, op::MULTI, |w| {
            w.int(op::CHECK).boolean(false).int(-1).ustring("/a").int(3);
        });
        assert!(decode_request(&f).is_err());
    }

    #[test]
    fn unknown_opcode_is_not_an_error() {
        let f = frame(1, 999, |_| {});
        assert_eq!(decode_request(&f).unwrap().1, Request::Unsupported(999));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Arbitrary bytes never panic the decoders (and, since every length
        /// is checked against the remaining input, never allocate more than
        /// the input's size; a huge allocation would abort the test).
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_request(&b);
            let _ = ConnectRequest::decode(&b);
        }

        /// A valid header with any known opcode followed by arbitrary bytes.
        #[test]
        fn known_opcodes_with_garbage_never_panic(
            op in proptest::sample::select(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18,
                19, 20, 21, 22, 100, 101, 103, 104, 105, 106, 107, -11]),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut w = Writer::new();
            w.int(1).int(op);
            w.buf.extend_from_slice(&body);
            let _ = decode_request(&w.buf);
        }

        /// Vectors claiming huge counts with tiny elements are refused.
        #[test]
        fn multi_with_many_tiny_headers(n in 0usize..2000) {
            let mut w = Writer::new();
            w.int(1).int(op::MULTI);
            for _ in 0..n {
                w.int(op::CHECK).boolean(false).int(-1).ustring("/a").int(-1);
            }
            w.int(-1).boolean(true).int(-1);
            let (_, r) = decode_request(&w.buf).unwrap();
            match r {
                Request::Multi(ops) => proptest::prop_assert_eq!(ops.len(), n),
                _ => proptest::prop_assert!(false),
            }
        }
    }
}
