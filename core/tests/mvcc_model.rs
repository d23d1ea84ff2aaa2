//! MVCC against a model: random sequences of put / delete range / txn /
//! compact / range, applied both to a real [`Node`] (raft log + fjall in a
//! temp dir) and to a tiny in-memory model of etcd's semantics written here
//! from etcd's documented behaviour (rpc.proto, apply.go). Every response,
//! every error and the store revision after every command must agree; at the
//! end every retained revision is read back in full, before and after a
//! restart of the node.
//!
//! Where etcd leaves a choice open the model pins core's documented choice:
//! ties of a non-key sort target keep ascending key order (reversed as a
//! whole for DESCEND; etcd's unstable sort leaves ties unordered).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use janus_core::kv::{
    in_range, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use janus_core::{Command, CommandResult, KvError, Node};
use proptest::prelude::*;

const L1: i64 = 11;
const L2: i64 = 12;
/// A lease that never exists.
const L_MISSING: i64 = 99;

// ---------------------------------------------------------------- model

type Map = BTreeMap<Vec<u8>, KeyValue>;

struct Model {
    /// `hist[r]` = the store at revision r (`hist[0]` unused, `hist[1]` empty).
    hist: Vec<Map>,
    compact: i64,
    leases: BTreeSet<i64>,
}

/// A write in progress: the txn's working copy.
struct W {
    map: Map,
    main: i64,
    wrote: bool,
}

/// Which branch each txn takes, decided before anything is written
/// (etcd's compareToPath): this txn's branch, then the nested txns of the
/// chosen branch in order.
struct TxnPath {
    ok: bool,
    nested: Vec<TxnPath>,
}

fn range_of(map: &Map, key: &[u8], end: &[u8]) -> Vec<KeyValue> {
    map.values()
        .filter(|kv| in_range(&kv.key, key, end))
        .cloned()
        .collect()
}

