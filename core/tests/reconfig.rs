//! Whole-configuration membership changes (ZooKeeper's reconfig): the
//! checks of `Node::reconfig_plan` in their order, and a plan carried out
//! through the same conf changes as etcd's Cluster API, with the
//! configuration version and the members' ZooKeeper attributes surviving a
//! restart.

mod common;

use janus_core::{CoreError, Joining, MembershipError, ReconfigRequest, ZkServer};

fn observer(port: u16, sid: u64) -> Joining {
    Joining {
        peer_urls: vec![format!("http://127.0.0.1:{port}")],
        is_learner: true,
        zk: ZkServer {
            server_id: sid,
            election_port: port + 1,
            client_addr: format!("127.0.0.1:{}", port + 2),
        },
    }
}

fn refused(r: Result<janus_core::ReconfigPlan, CoreError>) -> Option<MembershipError> {
    match r {
        Err(CoreError::Membership(e)) => Some(e),
        _ => None,
    }
}

#[tokio::test]
async fn plans_are_checked_in_zookeepers_order() {
    let t = common::start();
    t.read_barrier().await.expect("barrier");
    let version = t.config_version();
    let req =
        |from: Option<u64>, joining: Vec<Joining>, leaving: Vec<u64>, min: usize| ReconfigRequest {
            from_version: from,
            leaving,
            joining,
            min_voters: min,
        };
    // The version first, whatever else is wrong.
    assert_eq!(
        refused(t.reconfig_plan(&req(Some(version + 1), vec![], vec![t.member_id()], 2))),
        Some(MembershipError::BadConfigVersion {
            asked: version + 1,
            current: version
        })
    );
    // Two joiners on one address.
    assert_eq!(
        refused(t.reconfig_plan(&req(
            None,
            vec![observer(9000, 5), observer(9000, 6)],
            vec![],
            1
        ))),
        Some(MembershipError::PeerUrlExists)
    );
    // An observer leaves one voter: ZooKeeper's two-voter rule refuses it.
    assert_eq!(
        refused(t.reconfig_plan(&req(None, vec![observer(9000, 5)], vec![], 2))),
        Some(MembershipError::TooFewVoters(2))
    );
    // Removing the only voter.
    assert_eq!(
        refused(t.reconfig_plan(&req(None, vec![], vec![t.member_id()], 1))),
        Some(MembershipError::TooFewVoters(1))
    );
    // A new voter beside one synced voter: no majority of synced voters.
    let mut voter = observer(9100, 7);
    voter.is_learner = false;
    assert_eq!(
        refused(t.reconfig_plan(&req(None, vec![voter], vec![], 1))),
        Some(MembershipError::NoQuorum)
    );
    // Leaving an id that is no member changes nothing.
    let plan = t
        .reconfig_plan(&req(None, vec![], vec![12345], 1))
        .expect("plan");
    assert!(plan.is_empty());
}

#[tokio::test]
async fn an_observer_joins_and_leaves() {
    let t = common::start();
    t.read_barrier().await.expect("barrier");
    let before = t.config_version();
    let plan = t
        .reconfig_plan(&ReconfigRequest {
            from_version: Some(before),
            leaving: vec![],
            joining: vec![observer(9200, 100)],
            min_voters: 1,
        })
        .expect("plan");
    let members = t.reconfigure(plan).await.expect("reconfigure");
    assert_eq!(members.len(), 2);
    let learner = members
        .iter()
        .find(|m| m.is_learner)
        .expect("the observer is a learner")
        .clone();
    assert_eq!(learner.peer_urls, vec!["http://127.0.0.1:9200".to_string()]);
    assert_eq!(
        t.zk_servers().get(&learner.id).map(|z| z.server_id),
        Some(100)
    );
    let added = t.config_version();
    assert!(added > before, "{added} > {before}");

    // The table and the version survive a restart.
    let t = common::restart(t);
    t.read_barrier().await.expect("barrier");
    assert_eq!(t.config_version(), added);
    assert_eq!(
        t.zk_servers().get(&learner.id).map(|z| z.election_port),
        Some(9201)
    );

    let plan = t
        .reconfig_plan(&ReconfigRequest {
            from_version: Some(added),
            leaving: vec![learner.id],
            joining: vec![],
            min_voters: 1,
        })
        .expect("plan");
    let members = t.reconfigure(plan).await.expect("reconfigure");
    assert_eq!(members.len(), 1);
    assert!(t.config_version() > added);
    assert!(!t.zk_servers().contains_key(&learner.id));
}
