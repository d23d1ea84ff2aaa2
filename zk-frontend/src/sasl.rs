//! SASL authentication with the DIGEST-MD5 mechanism (RFC 2831), as
//! ZooKeeper 3.8 serves it on the client port: the client's `sasl` packets
//! (opcode 102) carry the exchange, users and passwords come from the
//! `Server` section of a JAAS file (`user_<name>="<password>"`, ZooKeeper's
//! `DigestLoginModule`), and a client that completes it gets the identity
//! `sasl:<name>` on its connection, which znode ACLs of the `sasl` scheme
//! match. A failed exchange is answered AuthFailed and the connection
//! closes, as ZooKeeper does.
//!
//! The server side follows Java's `DigestMD5Server` with ZooKeeper's
//! settings: realm and server name `zk-sasl-md5`, protocol `zookeeper`,
//! quality of protection `auth` only (so the challenge names no `qop`, as
//! Java's leaves out the default), algorithm `md5-sess`, a nonce of 30
//! random bytes in base64, nonce count 1.
//!
//! The stock Java client always sends an `authzid` (its login name), and
//! RFC 2831 puts a present authzid into A1 of both the response and
//! `rspauth`. ZooKeeper's `SaslServerCallbackHandler` authorizes any
//! authzid and names the connection after the authentication id (the
//! `username`), so janus does the same.

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// ZooKeeper's hard-coded realm and server name for DIGEST-MD5.
pub const REALM: &str = "zk-sasl-md5";
const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

/// One connection's exchange.
#[derive(Debug, Default)]
pub enum Exchange {
    /// Nothing sent yet: the next token (empty for DIGEST-MD5) gets the
    /// challenge.
    #[default]
    Start,
    /// The challenge went out with this nonce.
    Challenged { nonce: String },
    /// Authenticated (further tokens are refused).
    Done,
}

/// What the server answers one client token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token back; the exchange goes on.
    Continue(Vec<u8>),
    /// Send this token back; the client is now `user`.
    Authenticated { user: String, token: Vec<u8> },
    /// Refuse: AuthFailed, then close.
    Failed,
}