fn range_on(map: &Map, req: &RangeRequest) -> RangeResponse {
    let all = if !req.range_end.is_empty() && req.range_end != [0] && req.range_end <= req.key {
        Vec::new()
    } else {
        range_of(map, &req.key, &req.range_end)
    };
    let count = all.len() as i64;
    if req.count_only {
        return RangeResponse {
            kvs: Vec::new(),
            more: false,
            count,
        };
    }
    let mut kvs: Vec<KeyValue> = all
        .into_iter()
        .filter(|kv| req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        .filter(|kv| req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        .filter(|kv| req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        .filter(|kv| req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        .collect();
    let mut order = req.sort_order;
    if req.sort_target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        match req.sort_target {
            SortTarget::Key => {}
            SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
            SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
            SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
            SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
        }
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse { kvs, more, count }
}

fn compare_holds(map: &Map, c: &Compare) -> bool {
    let kvs = range_of(map, &c.key, &c.range_end);
    let one = |kv: &KeyValue| {
        use std::cmp::Ordering;
        let ord: Ordering = match &c.target {
            CompareTarget::Version(v) => kv.version.cmp(v),
            CompareTarget::Create(v) => kv.create_revision.cmp(v),
            CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
            CompareTarget::Lease(v) => kv.lease.cmp(v),
            CompareTarget::Value(v) => kv.value.cmp(v),
        };
        match c.result {
            CompareResult::Equal => ord == Ordering::Equal,
            CompareResult::NotEqual => ord != Ordering::Equal,
            CompareResult::Greater => ord == Ordering::Greater,
            CompareResult::Less => ord == Ordering::Less,
        }
    };
    if kvs.is_empty() {
        // A missing key is a zero KeyValue, but a value compare on it fails.
        return !matches!(c.target, CompareTarget::Value(_)) && one(&KeyValue::default());
    }
    kvs.iter().all(one)
}

fn txn_path(map: &Map, t: &TxnRequest) -> TxnPath {
    let ok = t.compare.iter().all(|c| compare_holds(map, c));
    let branch = if ok { &t.success } else { &t.failure };
    let nested = branch
        .iter()
        .filter_map(|op| match op {
            RequestOp::Txn(n) => Some(txn_path(map, n)),
            _ => None,
        })
        .collect();
    TxnPath { ok, nested }
}

impl Model {
    fn new() -> Model {
        Model {
            hist: vec![Map::new(), Map::new()],
            compact: 0,
            leases: [L1, L2].into(),
        }
    }

    fn rev(&self) -> i64 {
        self.hist.len() as i64 - 1
    }

    fn cur(&self) -> &Map {
        self.hist.last().unwrap()
    }

    fn read_rev(&self, r: i64) -> Result<i64, KvError> {
        if r <= 0 {
            Ok(self.rev())
        } else if r > self.rev() {
            Err(KvError::FutureRevision)
        } else if r < self.compact {
            Err(KvError::Compacted {
                compact_revision: self.compact,
            })
        } else {
            Ok(r)
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let r = self.read_rev(req.revision)?;
        Ok(range_on(&self.hist[r as usize], req))
    }

    fn begin(&self) -> W {
        W {
            map: self.cur().clone(),
            main: self.rev() + 1,
            wrote: false,
        }
    }

    fn finish(&mut self, w: W) {
        if w.wrote {
            self.hist.push(w.map);
        }
    }

    /// Apply-time checks of a put, on the state before the command.
    fn check_put(&self, p: &PutRequest) -> Result<(), KvError> {
        if p.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if p.ignore_value && !p.value.is_empty() {
            return Err(KvError::ValueProvided);
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(KvError::LeaseProvided);
        }
        if (p.ignore_value || p.ignore_lease) && !self.cur().contains_key(&p.key) {
            return Err(KvError::KeyNotFound);
        }
        if p.lease != 0 && !self.leases.contains(&p.lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    fn do_put(w: &mut W, p: &PutRequest) -> PutResponse {
        let prev = w.map.get(&p.key).cloned();
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(w.main, |k| k.create_revision),
            mod_revision: w.main,
            version: prev.as_ref().map_or(1, |k| k.version + 1),
            value: match (&prev, p.ignore_value) {
                (Some(k), true) => k.value.clone(),
                _ => p.value.clone(),
            },
            lease: match (&prev, p.ignore_lease) {
                (Some(k), true) => k.lease,
                _ => p.lease,
            },
        };
        w.map.insert(p.key.clone(), kv);
        w.wrote = true;
        PutResponse {
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn do_delete(w: &mut W, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let gone: Vec<KeyValue> =
            if !d.range_end.is_empty() && d.range_end != [0] && d.range_end <= d.key {
                Vec::new()
            } else {
                range_of(&w.map, &d.key, &d.range_end)
            };
        for kv in &gone {
            w.map.remove(&kv.key);
        }
        w.wrote |= !gone.is_empty();
        DeleteRangeResponse {
            deleted: gone.len() as i64,
            prev_kvs: if d.prev_kv { gone } else { Vec::new() },
        }
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, KvError> {
        self.check_put(p)?;
        let mut w = self.begin();
        let r = Model::do_put(&mut w, p);
        self.finish(w);
        Ok(r)
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, KvError> {
        if d.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        let mut w = self.begin();
        let r = Model::do_delete(&mut w, d);
        self.finish(w);
        Ok(r)
    }

    /// etcd checkRequests: every op of the chosen path, nested included,
    /// with `f`.
    fn check_path(
        &self,
        t: &TxnRequest,
        path: &TxnPath,
        f: &dyn Fn(&Model, &RequestOp) -> Result<(), KvError>,
    ) -> Result<(), KvError> {
        let ops = if path.ok { &t.success } else { &t.failure };
        let mut nested = path.nested.iter();
        for op in ops {
            match op {
                RequestOp::Txn(n) => self.check_path(n, nested.next().unwrap(), f)?,
                _ => f(self, op)?,
            }
        }
        Ok(())
    }

    fn run(&self, w: &mut W, t: &TxnRequest, path: &TxnPath) -> TxnResponse {
        let ops = if path.ok { &t.success } else { &t.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    // Inside a txn, "current" includes the txn's own writes;
                    // an explicit revision reads that revision's history.
                    let map = if r.revision <= 0 {
                        &w.map
                    } else {
                        &self.hist[r.revision as usize]
                    };
                    ResponseOp::Range(range_on(map, r))
                }
                RequestOp::Put(p) => ResponseOp::Put(Model::do_put(w, p)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(Model::do_delete(w, d)),
                RequestOp::Txn(n) => ResponseOp::Txn(self.run(w, n, nested.next().unwrap())),
            });
        }
        TxnResponse {
            succeeded: path.ok,
            responses,
        }
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, KvError> {
        let path = txn_path(self.cur(), t);
        self.check_path(t, &path, &|m, op| match op {
            RequestOp::Put(p) => m.check_put(p),
            _ => Ok(()),
        })?;
        self.check_path(t, &path, &|m, op| match op {
            RequestOp::Range(r) => m.read_rev(r.revision).map(|_| ()),
            _ => Ok(()),
        })?;
        let mut w = self.begin();
        let r = self.run(&mut w, t, &path);
        self.finish(w);
        Ok(r)
    }

    fn compact(&mut self, rev: i64) -> Result<(), KvError> {
        if rev <= self.compact {
            return Err(KvError::Compacted {
                compact_revision: self.compact,
            });
        }
        if rev > self.rev() {
            return Err(KvError::FutureRevision);
        }
        self.compact = rev;
        Ok(())
    }
}

// ---------------------------------------------------------------- generators

/// Revisions are generated as selectors and resolved against the current
/// revision when the op runs: 0 = current, 1..=30 = that many back (1 = the
/// current revision itself), negative = that many into the future.
fn resolve(sel: i64, cur: i64) -> i64 {
    match sel {
        0 => 0,
        s if s > 0 => (cur - s + 1).max(1),
        s => cur - s,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Selector, see [`resolve`].
    Compact(i64),
    Range(RangeRequest),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(|k| k.as_bytes().to_vec())
}

fn key_range() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let end = prop::sample::select(vec!["", "", "", "\0", "a", "b", "d", "f"])
        .prop_map(|e| e.as_bytes().to_vec());
    prop_oneof![
        8 => (key(), end),
        1 => Just((vec![0], vec![0])),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["", "v1", "v2", "v3"]).prop_map(|v| v.as_bytes().to_vec())
}

fn lease() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![0, 0, 0, L1, L2, L_MISSING])
}

fn rev_sel() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0i64), 4 => 1i64..30, 1 => -3i64..0]
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        lease(),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(key, value, lease, prev_kv, ignore_value, ignore_lease)| {
            // Mostly well-formed ignore_* requests; sometimes not.
            let value = if ignore_value && value.len() == 2 && value[1] != b'3' {
                Vec::new()
            } else {
                value
            };
            let lease = if ignore_lease && lease != L2 {
                0
            } else {
                lease
            };
            PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            }
        })
}

fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_range(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn filter_rev() -> impl Strategy<Value = i64> {
    prop_oneof![8 => Just(0i64), 2 => 1i64..25]
}

fn range_req() -> impl Strategy<Value = RangeRequest> {
    (
        key_range(),
        prop_oneof![3 => Just(0i64), 1 => 1i64..4],
        rev_sel(),
        prop::sample::select(vec![SortOrder::None, SortOrder::Ascend, SortOrder::Descend]),
        prop::sample::select(vec![
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ]),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        (filter_rev(), filter_rev(), filter_rev(), filter_rev()),
    )
        .prop_map(
            |(
                (key, range_end),
                limit,
                revision,
                sort_order,
                sort_target,
                keys_only,
                count_only,
                f,
            )| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order,
                    sort_target,
                    serializable: true,
                    keys_only,
                    count_only,
                    min_mod_revision: f.0,
                    max_mod_revision: f.1,
                    min_create_revision: f.2,
                    max_create_revision: f.3,
                }
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    let end =
        prop::sample::select(vec!["", "", "", "\0", "c", "f"]).prop_map(|e| e.as_bytes().to_vec());
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..25).prop_map(CompareTarget::Create),
        (0i64..25).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        prop::sample::select(vec![0, L1, L2]).prop_map(CompareTarget::Lease),
    ];
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Greater,
        CompareResult::Less,
    ]);
    (key(), end, target, result).prop_map(|(key, range_end, target, result)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn txn_req() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        range_req().prop_map(RequestOp::Range),
        put_req().prop_map(RequestOp::Put),
        delete_req().prop_map(RequestOp::DeleteRange),
    ];
    let op = leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            3 => inner.clone(),
            1 => (
                prop::collection::vec(compare(), 0..3),
                prop::collection::vec(inner.clone(), 0..3),
                prop::collection::vec(inner, 0..3),
            )
                .prop_map(|(compare, success, failure)| RequestOp::Txn(TxnRequest {
                    compare,
                    success,
                    failure,
                })),
        ]
    });
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compare, success, failure)| {
            let mut t = TxnRequest {
                compare,
                success,
                failure,
            };
            sanitize_txn(&mut t, &mut Vec::new());
            t
        })
}

