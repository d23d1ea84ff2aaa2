//! ZooKeeper path rules (PathUtils.validatePath) and path arithmetic.
//!
//! A key is visible to ZooKeeper only if it is a valid path (D1).

use crate::ZkError;

/// Whether `key` is a valid ZooKeeper path (so part of the tree).
pub fn is_valid(key: &[u8]) -> bool {
    visible(key).is_some()
}

/// `key` as the path a ZooKeeper client sees, or `None` for a key that is
/// not a valid path and so is invisible to ZooKeeper (D1): getChildren
/// does not list it and no ZooKeeper watch fires for it.
pub fn visible(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key)
        .ok()
        .filter(|s| validate(s).is_ok())
}

/// ZooKeeper's `PathUtils.validatePath`: absolute, no empty, `.` or `..`
/// segments, no trailing `/` (except the root), no control or reserved
/// characters.
pub fn validate(path: &str) -> Result<(), ZkError> {
    if !path.starts_with('/') {
        return Err(ZkError::BadArguments);
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(ZkError::BadArguments);
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ZkError::BadArguments);
        }
    }
    let bad = |c: char| {
        let c = c as u32;
        c == 0
            || (c > 0 && c <= 0x1f)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || (0xfff0..=0xffff).contains(&c)
    };
    if path.chars().any(bad) {
        return Err(ZkError::BadArguments);
    }
    Ok(())
}

/// The parent of a valid non-root path (`/a` → `/`, `/a/b` → `/a`).
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    if path == b"/" {
        return None;
    }
    let i = path.iter().rposition(|&b| b == b'/')?;
    Some(if i == 0 { &path[..1] } else { &path[..i] })
}

/// [`parent`] of a valid non-root path, as text.
pub fn parent_str(path: &str) -> Option<&str> {
    // The parent ends before a `/` (or is the root), an ASCII boundary.
    parent(path.as_bytes()).and_then(|p| path.get(..p.len()))
}

/// The last segment of a valid non-root path.
pub fn name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `parent` + `/` + `name`.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/..a", "/a b"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//a",
            "/a//b",
            "/.",
            "/a/..",
            "/a\u{0}",
            "/a\u{1}",
            "/\u{fff5}",
        ] {
            assert_eq!(validate(bad), Err(ZkError::BadArguments), "{bad:?}");
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent(b"/a"), Some(&b"/"[..]));
        assert_eq!(parent(b"/a/b"), Some(&b"/a"[..]));
        assert_eq!(parent(b"/"), None);
        assert_eq!(parent_str("/a/b"), Some("/a"));
        assert_eq!(parent_str("/a"), Some("/"));
        assert_eq!(parent_str("/"), None);
        assert_eq!(visible(b"/a/b"), Some("/a/b"));
        assert_eq!(visible(b"/a\x01"), None);
        assert_eq!(visible(b"/a/"), None);
        assert_eq!(name(b"/a/bc"), b"bc");
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/a", b"x"), b"/a/x");
    }
}