/// Users of the `Server` section of a JAAS configuration text: every
/// `user_<name>="<password>"` option of `DigestLoginModule`.
pub fn jaas_users(text: &str) -> Vec<(String, String)> {
    let Some(start) = text.find("Server") else {
        return Vec::new();
    };
    let body = &text[start..];
    let Some(open) = body.find('{') else {
        return Vec::new();
    };
    let end = body[open..].find("};").map_or(body.len(), |e| open + e);
    let mut users = Vec::new();
    let mut rest = &body[open..end];
    while let Some(i) = rest.find("user_") {
        rest = &rest[i + 5..];
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let Some(quoted) = after.strip_prefix('"') else {
            continue;
        };
        let Some((password, tail)) = quoted.split_once('"') else {
            break;
        };
        users.push((name.trim().to_string(), password.to_string()));
        rest = tail;
    }
    users
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn md5(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

/// `key=value` pairs of a digest message; values may be quoted with
/// backslash escapes.
fn parse(msg: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = msg.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            return out;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (true, c) => {
                        val.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    (false, c) => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        out.push((key.trim().to_ascii_lowercase(), val.trim().to_string()));
    }
}

/// The client's values that enter RFC 2831's digests.
struct Digest<'a> {
    user: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    qop: &'a str,
    /// Present: appended to A1 (`":" authzid`), absent: A1 ends at cnonce.
    authzid: Option<&'a str>,
}

/// RFC 2831's response value (and, with `a2_prefix` empty, `rspauth`).
fn response_value(d: &Digest<'_>, a2_prefix: &str) -> String {
    let key = md5(&[
        d.user.as_bytes(),
        b":",
        REALM.as_bytes(),
        b":",
        d.password.as_bytes(),
    ]);
    let mut a1_parts: Vec<&[u8]> = vec![&key, b":", d.nonce.as_bytes(), b":", d.cnonce.as_bytes()];
    if let Some(z) = d.authzid {
        a1_parts.extend([b":".as_slice(), z.as_bytes()]);
    }
    let a1 = md5(&a1_parts);
    let a2 = md5(&[a2_prefix.as_bytes(), b":", DIGEST_URI.as_bytes()]);
    hex(&md5(&[
        hex(&a1).as_bytes(),
        b":",
        d.nonce.as_bytes(),
        b":",
        d.nc.as_bytes(),
        b":",
        d.cnonce.as_bytes(),
        b":",
        d.qop.as_bytes(),
        b":",
        hex(&a2).as_bytes(),
    ]))
}

impl Exchange {
    /// Takes one client token.
    pub fn step(&mut self, users: &[(String, String)], token: &[u8]) -> Step {
        match std::mem::replace(self, Exchange::Done) {
            Exchange::Start => {
                let nonce =
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 30]>());
                let challenge =
                    format!("realm=\"{REALM}\",nonce=\"{nonce}\",charset=utf-8,algorithm=md5-sess");
                *self = Exchange::Challenged { nonce };
                Step::Continue(challenge.into_bytes())
            }
            Exchange::Challenged { nonce } => {
                let fields = parse(&String::from_utf8_lossy(token));
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.as_str())
                };
                let (Some(user), Some(cnonce), Some(nc), Some(resp)) =
                    (get("username"), get("cnonce"), get("nc"), get("response"))
                else {
                    return Step::Failed;
                };
                let qop = get("qop").unwrap_or("auth");
                let realm_ok = get("realm").is_none_or(|r| r == REALM);
                let uri_ok = get("digest-uri") == Some(DIGEST_URI);
                // Java's server takes only the first use of its nonce.
                let nc_ok = u32::from_str_radix(nc, 16) == Ok(1);
                if get("nonce") != Some(nonce.as_str())
                    || qop != "auth"
                    || !realm_ok
                    || !uri_ok
                    || !nc_ok
                {
                    return Step::Failed;
                }
                let Some((_, password)) = users.iter().find(|(u, _)| u == user) else {
                    return Step::Failed;
                };
                let d = Digest {
                    user,
                    password,
                    nonce: &nonce,
                    cnonce,
                    nc,
                    qop,
                    authzid: get("authzid"),
                };
                if response_value(&d, "AUTHENTICATE") != resp.to_ascii_lowercase() {
                    return Step::Failed;
                }
                let rspauth = response_value(&d, "");
                Step::Authenticated {
                    user: user.to_string(),
                    token: format!("rspauth={rspauth}").into_bytes(),
                }
            }
            Exchange::Done => Step::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_server_section_users() {
        let text = "\nServer {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    user_super=\"super_secret\"\n    user_jaasuser=\"jaas_password\";\n};\nClient {\n  user_x=\"y\";\n};";
        assert_eq!(
            jaas_users(text),
            vec![
                ("super".to_string(), "super_secret".to_string()),
                ("jaasuser".to_string(), "jaas_password".to_string())
            ]
        );
    }

    /// A client computed as RFC 2831 (and puresasl) does.
    fn client_response(challenge: &[u8], user: &str, password: &str) -> Vec<u8> {
        client_response_nc(challenge, user, password, "00000001")
    }

    /// [`client_response`] with nonce count `nc`.
    fn client_response_nc(challenge: &[u8], user: &str, password: &str, nc: &str) -> Vec<u8> {
        let fields = parse(&String::from_utf8_lossy(challenge));
        let nonce = &fields.iter().find(|(k, _)| k == "nonce").unwrap().1;
        let d = Digest {
            user,
            password,
            nonce,
            cnonce: "abc",
            nc,
            qop: "auth",
            authzid: None,
        };
        let r = response_value(&d, "AUTHENTICATE");
        format!(
            "qop=auth,realm=\"{REALM}\",username=\"{user}\",nonce=\"{nonce}\",cnonce=\"abc\",nc={nc},digest-uri=\"{DIGEST_URI}\",response={r}"
        )
        .into_bytes()
    }

    /// One exchange between the stock Java client and ZooKeeper 3.8
    /// (user alice, password secret), as captured on the wire: the client
    /// sends an authzid, which enters A1 of both digests.
    #[test]
    fn java_client_vector_with_authzid() {
        let d = Digest {
            user: "alice",
            password: "secret",
            nonce: "oNL+se4fdoONxtFDdpr+P8wgVIBWRECu54K+er5H",
            cnonce: "6lRPpUsmdKMoapOmJq2L+NO7VRT39fezhZyJhE8E",
            nc: "00000001",
            qop: "auth",
            authzid: Some("alice"),
        };
        assert_eq!(
            response_value(&d, "AUTHENTICATE"),
            "94e00a2b9856c864bf47fc522147a032"
        );
        assert_eq!(response_value(&d, ""), "fadec09b23070868f92221847c0ec32b");
        let without = Digest { authzid: None, ..d };
        assert_ne!(
            response_value(&without, "AUTHENTICATE"),
            "94e00a2b9856c864bf47fc522147a032"
        );
    }

    /// The challenge has ZooKeeper's shape: no qop (auth is the default),
    /// a 40-character base64 nonce (30 bytes).
    #[test]
    fn challenge_shape_matches_zookeeper() {
        let mut ex = Exchange::default();
        let Step::Continue(ch) = ex.step(&[], b"") else {
            panic!("no challenge")
        };
        let ch = String::from_utf8(ch).expect("utf-8");
        let fields = parse(&ch);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["realm", "nonce", "charset", "algorithm"], "{ch}");
        assert_eq!(fields[1].1.len(), 40, "{ch}");
    }

    #[test]
    fn digest_md5_exchange() {
        let users = vec![("jaasuser".to_string(), "jaas_password".to_string())];
        let mut ex = Exchange::default();
        let Step::Continue(ch) = ex.step(&users, b"") else {
            panic!("no challenge")
        };
        let resp = client_response(&ch, "jaasuser", "jaas_password");
        match ex.step(&users, &resp) {
            Step::Authenticated { user, token } => {
                assert_eq!(user, "jaasuser");
                assert!(token.starts_with(b"rspauth="));
            }
            other => panic!("{other:?}"),
        }
        let mut bad = Exchange::default();
        let Step::Continue(ch) = bad.step(&users, b"") else {
            panic!("no challenge")
        };
        let resp = client_response(&ch, "jaasuser", "wrong");
        assert_eq!(bad.step(&users, &resp), Step::Failed);

        // A nonce count other than 1 (a replayed response) is refused.
        let mut replay = Exchange::default();
        let Step::Continue(ch) = replay.step(&users, b"") else {
            panic!("no challenge")
        };
        let resp = client_response_nc(&ch, "jaasuser", "jaas_password", "00000002");
        assert_eq!(replay.step(&users, &resp), Step::Failed);
    }
}
