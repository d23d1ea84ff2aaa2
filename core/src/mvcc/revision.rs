//! Revisions and their on-disk key encoding.

/// A write's position in history: (store revision, index inside the command).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    pub main: i64,
    pub sub: u32,
}

impl Rev {
    pub fn new(main: i64, sub: u32) -> Rev {
        Rev { main, sub }
    }

    /// 12 bytes, big-endian, so byte order is revision order.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&(self.main as u64).to_be_bytes());
        b.extend_from_slice(&self.sub.to_be_bytes());
        b
    }

    /// Decodes [`Rev::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Rev> {
        let main = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?) as i64;
        let sub = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
        (b.len() == 12).then_some(Rev { main, sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_roundtrip_and_order() {
        let a = Rev::new(5, 2);
        let b = Rev::new(300, 0);
        assert_eq!(Rev::from_bytes(&a.to_bytes()), Some(a));
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Rev::from_bytes(&[1, 2, 3]), None);
    }
}
