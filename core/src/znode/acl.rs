//! ZooKeeper ACL rules: permission checks, ACL validation/expansion
//! (PrepRequestProcessor.fixupACL) and digest identities.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::{Acl, Id};
use crate::ZkError;

/// `user:base64(sha1("user:password"))`, the id a `digest` auth packet
/// `user:password` authenticates as.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The scheme of ZooKeeper's superuser identity (`Id("super", "")`).
pub const SUPER: &str = "super";

/// Whether `auth` may do `perm` on a node with `acl` (ZooKeeper's checkACL:
/// the superuser — a `super` identity, see `--zk-super-digest` — may do
/// everything; an empty ACL allows everything).
pub fn allowed(acl: &[Acl], perm: i32, auth: &[Id]) -> bool {
    if auth.iter().any(|w| w.scheme == SUPER) || acl.is_empty() {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return true;
        }
        auth.iter().any(|who| {
            who.scheme == a.id.scheme
                && match a.id.scheme.as_str() {
                    "ip" => ip_matches(&a.id.id, &who.id),
                    _ => who.id == a.id.id,
                }
        })
    })
}

pub fn check(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), ZkError> {
    if allowed(acl, perm, auth) {
        Ok(())
    } else {
        Err(ZkError::NoAuth)
    }
}

/// Validates an ACL from a create/setACL and expands the `auth` scheme into
/// the requester's authenticated ids, dropping duplicates.
pub fn fixup(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ZkError> {
    if acl.is_empty() {
        return Err(ZkError::InvalidAcl);
    }
    let mut out: Vec<Acl> = Vec::new();
    let mut push = |a: Acl| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for a in acl {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => push(a.clone()),
            "auth" => {
                let mut any = false;
                // Only identities of an authenticating provider: not the
                // connection's ip, not the superuser mark (no provider).
                for who in auth
                    .iter()
                    .filter(|w| w.scheme != "ip" && w.scheme != SUPER)
                {
                    any = true;
                    push(Acl {
                        perms: a.perms,
                        id: who.clone(),
                    });
                }
                if !any {
                    return Err(ZkError::InvalidAcl);
                }
            }
            "digest" if a.id.id.split(':').count() == 2 => push(a.clone()),
            "ip" if parse_cidr(&a.id.id).is_some() => push(a.clone()),
            // SASLAuthenticationProvider.isValid: a Kerberos-shaped name
            // (`name[/host][@REALM]`). janus always has the SASL provider,
            // as a ZooKeeper configured with `authProvider.N` for it.
            "sasl" if sasl_name_valid(&a.id.id) => push(a.clone()),
            // X509AuthenticationProvider.isValid: a distinguished name.
            // janus always has the x509 provider (on its secure port).
            super::x509::SCHEME if super::x509::valid_name(&a.id.id) => push(a.clone()),
            _ => return Err(ZkError::InvalidAcl),
        }
    }
    Ok(out)
}

fn sasl_name_valid(id: &str) -> bool {
    let (name, realm) = id.split_once('@').unwrap_or((id, ""));
    !realm.contains(['@', '/']) && name.matches('/').count() <= 1
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u32)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, b)) => (ip, Some(b.parse::<u32>().ok()?)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

/// Whether address `who` lies in the ACL's `ip[/bits]`.
fn ip_matches(acl_id: &str, who: &str) -> bool {
    let (Some((net, bits)), Ok(addr)) = (parse_cidr(acl_id), who.parse::<std::net::IpAddr>())
    else {
        return false;
    };
    let to_bits = |ip: std::net::IpAddr| -> u128 {
        match ip {
            std::net::IpAddr::V4(v) => u32::from(v) as u128,
            std::net::IpAddr::V6(v) => u128::from(v),
        }
    };
    if net.is_ipv4() != addr.is_ipv4() {
        return false;
    }
    let width = if net.is_ipv4() { 32 } else { 128 };
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (to_bits(net) >> shift) == (to_bits(addr) >> shift)
}

#[cfg(test)]
mod tests {
    use super::super::perms;
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // DigestAuthenticationProvider.generateDigest("super:test")
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn permissions() {
        let me = Id::new("digest", &digest_id("u:p"));
        let acl = vec![Acl {
            perms: perms::READ,
            id: me.clone(),
        }];
        assert!(allowed(&acl, perms::READ, std::slice::from_ref(&me)));
        assert!(!allowed(&acl, perms::WRITE, std::slice::from_ref(&me)));
        assert!(!allowed(&acl, perms::READ, &[]));
        let ip = vec![Acl {
            perms: perms::ALL,
            id: Id::new("ip", "10.0.0.0/8"),
        }];
        assert!(allowed(&ip, perms::READ, &[Id::new("ip", "10.1.2.3")]));
        assert!(!allowed(&ip, perms::READ, &[Id::new("ip", "11.1.2.3")]));
    }

    #[test]
    fn fixup_expands_auth() {
        let me = Id::new("digest", "u:x");
        let acl = vec![Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        }];
        assert_eq!(fixup(&acl, &[]), Err(ZkError::InvalidAcl));
        assert_eq!(fixup(&acl, std::slice::from_ref(&me)).unwrap()[0].id, me);
        assert_eq!(fixup(&[], &[]), Err(ZkError::InvalidAcl));
        let bad = vec![Acl {
            perms: perms::ALL,
            id: Id::new("world", "someone"),
        }];
        assert_eq!(fixup(&bad, &[]), Err(ZkError::InvalidAcl));
    }
}