/// etcd's frontend rejects txns that write one key twice and puts with
/// ignore_value + value (checked over every branch, before apply); core
/// trusts the frontend there. Keep generated txns within those rules: drop
/// any write overlapping an earlier write anywhere in the txn, and strip
/// the API-level errors from puts.
fn sanitize_txn(t: &mut TxnRequest, writes: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    fn overlaps(a: &(Vec<u8>, Vec<u8>), b: &(Vec<u8>, Vec<u8>)) -> bool {
        ["a", "b", "c", "d", "e"]
            .iter()
            .any(|k| in_range(k.as_bytes(), &a.0, &a.1) && in_range(k.as_bytes(), &b.0, &b.1))
    }
    for ops in [&mut t.success, &mut t.failure] {
        let mut keep = Vec::new();
        for mut op in ops.drain(..) {
            let iv = match &mut op {
                RequestOp::Put(p) => {
                    if p.ignore_value {
                        p.value.clear();
                    }
                    if p.ignore_lease {
                        p.lease = 0;
                    }
                    Some((p.key.clone(), Vec::new()))
                }
                RequestOp::DeleteRange(d) => Some((d.key.clone(), d.range_end.clone())),
                RequestOp::Txn(n) => {
                    sanitize_txn(n, writes);
                    None
                }
                RequestOp::Range(_) => None,
            };
            if let Some(iv) = iv {
                if writes.iter().any(|w| overlaps(w, &iv)) {
                    continue;
                }
                writes.push(iv);
            }
            keep.push(op);
        }
        *ops = keep;
    }
}

