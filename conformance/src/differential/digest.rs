//! ZooKeeper's digest ACL id, computed client-side as ZooKeeper's
//! `DigestAuthenticationProvider.generateDigest` does:
//! `user:base64(sha1("user:password"))`.

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_zookeeper() {
        // ZooKeeper's docs: generateDigest("super:test").
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }
}
