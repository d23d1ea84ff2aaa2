//! srvr and mntr on a multi-member cluster name each member's state as
//! ZooKeeper does (`Mode: leader` / `follower` / `observer`, the same in
//! `zk_server_state`), from core's raft role; a one-member janus stays
//! `standalone`, as ZooKeeper without a dynamic configuration.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, MemberAddOptions};
use janus_conformance::cluster::Cluster;
use janus_conformance::harness::Janus;
use janus_conformance::reference::four_letter;

/// `Mode:` of srvr and `zk_server_state` of mntr of member `addr`.
fn modes(addr: std::net::SocketAddr) -> (String, String) {
    let find = |word: &str, prefix: &str| {
        four_letter(addr, word)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .unwrap_or_default()
    };
    (find("srvr", "Mode: "), find("mntr", "zk_server_state\t"))
}

/// Polls until `want(i)` holds for the modes of every member `i` in
/// `members` (same in srvr and mntr), returning the modes.
fn wait_modes(c: &Cluster, members: &[usize], want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<(String, String)> = members.iter().map(|&i| modes(c.members[i].zk)).collect();
        let srvr: Vec<String> = got.iter().map(|(s, _)| s.clone()).collect();
        if got.iter().all(|(s, m)| s == m) && want(&srvr) {
            return srvr;
        }
        assert!(
            Instant::now() < deadline,
            "modes (srvr, mntr) never settled: {got:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(v: &[String], m: &str) -> usize {
    v.iter().filter(|x| *x == m).count()
}

#[test]
fn one_member_is_standalone() {
    let j = Janus::start();
    assert_eq!(
        modes(j.zk_addr()),
        ("standalone".to_string(), "standalone".to_string())
    );
}

#[test]
fn three_members_are_a_leader_and_followers_and_a_learner_an_observer() {
    let mut c = Cluster::start(3);
    let m = wait_modes(&c, &[0, 1, 2], |m| {
        count(m, "leader") == 1 && count(m, "follower") == 2
    });
    let leader = m.iter().position(|x| x == "leader").expect("a leader");
    let t = Instant::now();

    // A new leader after the old one stops: still one leader, the rest
    // following.
    c.pause(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    wait_modes(&c, &others, |m| {
        count(m, "leader") == 1 && count(m, "follower") == 1
    });
    c.resume(leader);
    wait_modes(&c, &[0, 1, 2], |m| {
        count(m, "leader") == 1 && count(m, "follower") == 2
    });
    println!("failover checked in {:?}", t.elapsed());
    let t = Instant::now();

    // A learner is an observer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ni = c.prepare_member("m3");
    let peer = c.members[ni].peer_url();
    let eps = c.etcd_endpoints()[..3].to_vec();
    rt.block_on(async {
        let opts = ConnectOptions::new()
            .with_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(2));
        let mut admin = Client::connect(eps, Some(opts))
            .await
            .expect("etcd connect");
        admin
            .member_add([peer], Some(MemberAddOptions::new().with_is_learner()))
            .await
            .expect("member add");
    });
    c.start_joining(ni);
    let m = wait_modes(&c, &[0, 1, 2, 3], |m| m[3] == "observer");
    println!("observer seen in {:?}", t.elapsed());
    assert_eq!(count(&m, "leader"), 1, "{m:?}");
    assert_eq!(count(&m, "follower"), 2, "{m:?}");
}
