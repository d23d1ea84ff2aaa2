//! Real network partitions between cluster members: each member runs in a
//! network namespace of its own, joined to the host by a veth pair on one
//! bridge; clients stay in the host namespace and reach every member
//! through the bridge. A cut from member A to member B is a blackhole route
//! for B's address inside A's namespace, so A's packets to B are dropped
//! while client traffic (from the bridge address) is untouched; a cut in
//! one direction only is one-way loss (TCP then fails both ways, as with
//! Jepsen's one-way drops, but raft's two directions see different
//! failures).
//!
//! Why routes rather than `tc netem` or iptables: the kernel here has no
//! qdisc modules (`tc qdisc add ... netem|prio` answers "unknown qdisc"),
//! and routes need nothing beyond iproute2.
//!
//! Every namespace, link and bridge is created by [`Net::create`] and
//! removed on drop. Needs root and `ip netns`; [`Net::available`] says
//! whether both are there.

use std::net::Ipv4Addr;
use std::process::Command;

/// The namespaces of one run.
pub struct Net {
    tag: String,
    subnet: u8,
    members: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Whether this process can create namespaces: `None` if it can, else
    /// the reason it cannot.
    pub fn available() -> Option<String> {
        // The effective uid, read from /proc (no libc dependency).
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        if !root {
            return Some("not running as root".into());
        }
        let probe = format!("jcprobe{}", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("`ip netns` unavailable: {e}")),
        }
    }

    /// Creates a bridge and `members` namespaces, each with a veth pair on
    /// the bridge and the address `10.231.<subnet>.<i + 1>`; the host side
    /// of the bridge is `.254`.
    pub fn create(members: usize) -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("jc{}", pid % 100_000),
            subnet: (pid % 250) as u8,
            members: 0,
        };
        let mut net = net;
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_addr()),
            "dev",
            &br,
        ])?;
        ip(&["link", "set", &br, "up"])?;
        for _ in 0..members {
            net.add_member()?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace of member `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("{}m{i}", self.tag)
    }

    /// The address of member `i`.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, i as u8 + 1)
    }

    fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 254)
    }

    /// Number of member namespaces.
    pub fn len(&self) -> usize {
        self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// Adds the namespace of one more member; returns its index.
    pub fn add_member(&mut self) -> Result<usize, String> {
        let i = self.members;
        let (ns, host, inner) = (
            self.ns(i),
            format!("{}h{i}", self.tag),
            format!("{}n{i}", self.tag),
        );
        ip(&["netns", "add", &ns])?;
        self.members += 1;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
        ip(&["link", "set", &inner, "netns", &ns])?;
        ip(&["link", "set", &host, "master", &self.bridge()])?;
        ip(&["link", "set", &host, "up"])?;
        let addr = format!("{}/24", self.addr(i));
        let host_addr = self.host_addr().to_string();
        for args in [
            vec!["addr", "add", addr.as_str(), "dev", inner.as_str()],
            vec!["link", "set", inner.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", host_addr.as_str()],
        ] {
            let mut full = vec!["-n", ns.as_str()];
            full.extend(args);
            ip(&full)?;
        }
        Ok(i)
    }

    /// Drops every packet from member `from` to member `to`.
    pub fn cut(&self, from: usize, to: usize) -> Result<(), String> {
        let dst = format!("{}/32", self.addr(to));
        ip(&["-n", &self.ns(from), "route", "replace", "blackhole", &dst])
    }

    /// Cuts both directions between every member of `a` and every member
    /// of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<(), String> {
        for &x in a {
            for &y in b {
                self.cut(x, y)?;
                self.cut(y, x)?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), String> {
        for from in 0..self.members {
            for to in 0..self.members {
                if from != to {
                    let dst = format!("{}/32", self.addr(to));
                    // Absent routes answer an error: ignore it.
                    let _ = ip(&["-n", &self.ns(from), "route", "del", "blackhole", &dst]);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.members {
            let _ = ip(&["link", "del", &format!("{}h{i}", self.tag)]);
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
