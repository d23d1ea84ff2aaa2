//! etcd writes applied by the state machine: Put, DeleteRange, Txn, Compact.
//!
//! Every check etcd makes before applying (empty key, ignore_value /
//! ignore_lease rules, lease existence, read revisions inside a txn) is made
//! on the state before the command's first write, so a failing command
//! changes nothing.

use crate::engine::Space;
use crate::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue,
    PutRequest, PutResponse, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::mvcc::range::{bounds, is_empty_range};
use crate::state::{Fail, State, Wtx, META_COMPACT};
use crate::KvError;

impl State {
    fn check_put(&self, req: &PutRequest) -> Result<(), Fail> {
        crate::kv::check_put(req)?;
        if (req.ignore_value || req.ignore_lease)
            && self.keys.get(&req.key).and_then(|k| k.live).is_none()
        {
            return Err(KvError::KeyNotFound.into());
        }
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(KvError::LeaseNotFound.into());
        }
        Ok(())
    }

    pub fn apply_put(&mut self, w: &mut Wtx, req: &PutRequest) -> Result<PutResponse, Fail> {
        self.check_put(req)?;
        self.do_put(w, req)
    }

    fn do_put(&mut self, w: &mut Wtx, req: &PutRequest) -> Result<PutResponse, Fail> {
        // The previous record matters here only to keep its value or lease
        // (`put_key_from` reads it anyway for the event and prev_kv): a
        // plain put does not read it twice.
        let live = self.keys.get(&req.key).and_then(|k| k.live);
        let prev = match live {
            Some(l) if req.ignore_value || req.ignore_lease => {
                Some(self.record(Some(w), l.mod_rev)?)
            }
            _ => None,
        };
        // ignore_value keeps the value as it is, ZooKeeper null included.
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => (!p.null_data).then(|| p.value.clone()),
            _ => Some(req.value.clone()),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let (_, prev) = self.put_key_from(w, &req.key, value, lease, 1)?;
        Ok(PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    pub fn apply_delete_range(
        &mut self,
        w: &mut Wtx,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Fail> {
        crate::kv::check_key(&req.key)?;
        self.do_delete_range(w, req)
    }

    fn do_delete_range(
        &mut self,
        w: &mut Wtx,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Fail> {
        let keys: Vec<Vec<u8>> = if is_empty_range(&req.key, &req.range_end) {
            Vec::new()
        } else {
            self.keys
                .range::<[u8], _>(bounds(&req.key, &req.range_end))
                .filter(|(_, ki)| ki.live.is_some())
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut resp = DeleteRangeResponse::default();
        for k in keys {
            if let Some(prev) = self.delete_key(w, &k)? {
                resp.deleted += 1;
                if req.prev_kv {
                    resp.prev_kvs.push(prev);
                }
            }
        }
        Ok(resp)
    }

    /// etcd's applyCompare: a compare on a range must hold for every key; an
    /// empty range compares as a zero KeyValue, except that a value compare
    /// on missing keys is always false.
    fn compare(&self, c: &Compare) -> Result<bool, Fail> {
        let req = RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        };
        let resp = self.range(None, &req)?;
        if resp.kvs.is_empty() {
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(resp.kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// etcd's compareToPath: every branch of the txn, nested txns included,
    /// is chosen against the state before the txn writes anything (a nested
    /// compare does not see the outer txn's earlier writes).
    fn txn_path(&self, txn: &TxnRequest) -> Result<TxnPath, Fail> {
        let mut ok = true;
        for c in &txn.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        let branch = if ok { &txn.success } else { &txn.failure };
        let mut nested = Vec::new();
        for op in branch {
            if let RequestOp::Txn(t) = op {
                nested.push(self.txn_path(t)?);
            }
        }
        Ok(TxnPath { ok, nested })
    }

    /// Validates the ops of the chosen path before any of them writes, as
    /// etcd's checkRequests does: every put first, then every range.
    fn check_ops(&self, txn: &TxnRequest, path: &TxnPath, puts: bool) -> Result<(), Fail> {
        let ops = if path.ok { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        for op in ops {
            match op {
                RequestOp::Range(r) if !puts => {
                    self.read_revision(r.revision)?;
                }
                RequestOp::Put(p) if puts => self.check_put(p)?,
                RequestOp::DeleteRange(d) if puts && d.key.is_empty() => {
                    return Err(KvError::EmptyKey.into());
                }
                RequestOp::Txn(t) => {
                    if let Some(np) = nested.next() {
                        self.check_ops(t, np, puts)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn apply_txn(&mut self, w: &mut Wtx, txn: &TxnRequest) -> Result<TxnResponse, Fail> {
        let path = self.txn_path(txn)?;
        self.check_ops(txn, &path, true)?;
        self.check_ops(txn, &path, false)?;
        self.run_ops(w, txn, &path)
    }

    fn run_ops(
        &mut self,
        w: &mut Wtx,
        txn: &TxnRequest,
        path: &TxnPath,
    ) -> Result<TxnResponse, Fail> {
        let ops = if path.ok { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(Some(w), r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.do_put(w, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.do_delete_range(w, d)?),
                RequestOp::Txn(t) => {
                    let np = nested.next().ok_or_else(|| {
                        Fail::Kv(KvError::Internal("txn path out of step".into()))
                    })?;
                    ResponseOp::Txn(self.run_ops(w, t, np)?)
                }
            });
        }
        Ok(TxnResponse {
            succeeded: path.ok,
            responses,
        })
    }

    /// Drops history below `revision` (kept: the newest value of each key at
    /// or below it). Takes no revision.
    pub fn apply_compact(&mut self, w: &mut Wtx, revision: i64) -> Result<(), Fail> {
        if revision <= self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            }
            .into());
        }
        if revision > self.revision {
            return Err(KvError::FutureRevision.into());
        }
        let mut empty = Vec::new();
        for (k, ki) in self.keys.iter_mut() {
            for r in ki.compact(revision) {
                w.batch.remove(Space::Revs, r.to_bytes());
            }
            if ki.is_empty() {
                empty.push(k.clone());
            }
        }
        for k in empty {
            self.keys.remove(&k);
        }
        self.compact_revision = revision;
        w.batch.put(
            Space::Meta,
            META_COMPACT.to_vec(),
            (revision as u64).to_be_bytes().to_vec(),
        );
        Ok(())
    }
}

/// The branch a txn takes and, in order, the paths of the nested txns of
/// that branch.
struct TxnPath {
    ok: bool,
    nested: Vec<TxnPath>,
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}
