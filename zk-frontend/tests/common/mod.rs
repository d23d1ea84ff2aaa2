//! Shared test helpers: a raw, synchronous jute client, to see exact error
//! codes, stats and notification order, which client libraries hide. Real
//! ZooKeeper for the differential tests comes from
//! `janus_conformance::reference`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use janus_core::znode::{Acl, Stat};
use janus_zk::proto::jute::{self, Writer};
use janus_zk::proto::{op, ConnectRequest};

/// One reply: header fields and the raw body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

/// A minimal ZooKeeper client speaking jute over a blocking socket.
pub struct Raw {
    pub s: TcpStream,
    pub session: i64,
    pub passwd: Vec<u8>,
    pub timeout: i32,
    xid: i32,
    /// Notifications received so far, in order: (type, path).
    pub events: Vec<(i32, String)>,
    /// Every reply's zxid, in order (to check monotonicity).
    pub zxids: Vec<i64>,
}

pub fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    let mut b = (payload.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(payload);
    s.write_all(&b).expect("write frame");
}

/// Reads one frame; `None` if the server closed the connection.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    let mut b = vec![0; n];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

/// The ConnectResponse fields: (timeout, session, passwd).
pub fn connect_raw(
    addr: SocketAddr,
    timeout: i32,
    session: i64,
    passwd: &[u8],
) -> (TcpStream, Option<(i32, i64, Vec<u8>)>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = Writer::new();
    w.int(0)
        .long(0)
        .int(timeout)
        .long(session)
        .buffer(passwd)
        .boolean(false);
    write_frame(&mut s, &w.buf);
    let Some(b) = read_frame(&mut s) else {
        return (s, None);
    };
    let (i, _proto) = jute::int(&b).expect("proto");
    let (i, to) = jute::int(i).expect("timeout");
    let (i, sid) = jute::long(i).expect("session");
    let (_, pw) = jute::buffer(i).expect("passwd");
    (s, Some((to, sid, pw)))
}

/// Connects with `canBeReadOnly` set: the client and the ConnectResponse's
/// readOnly flag (`None` if the server sent none), or `None` if the server
/// closed the connection instead of answering.
pub fn connect_read_only(addr: SocketAddr, timeout: i32) -> Option<(Raw, Option<bool>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut w = Writer::new();
    w.int(0)
        .long(0)
        .int(timeout)
        .long(0)
        .buffer(&[0; 16])
        .boolean(true);
    write_frame(&mut s, &w.buf);
    let b = read_frame(&mut s)?;
    let (i, _proto) = jute::int(&b).ok()?;
    let (i, to) = jute::int(i).ok()?;
    let (i, sid) = jute::long(i).ok()?;
    let (i, pw) = jute::buffer(i).ok()?;
    let ro = jute::boolean(i).ok().map(|(_, ro)| ro);
    let raw = Raw {
        s,
        session: sid,
        passwd: pw,
        timeout: to,
        xid: 0,
        events: Vec::new(),
        zxids: Vec::new(),
    };
    Some((raw, ro))
}

impl Raw {
    pub fn connect(addr: SocketAddr, timeout: i32) -> Raw {
        let (s, r) = connect_raw(addr, timeout, 0, &[0; 16]);
        let (timeout, session, passwd) = r.expect("connect response");
        Raw {
            s,
            session,
            passwd,
            timeout,
            xid: 0,
            events: Vec::new(),
            zxids: Vec::new(),
        }
    }

    /// Resumes a session on a new socket.
    pub fn resume(addr: SocketAddr, session: i64, passwd: &[u8], timeout: i32) -> Option<Raw> {
        let (s, r) = connect_raw(addr, timeout, session, passwd);
        let (timeout, sid, passwd) = r?;
        if sid == 0 {
            return None;
        }
        Some(Raw {
            s,
            session: sid,
            passwd,
            timeout,
            xid: 0,
            events: Vec::new(),
            zxids: Vec::new(),
        })
    }

    /// Sends a request and waits for its reply, collecting notifications.
    /// `None` if the connection closed.
    pub fn call_xid(
        &mut self,
        xid: i32,
        opcode: i32,
        body: impl FnOnce(&mut Writer),
    ) -> Option<Resp> {
        let mut w = Writer::new();
        w.int(xid).int(opcode);
        body(&mut w);
        write_frame(&mut self.s, &w.buf);
        loop {
            let b = read_frame(&mut self.s)?;
            let (i, rx) = jute::int(&b).ok()?;
            let (i, zxid) = jute::long(i).ok()?;
            let (i, err) = jute::int(i).ok()?;
            if rx == -1 {
                let (i, t) = jute::int(i).ok()?;
                let (i, _state) = jute::int(i).ok()?;
                let (_, p) = jute::ustring(i).ok()?;
                self.events.push((t, p));
                continue;
            }
            self.zxids.push(zxid);
            return Some(Resp {
                xid: rx,
                zxid,
                err,
                body: i.to_vec(),
            });
        }
    }