fn resolve_range(r: &mut RangeRequest, cur: i64) {
    r.revision = resolve(r.revision, cur);
}

fn resolve_txn(t: &mut TxnRequest, cur: i64) {
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match op {
            RequestOp::Range(r) => resolve_range(r, cur),
            RequestOp::Txn(n) => resolve_txn(n, cur),
            _ => {}
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => put_req().prop_map(Op::Put),
        2 => delete_req().prop_map(Op::Delete),
        4 => txn_req().prop_map(Op::Txn),
        1 => prop_oneof![1i64..12, -2i64..0].prop_map(Op::Compact),
        5 => range_req().prop_map(Op::Range),
    ]
}

// ---------------------------------------------------------------- driver

async fn run_op(node: &Node, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    let cur = model.rev();
    match op {
        Op::Put(p) => {
            let want = model.put(&p);
            let got = node.propose(Command::Put(p.clone())).await.unwrap();
            prop_assert_eq!(got.result, CommandResult::Put(want), "put {:?}", p);
            prop_assert_eq!(got.revision, model.rev(), "revision after put {:?}", p);
        }
        Op::Delete(d) => {
            let want = model.delete(&d);
            let got = node.propose(Command::DeleteRange(d.clone())).await.unwrap();
            prop_assert_eq!(
                got.result,
                CommandResult::DeleteRange(want),
                "delete {:?}",
                d
            );
            prop_assert_eq!(got.revision, model.rev(), "revision after delete {:?}", d);
        }
        Op::Txn(mut t) => {
            resolve_txn(&mut t, cur);
            let want = model.txn(&t);
            let got = node.propose(Command::Txn(t.clone())).await.unwrap();
            prop_assert_eq!(got.result, CommandResult::Txn(want), "txn {:?}", t);
            prop_assert_eq!(got.revision, model.rev(), "revision after txn {:?}", t);
        }
        Op::Compact(sel) => {
            let rev = resolve(sel, cur);
            let want = model.compact(rev);
            let got = node
                .propose(Command::Compact { revision: rev })
                .await
                .unwrap();
            prop_assert_eq!(got.result, CommandResult::Compact(want), "compact {}", rev);
            prop_assert_eq!(got.revision, model.rev(), "revision after compact");
        }
        Op::Range(mut r) => {
            resolve_range(&mut r, cur);
            let want = model.range(&r);
            let got = node.range(&r);
            prop_assert_eq!(got, want, "range {:?}", r);
        }
    }
    prop_assert_eq!(node.revision(), model.rev());
    Ok(())
}

/// Every retained revision, read in full, equals the model's.
fn check_history(node: &Node, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(node.revision(), model.rev());
    prop_assert_eq!(node.status().compact_revision, model.compact);
    for rev in 1..=model.rev() {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        };
        prop_assert_eq!(node.range(&req), model.range(&req), "full read at {}", rev);
    }
    Ok(())
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(common::config(dir.path())).unwrap();
        for id in [L1, L2] {
            common::grant(&node, id, 3_600_000).await;
        }
        let mut model = Model::new();
        prop_assert_eq!(node.revision(), 1, "a fresh store is at revision 1");
        for op in ops {
            run_op(&node, &mut model, op).await?;
        }
        check_history(&node, &model)?;
        node.stop();
        drop(node);
        let node = Node::start(common::config(dir.path())).unwrap();
        check_history(&node, &model)?;
        // The revision continues after the restart.
        let p = PutRequest {
            key: b"z".to_vec(),
            value: b"after".to_vec(),
            ..Default::default()
        };
        model.put(&p).unwrap();
        let got = node.propose(Command::Put(p)).await.unwrap();
        prop_assert_eq!(got.revision, model.rev());
        node.stop();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mvcc_matches_model(ops in prop::collection::vec(op(), 1..45)) {
        run_case(ops)?;
    }
}

