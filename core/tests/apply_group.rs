//! Applying a group of entries into one store commit (D10) decides exactly
//! what applying them one commit each decides: same results, same store
//! contents, same state after a reload; and a proposal committed twice runs
//! once either way.

use std::sync::Arc;

use janus_core::engine::{Engine, Space};
use janus_core::kv::{DeleteRangeRequest, PutRequest};
use janus_core::state::State;
use janus_core::znode::{Acl, CreateMode, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::{Applied, Command, CommandResult, Proposal};

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        prev_kv: true,
        ..Default::default()
    })
}

fn create(path: &str, mode: CreateMode) -> ZkOp {
    ZkOp::Create {
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl: Acl::open(),
        mode,
        ttl_ms: 0,
    }
}

fn zk(ops: Vec<ZkOp>, multi: bool) -> Command {
    Command::Zk {
        session: 0,
        auth: Vec::new(),
        ops,
        multi,
        conn: 0,
        seq: 0,
    }
}

/// Later commands read what earlier ones of the same group wrote (a put's
/// previous value, a parent's sequence counter, a node's version); one
/// multi fails and must leave nothing behind; one proposal comes twice.
fn proposals() -> Vec<Proposal> {
    let commands = vec![
        put("/a", "1"),
        put("/a", "2"),
        zk(vec![create("/p", CreateMode::Persistent)], false),
        zk(
            vec![create("/p/s-", CreateMode::PersistentSequential)],
            false,
        ),
        zk(
            vec![
                create("/p/s-", CreateMode::PersistentSequential),
                ZkOp::Check {
                    path: "/p".into(),
                    version: 7,
                },
            ],
            true,
        ),
        zk(
            vec![create("/p/s-", CreateMode::PersistentSequential)],
            false,
        ),
        zk(
            vec![ZkOp::SetData {
                path: "/p".into(),
                data: Some(b"x".to_vec()),
                version: 0,
            }],
            false,
        ),
        Command::DeleteRange(DeleteRangeRequest {
            key: b"/a".to_vec(),
            range_end: Vec::new(),
            prev_kv: true,
        }),
        put("/a", "3"),
    ];
    let mut out: Vec<Proposal> = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| Proposal {
            proposer: 1,
            epoch: 99,
            request_id: i as u64 + 1,
            now_ms: 1_000 + i as i64,
            command,
        })
        .collect();
    // A copy of the fourth (a sequential create) committed again later.
    out.insert(6, out[3].clone());
    out
}

fn dump(engine: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for s in [
        Space::Meta,
        Space::Revs,
        Space::Leases,
        Space::Znodes,
        Space::Tree,
    ] {
        for item in engine.scan_all(s) {
            let (k, v) = item.expect("scan the store");
            all.push((
                format!("{s:?}/")
                    .into_bytes()
                    .into_iter()
                    .chain(k)
                    .collect(),
                v,
            ));
        }
    }
    all
}

/// Results, store contents, and (revision, applied index) after a reload.
type Outcome = (Vec<Option<Applied>>, Vec<(Vec<u8>, Vec<u8>)>, i64, u64);

fn run(grouped: bool) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let results = {
        let engine = Arc::new(Engine::open(dir.path()).expect("open store"));
        let mut st = State::load(Arc::clone(&engine)).expect("load state");
        if grouped {
            st.begin_group();
        }
        let mut results = Vec::new();
        for (i, p) in proposals().iter().enumerate() {
            results.push(st.apply(p, i as u64 + 1).expect("apply"));
        }
        if grouped {
            st.end_group().expect("commit the group");
        }
        results
    };
    let engine = Arc::new(Engine::open(dir.path()).expect("reopen store"));
    let st = State::load(Arc::clone(&engine)).expect("reload state");
    (results, dump(&engine), st.revision, st.applied_index)
}

#[test]
fn grouped_apply_matches_apply_one_by_one() {
    let one = run(false);
    let group = run(true);
    assert_eq!(one.0, group.0, "results differ");
    assert_eq!(one.1, group.1, "store contents differ");
    assert_eq!((one.2, one.3), (group.2, group.3), "revision/applied index");
    assert_eq!(group.3, proposals().len() as u64);
    // The copy of the sequential create did not run again.
    assert!(group.0[6].is_none(), "duplicate applied: {:?}", group.0[6]);
    // Two sequential creates ran (the failed multi consumed nothing), with
    // consecutive suffixes.
    let created: Vec<String> = group
        .0
        .iter()
        .flatten()
        .filter_map(|a| match &a.result {
            CommandResult::Zk(ZkWriteResult::Applied(r)) => match r.first() {
                Some(ZkOpResult::Create { path, .. }) if path.starts_with("/p/s-") => {
                    Some(path.clone())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        vec!["/p/s-0000000000".to_string(), "/p/s-0000000001".to_string()]
    );
}