    pub fn call(&mut self, opcode: i32, body: impl FnOnce(&mut Writer)) -> Option<Resp> {
        self.xid += 1;
        let x = self.xid;
        let r = self.call_xid(x, opcode, body)?;
        assert_eq!(r.xid, x, "replies must come in request order");
        Some(r)
    }

    pub fn take_events(&mut self) -> Vec<(i32, String)> {
        std::mem::take(&mut self.events)
    }

    /// create2 with open ACL: (err, created path, stat).
    pub fn create(&mut self, path: &str, data: &[u8], flags: i32) -> (i32, String, Option<Stat>) {
        self.create_acl(path, data, flags, &Acl::open())
    }

    pub fn create_acl(
        &mut self,
        path: &str,
        data: &[u8],
        flags: i32,
        acl: &[Acl],
    ) -> (i32, String, Option<Stat>) {
        let r = self
            .call(op::CREATE2, |w| {
                w.ustring(path).buffer(data).acl_vec(acl).int(flags);
            })
            .expect("create reply");
        if r.err != 0 {
            return (r.err, String::new(), None);
        }
        let (i, p) = jute::ustring(&r.body).expect("path");
        let (_, s) = jute::stat(i).expect("stat");
        (0, p, Some(s))
    }

    pub fn create_ttl(&mut self, path: &str, flags: i32, ttl: i64) -> (i32, String, Option<Stat>) {
        let r = self
            .call(op::CREATE_TTL, |w| {
                w.ustring(path)
                    .buffer(b"")
                    .acl_vec(&Acl::open())
                    .int(flags)
                    .long(ttl);
            })
            .expect("createTTL reply");
        if r.err != 0 {
            return (r.err, String::new(), None);
        }
        let (i, p) = jute::ustring(&r.body).expect("path");
        let (_, s) = jute::stat(i).expect("stat");
        (0, p, Some(s))
    }

    pub fn delete(&mut self, path: &str, version: i32) -> i32 {
        self.call(op::DELETE, |w| {
            w.ustring(path).int(version);
        })
        .expect("delete reply")
        .err
    }

    pub fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> (i32, Option<Stat>) {
        let r = self
            .call(op::SET_DATA, |w| {
                w.ustring(path).buffer(data).int(version);
            })
            .expect("setData reply");
        if r.err != 0 {
            return (r.err, None);
        }
        (0, Some(jute::stat(&r.body).expect("stat").1))
    }

    pub fn get_data(&mut self, path: &str, watch: bool) -> (i32, Vec<u8>, Option<Stat>) {
        let r = self
            .call(op::GET_DATA, |w| {
                w.ustring(path).boolean(watch);
            })
            .expect("getData reply");
        if r.err != 0 {
            return (r.err, Vec::new(), None);
        }
        let (i, d) = jute::buffer(&r.body).expect("data");
        (0, d, Some(jute::stat(i).expect("stat").1))
    }

    pub fn exists(&mut self, path: &str, watch: bool) -> (i32, Option<Stat>) {
        let r = self
            .call(op::EXISTS, |w| {
                w.ustring(path).boolean(watch);
            })
            .expect("exists reply");
        if r.err != 0 {
            return (r.err, None);
        }
        (0, Some(jute::stat(&r.body).expect("stat").1))
    }

    pub fn children2(&mut self, path: &str, watch: bool) -> (i32, Vec<String>, Option<Stat>) {
        let r = self
            .call(op::GET_CHILDREN2, |w| {
                w.ustring(path).boolean(watch);
            })
            .expect("getChildren2 reply");
        if r.err != 0 {
            return (r.err, Vec::new(), None);
        }
        let (i, mut c) = jute::string_vec(&r.body).expect("children");
        c.sort();
        (0, c, Some(jute::stat(i).expect("stat").1))
    }

    pub fn get_acl(&mut self, path: &str) -> (i32, Vec<Acl>, Option<Stat>) {
        let r = self
            .call(op::GET_ACL, |w| {
                w.ustring(path);
            })
            .expect("getACL reply");
        if r.err != 0 {
            return (r.err, Vec::new(), None);
        }
        let (i, a) = jute::acl_vec(&r.body).expect("acl");
        (0, a, Some(jute::stat(i).expect("stat").1))
    }

    pub fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> (i32, Option<Stat>) {
        let r = self
            .call(op::SET_ACL, |w| {
                w.ustring(path).acl_vec(acl).int(version);
            })
            .expect("setACL reply");
        if r.err != 0 {
            return (r.err, None);
        }
        (0, Some(jute::stat(&r.body).expect("stat").1))
    }