// ---------------------------------------------------------------- fixed cases

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn value_eq(k: &str, v: &str) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value(v.as_bytes().to_vec()),
        key: k.as_bytes().to_vec(),
        range_end: Vec::new(),
    }
}

/// etcd decides every branch of a txn (nested ones included) against the
/// state before the txn (apply.go compareToPath): a nested compare does not
/// see the outer txn's earlier writes.
#[test]
fn nested_txn_compares_see_state_before_txn() {
    rt().block_on(async {
        let n = common::start();
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                put_op("k", "new"),
                RequestOp::Txn(TxnRequest {
                    compare: vec![value_eq("k", "new")],
                    success: vec![put_op("x", "saw-new")],
                    failure: vec![put_op("x", "saw-old")],
                }),
            ],
            failure: vec![],
        };
        let a = n
            .propose(Command::Txn(t))
            .await
            .expect("applied, node alive");
        let CommandResult::Txn(Ok(r)) = a.result else {
            panic!("{:?}", a.result)
        };
        let ResponseOp::Txn(inner) = &r.responses[1] else {
            panic!()
        };
        assert!(!inner.succeeded);
        assert_eq!(common::get(&n, "x").unwrap().value, b"saw-old");
        assert_eq!(a.revision, 2);
    });
}

/// Inside a txn that already wrote, a range at the store's revision before
/// the txn reads history, not the txn's own writes (etcd reads the txn's
/// writes only at the txn's new revision, i.e. revision 0).
#[test]
fn txn_range_at_explicit_revision_reads_history() {
    rt().block_on(async {
        let n = common::start();
        common::put(&n, "k", "old").await;
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                put_op("k", "new"),
                RequestOp::Range(RangeRequest {
                    key: b"k".to_vec(),
                    revision: 2,
                    ..Default::default()
                }),
                RequestOp::Range(RangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                }),
            ],
            failure: vec![],
        };
        let a = n.propose(Command::Txn(t)).await.unwrap();
        let CommandResult::Txn(Ok(r)) = a.result else {
            panic!("{:?}", a.result)
        };
        let ResponseOp::Range(at2) = &r.responses[1] else {
            panic!()
        };
        let ResponseOp::Range(now) = &r.responses[2] else {
            panic!()
        };
        assert_eq!(at2.kvs[0].value, b"old");
        assert_eq!(at2.kvs[0].mod_revision, 2);
        assert_eq!(now.kvs[0].value, b"new");
        assert_eq!(now.kvs[0].mod_revision, 3);
    });
}

/// A txn whose chosen branch only reads takes no revision; a delete of an
/// absent key takes none; a put of the same value takes one.
#[test]
fn revision_rules() {
    rt().block_on(async {
        let n = common::start();
        let (r, _) = common::put(&n, "a", "1").await;
        assert_eq!(r, 2);
        let (r, prev) = common::put(&n, "a", "1").await;
        assert_eq!(r, 3);
        assert_eq!(prev.prev_kv.unwrap().mod_revision, 2);
        assert_eq!(common::get(&n, "a").unwrap().version, 2);
        assert_eq!(common::delete(&n, "nope").await, 0);
        assert_eq!(n.revision(), 3);
        let t = TxnRequest {
            compare: vec![value_eq("a", "1")],
            success: vec![RequestOp::Range(RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })],
            failure: vec![put_op("a", "2")],
        };
        let a = n.propose(Command::Txn(t)).await.unwrap();
        assert_eq!(a.revision, 3);
        assert!(matches!(
            a.result,
            CommandResult::Txn(Ok(TxnResponse {
                succeeded: true,
                ..
            }))
        ));
        // Compacted / future reads.
        let c = n.propose(Command::Compact { revision: 3 }).await.unwrap();
        assert_eq!(c.result, CommandResult::Compact(Ok(())));
        assert_eq!(c.revision, 3, "compaction takes no revision");
        let read = |rev| {
            n.range(&RangeRequest {
                key: b"a".to_vec(),
                revision: rev,
                ..Default::default()
            })
        };
        assert_eq!(
            read(2),
            Err(KvError::Compacted {
                compact_revision: 3
            })
        );
        assert_eq!(read(4), Err(KvError::FutureRevision));
        assert_eq!(read(3).unwrap().kvs.len(), 1);
        assert_eq!(
            KvError::Compacted {
                compact_revision: 3
            }
            .to_string(),
            "mvcc: required revision has been compacted"
        );
        assert_eq!(
            KvError::FutureRevision.to_string(),
            "mvcc: required revision is a future revision"
        );
    });
}