    pub fn add_auth(&mut self, scheme: &str, auth: &[u8]) -> i32 {
        self.call_xid(-4, op::AUTH, |w| {
            w.int(0).ustring(scheme).buffer(auth);
        })
        .map(|r| r.err)
        .unwrap_or(i32::MIN)
    }

    pub fn sync(&mut self, path: &str) -> i32 {
        self.call(op::SYNC, |w| {
            w.ustring(path);
        })
        .expect("sync reply")
        .err
    }

    pub fn ping(&mut self) -> Option<Resp> {
        self.call_xid(-2, op::PING, |_| {})
    }

    /// multi: returns one (type, err) per result.
    pub fn multi(&mut self, ops: impl FnOnce(&mut Writer)) -> (i32, Vec<(i32, i32)>) {
        let r = self
            .call(op::MULTI, |w| {
                ops(w);
                w.int(-1).boolean(true).int(-1);
            })
            .expect("multi reply");
        (r.err, parse_multi(&r.body))
    }
}

/// Parses a MultiResponse into (type, err) pairs (bodies skipped).
pub fn parse_multi(b: &[u8]) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut i = b;
    loop {
        let (r, t) = jute::int(i).expect("type");
        let (r, done) = jute::boolean(r).expect("done");
        let (r, err) = jute::int(r).expect("err");
        if done {
            return out;
        }
        let r = match t {
            op::CREATE => jute::ustring(r).expect("path").0,
            op::CREATE2 => {
                let (r, _) = jute::ustring(r).expect("path");
                jute::stat(r).expect("stat").0
            }
            op::SET_DATA => jute::stat(r).expect("stat").0,
            op::GET_DATA => {
                let (r, _) = jute::buffer(r).expect("data");
                jute::stat(r).expect("stat").0
            }
            op::GET_CHILDREN => jute::string_vec(r).expect("children").0,
            -1 => jute::int(r).expect("err body").0,
            _ => r,
        };
        out.push((t, err));
        i = r;
    }
}

/// A multi op header.
pub fn mh(w: &mut Writer, t: i32) -> &mut Writer {
    w.int(t).boolean(false).int(-1)
}

/// Sends `word` and returns the text answer (the conformance crate's
/// client, failing the test on an I/O error).
pub fn four_letter(addr: SocketAddr, word: &str) -> String {
    janus_conformance::reference::four_letter(addr, word)
        .unwrap_or_else(|e| panic!("four-letter word {word}: {e}"))
}

/// Decodes a ConnectRequest to check our own encoder in tests.
pub fn decode_connect(b: &[u8]) -> ConnectRequest {
    ConnectRequest::decode(b).expect("connect request")
}

/// A CA and, signed by it, the server's certificate (127.0.0.1) and
/// client certificates with the given subjects (O then CN, so Java writes
/// them `CN=...,O=acme`), as `<name>.pem`/`<name>.key` (and both in `<name>.both.pem`) in `dir`,
/// with the CA in `ca.pem`.
pub fn write_x509_certs(dir: &std::path::Path, clients: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test ca");
    let ca = ca.self_signed(&ca_key).expect("ca");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    let leaf = |name: &str, sans: Vec<String>, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "acme");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca, &ca_key).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
        // Java's PEM key store wants the key and the chain in one file.
        std::fs::write(
            dir.join(format!("{name}.both.pem")),
            format!("{}{}", key.serialize_pem(), cert.pem()),
        )
        .expect("write");
    };
    leaf(
        "server",
        vec!["127.0.0.1".into(), "localhost".into()],
        "server",
    );
    for c in clients {
        leaf(c, Vec::new(), c);
    }
}

/// A janus whose ZooKeeper secure port verifies client certificates
/// (`ca.pem`, `server.pem`, `server.key` in `certs`, as
/// [`write_x509_certs`] writes them), with `super_user` as the x509
/// superuser. Returns janus and the secure port's address.
pub fn janus_with_client_certs(
    certs: &std::path::Path,
    super_user: &str,
) -> (janus_conformance::harness::Janus, SocketAddr) {
    let secure = SocketAddr::from(([127, 0, 0, 1], janus_conformance::harness::free_port()));
    let p = |f: &str| certs.join(f).display().to_string();
    let j = janus_conformance::harness::Janus::start_with(&[
        "--listen-zk-secure-addr",
        &secure.to_string(),
        "--zk-cert-file",
        &p("server.pem"),
        "--zk-key-file",
        &p("server.key"),
        "--zk-trusted-ca-file",
        &p("ca.pem"),
        "--zk-client-cert-auth",
        "--zk-x509-super-user",
        super_user,
    ]);
    (j, secure)
}
