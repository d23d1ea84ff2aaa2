//! Running an etcd scenario with the `etcd-client` crate, producing a
//! normalized transcript.
//!
//! Normalization (only where servers may differ): response headers keep
//! only the revision (cluster id, member id and raft term are dropped);
//! lease ids become the scenario's lease names (`lease:l1`), unknown ones
//! `L?1, L?2...` in order of appearance; a remaining lease TTL within two
//! seconds below the granted TTL prints as `~granted`. Revisions, versions,
//! values, counts, flags and error codes/messages are compared as they are.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use etcd::{
    CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use etcd_client as etcd;

use super::script::{Opts, Scenario, Step, Tok};
use super::{quote, Transcript, OP_TIMEOUT};

struct Runner {
    client: etcd::Client,
    /// Scenario lease name → id.
    leases: BTreeMap<String, i64>,
    /// Lease ids not granted by name (e.g. literal ids), by appearance.
    unknown: HashMap<i64, usize>,
    watches: BTreeMap<String, (etcd::Watcher, etcd::WatchStream)>,
    /// The server's endpoint, for `etcdctl` steps.
    endpoint: String,
}

/// Runs `sc` against the etcd endpoint (`http://HOST:PORT`).
pub async fn run(endpoint: &str, sc: &Scenario) -> Result<Transcript> {
    let client = tokio::time::timeout(OP_TIMEOUT, etcd::Client::connect([endpoint], None))
        .await
        .context("etcd connect timed out")??;
    let mut r = Runner {
        client,
        leases: BTreeMap::new(),
        unknown: HashMap::new(),
        watches: BTreeMap::new(),
        endpoint: endpoint.to_string(),
    };
    super::run_steps(&mut r, sc).await
}

fn eerr(e: &etcd::Error) -> String {
    match e {
        etcd::Error::GRpcStatus(s) => format!("error {:?} {:?}", s.code(), s.message()),
        other => format!("error {other}"),
    }
}

fn rev(h: Option<&etcd::ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev={}", h.revision()),
        None => "rev=?".into(),
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {OP_TIMEOUT:?}"))
}

fn get_options(o: &Opts) -> Result<GetOptions> {
    o.check(&[
        "prefix",
        "from-key",
        "range-end",
        "rev",
        "limit",
        "sort",
        "keys-only",
        "count-only",
        "serializable",
        "min-mod",
        "max-mod",
        "min-create",
        "max-create",
    ])?;
    let mut g = GetOptions::new();
    if o.has("prefix") {
        g = g.with_prefix();
    }
    if o.has("from-key") {
        g = g.with_from_key();
    }
    if let Some(e) = o.val("range-end") {
        g = g.with_range(e);
    }
    if let Some(r) = o.num("rev")? {
        g = g.with_revision(r);
    }
    if let Some(l) = o.num("limit")? {
        g = g.with_limit(l);
    }
    if let Some(s) = o.val("sort") {
        let (t, ord) = s.split_once(':').unwrap_or((s, "asc"));
        let t = match t {
            "key" => SortTarget::Key,
            "version" => SortTarget::Version,
            "create" => SortTarget::Create,
            "mod" => SortTarget::Mod,
            "value" => SortTarget::Value,
            _ => bail!("--sort target {t:?}: key|version|create|mod|value"),
        };
        let ord = match ord {
            "asc" => SortOrder::Ascend,
            "desc" => SortOrder::Descend,
            "none" => SortOrder::None,
            _ => bail!("--sort order {ord:?}: asc|desc|none"),
        };
        g = g.with_sort(t, ord);
    }
    if o.has("keys-only") {
        g = g.with_keys_only();
    }
    if o.has("count-only") {
        g = g.with_count_only();
    }
    if o.has("serializable") {
        g = g.with_serializable();
    }
    if let Some(r) = o.num("min-mod")? {
        g = g.with_min_mod_revision(r);
    }
    if let Some(r) = o.num("max-mod")? {
        g = g.with_max_mod_revision(r);
    }
    if let Some(r) = o.num("min-create")? {
        g = g.with_min_create_revision(r);
    }
    if let Some(r) = o.num("max-create")? {
        g = g.with_max_create_revision(r);
    }
    Ok(g)
}

fn delete_options(o: &Opts) -> Result<DeleteOptions> {
    o.check(&["prefix", "from-key", "range-end", "prev-kv"])?;
    let mut d = DeleteOptions::new();
    if o.has("prefix") {
        d = d.with_prefix();
    }
    if o.has("from-key") {
        d = d.with_from_key();
    }
    if let Some(e) = o.val("range-end") {
        d = d.with_range(e);
    }
    if o.has("prev-kv") {
        d = d.with_prev_key();
    }
    Ok(d)
}

impl super::Steps for Runner {
    async fn step(&mut self, st: &Step) -> Result<Vec<String>> {
        Runner::step(self, st).await
    }
}

impl Runner {
    fn lease_name(&mut self, id: i64) -> String {
        if id == 0 {
            return "0".into();
        }
        if let Some((n, _)) = self.leases.iter().find(|(_, v)| **v == id) {
            return format!("lease:{n}");
        }
        let n = self.unknown.len() + 1;
        format!("L?{}", self.unknown.entry(id).or_insert(n))
    }

    /// A lease argument: a scenario name granted earlier, `0`, or `#ID`
    /// (a literal id, e.g. one that was never granted).
    fn lease_id(&self, s: &str) -> Result<i64> {
        if s == "0" {
            return Ok(0);
        }
        if let Some(n) = s.strip_prefix('#') {
            return n.parse().with_context(|| format!("lease id {s:?}"));
        }
        self.leases
            .get(s)
            .copied()
            .with_context(|| format!("no lease named {s:?} (grant it first)"))
    }

    fn kv(&mut self, kv: &KeyValue) -> String {
        format!(
            "{}={} create={} mod={} version={} lease={}",
            quote(kv.key()),
            quote(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            self.lease_name(kv.lease())
        )
    }

    fn put_options(&self, o: &Opts) -> Result<PutOptions> {
        o.check(&["lease", "prev-kv", "ignore-value", "ignore-lease", "repeat"])?;
        let mut p = PutOptions::new();
        if let Some(l) = o.val("lease") {
            p = p.with_lease(self.lease_id(l)?);
        }
        if o.has("prev-kv") {
            p = p.with_prev_key();
        }
        if o.has("ignore-value") {
            p = p.with_ignore_value();
        }
        if o.has("ignore-lease") {
            p = p.with_ignore_lease();
        }
        Ok(p)
    }

    fn put_lines(&mut self, r: &etcd::PutResponse, ind: &str, out: &mut Vec<String>) {
        let mut s = format!("{ind}put {}", rev(r.header()));
        if let Some(p) = r.prev_key() {
            s.push_str(&format!(" prev {}", self.kv(p)));
        }
        out.push(s);
    }

    fn get_lines(&mut self, r: &etcd::GetResponse, ind: &str, out: &mut Vec<String>) {
        out.push(format!(
            "{ind}get {} count={} more={} kvs={}",
            rev(r.header()),
            r.count(),
            r.more(),
            r.kvs().len()
        ));
        for kv in r.kvs() {
            let s = self.kv(kv);
            out.push(format!("{ind}  {s}"));
        }
    }

    fn del_lines(&mut self, r: &etcd::DeleteResponse, ind: &str, out: &mut Vec<String>) {
        out.push(format!(
            "{ind}del {} deleted={}",
            rev(r.header()),
            r.deleted()
        ));
        for kv in r.prev_kvs() {
            let s = self.kv(kv);
            out.push(format!("{ind}  prev {s}"));
        }
    }

    fn txn_lines(&mut self, r: &etcd::TxnResponse, ind: &str, out: &mut Vec<String>) {
        out.push(format!(
            "{ind}txn {} succeeded={}",
            rev(r.header()),
            r.succeeded()
        ));
        let inner = format!("{ind}  ");
        for op in r.op_responses() {
            match op {
                TxnOpResponse::Put(p) => self.put_lines(&p, &inner, out),
                TxnOpResponse::Get(g) => self.get_lines(&g, &inner, out),
                TxnOpResponse::Delete(d) => self.del_lines(&d, &inner, out),
                TxnOpResponse::Txn(t) => self.txn_lines(&t, &inner, out),
            }
        }
    }

    /// `[ CMP ; CMP ] then [ OP ; OP ] else [ OP ]` (`else` optional).
    fn parse_txn(&self, toks: &[Tok]) -> Result<(Txn, usize)> {
        let mut i = 0;
        let mut txn = Txn::new();
        let (cmps, n) = bracket(&toks[i..])?;
        i += n;
        let mut compares = Vec::new();
        for c in cmps.split(|t| t.is(";")).filter(|c| !c.is_empty()) {
            compares.push(self.parse_compare(c)?);
        }
        txn = txn.when(compares);
        if toks.get(i).is_some_and(|t| t.is("then")) {
            let (ops, n) = bracket(&toks[i + 1..])?;
            i += 1 + n;
            txn = txn.and_then(self.parse_ops(ops)?);
        }
        if toks.get(i).is_some_and(|t| t.is("else")) {
            let (ops, n) = bracket(&toks[i + 1..])?;
            i += 1 + n;
            txn = txn.or_else(self.parse_ops(ops)?);
        }
        Ok((txn, i))
    }

    fn parse_ops(&self, toks: &[Tok]) -> Result<Vec<TxnOp>> {
        let mut ops = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if toks[i].is(";") {
                i += 1;
                continue;
            }
            if toks[i].is("txn") {
                let (t, n) = self.parse_txn(&toks[i + 1..])?;
                ops.push(TxnOp::txn(t));
                i += 1 + n;
                continue;
            }
            let end = toks[i..]
                .iter()
                .position(|t| t.is(";"))
                .map(|p| i + p)
                .unwrap_or(toks.len());
            let (kind, rest) = toks[i..end].split_first().expect("non-empty");
            let o = Opts::split(rest);
            ops.push(match kind.s.as_str() {
                "put" => TxnOp::put(
                    o.arg(0, "key")?,
                    o.pos.get(1).context("missing value")?.s.as_str(),
                    Some(self.put_options(&o)?),
                ),
                "get" => TxnOp::get(o.arg(0, "key")?, Some(get_options(&o)?)),
                "del" => TxnOp::delete(o.arg(0, "key")?, Some(delete_options(&o)?)),
                k => bail!("txn op {k:?}: put|get|del|txn"),
            });
            i = end;
        }
        Ok(ops)
    }

    /// `value|version|create|mod|lease KEY =|!=|>|< ARG [--prefix|--range-end=E]`.
    fn parse_compare(&self, toks: &[Tok]) -> Result<Compare> {
        let o = Opts::split(toks);
        o.check(&["prefix", "range-end"])?;
        let key = o.arg(1, "key")?;
        let op = match o.arg(2, "=|!=|>|<")? {
            "=" => CompareOp::Equal,
            "!=" => CompareOp::NotEqual,
            ">" => CompareOp::Greater,
            "<" => CompareOp::Less,
            x => bail!("compare operator {x:?}"),
        };
        let arg = o.arg(3, "compare argument")?;
        let num = || {
            arg.parse::<i64>()
                .with_context(|| format!("number {arg:?}"))
        };
        let mut c = match o.arg(0, "compare target")? {
            "value" => Compare::value(key, op, arg),
            "version" => Compare::version(key, op, num()?),
            "create" => Compare::create_revision(key, op, num()?),
            "mod" => Compare::mod_revision(key, op, num()?),
            "lease" => Compare::lease(key, op, self.lease_id(arg)?),
            t => bail!("compare target {t:?}: value|version|create|mod|lease"),
        };
        if o.has("prefix") {
            c = c.with_prefix();
        }
        if let Some(e) = o.val("range-end") {
            c = c.with_range(e);
        }
        Ok(c)
    }

    /// A watch response. Events are printed one per line without the
    /// response they came in: how a server batches revisions into
    /// responses is its own choice (so is the header revision of such a
    /// batch). What the protocol does promise is checked: one revision's
    /// events are never split across responses (`SPLIT REVISION` if they
    /// are). Created/canceled/compacted responses print a line of their own.
    fn watch_lines(&mut self, r: &etcd::WatchResponse, last_rev: &mut i64, out: &mut Vec<String>) {
        if r.created() || r.canceled() || r.compact_revision() != 0 || r.events().is_empty() {
            let mut s = format!("watch id={}", r.watch_id());
            if r.created() {
                s.push_str(" created");
            }
            if r.canceled() {
                s.push_str(" canceled");
            }
            if r.compact_revision() != 0 {
                s.push_str(&format!(" compact_revision={}", r.compact_revision()));
            }
            if !r.cancel_reason().is_empty() {
                s.push_str(&format!(" reason={:?}", r.cancel_reason()));
            }
            if !r.created() && !r.canceled() && r.compact_revision() == 0 {
                s.push_str(" (progress)");
            }
            out.push(s);
        }
        if let Some(first) = r.events().first().and_then(|e| e.kv()) {
            if first.mod_revision() == *last_rev {
                out.push(format!("SPLIT REVISION {last_rev} across responses"));
            }
        }
        for e in r.events() {
            let mut s = format!("{:?}", e.event_type());
            if let Some(kv) = e.kv() {
                s.push_str(&format!(" {}", self.kv(kv)));
                *last_rev = kv.mod_revision();
            }
            if let Some(p) = e.prev_kv() {
                s.push_str(&format!(" prev {}", self.kv(p)));
            }
            out.push(s);
        }
    }

    /// Runs one step: one function per operation, each returning the
    /// step's transcript lines.
    async fn step(&mut self, st: &Step) -> Result<Vec<String>> {
        match st.op.as_str() {
            "put" => self.op_put(st).await,
            "get" => self.op_get(st).await,
            "del" => self.op_del(st).await,
            "txn" => self.op_txn(st).await,
            "compact" => self.op_compact(st).await,
            "lease-grant" => self.op_lease_grant(st).await,
            "lease-revoke" => self.op_lease_revoke(st).await,
            "lease-keepalive" => self.op_lease_keepalive(st).await,
            "lease-ttl" => self.op_lease_ttl(st).await,
            "leases" => self.op_leases(st).await,
            "status" => self.op_status(st).await,
            "alarms" => self.op_alarms(st).await,
            "sleep" => self.op_sleep(st).await,
            "watch" => self.op_watch(st).await,
            "events" => self.op_events(st).await,
            "cancel-watch" => self.op_cancel_watch(st).await,
            "etcdctl" => etcdctl(&self.endpoint, &st.args).await,
            op => bail!("unknown etcd op {op:?}"),
        }
    }

    async fn op_put(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        let p = self.put_options(&o)?;
        let mut v = o.pos.get(1).context("missing value")?.s.clone();
        if let Some(n) = o.num("repeat")? {
            v = v.repeat(n as usize);
        }
        match timed(c.put(o.arg(0, "key")?, v, Some(p))).await? {
            Ok(r) => {
                self.put_lines(&r, "", &mut out);
                out[0].insert_str(0, "ok ");
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_get(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        let g = get_options(&o)?;
        match timed(c.get(o.arg(0, "key")?, Some(g))).await? {
            Ok(r) => {
                self.get_lines(&r, "", &mut out);
                out[0].insert_str(0, "ok ");
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_del(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        let d = delete_options(&o)?;
        match timed(c.delete(o.arg(0, "key")?, Some(d))).await? {
            Ok(r) => {
                self.del_lines(&r, "", &mut out);
                out[0].insert_str(0, "ok ");
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_txn(&mut self, st: &Step) -> Result<Vec<String>> {
        let mut c = self.client.clone();
        let mut out = Vec::new();
        let (t, n) = self.parse_txn(&st.args)?;
        if n != st.args.len() {
            bail!("trailing tokens after txn");
        }
        match timed(c.txn(t)).await? {
            Ok(r) => {
                self.txn_lines(&r, "", &mut out);
                out[0].insert_str(0, "ok ");
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_compact(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&["physical"])?;
        let r: i64 = o.arg(0, "revision")?.parse()?;
        let opts = o
            .has("physical")
            .then(|| CompactionOptions::new().with_physical());
        match timed(c.compact(r, opts)).await? {
            Ok(r) => out.push(format!("ok {}", rev(r.header()))),
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_lease_grant(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&["id"])?;
        let name = o.arg(0, "lease name")?.to_string();
        let ttl: i64 = o.arg(1, "ttl")?.parse()?;
        let opts = match o.val("id") {
            Some(id) => Some(etcd::LeaseGrantOptions::new().with_id(self.lease_id(id)?)),
            None => None,
        };
        match timed(c.lease_grant(ttl, opts)).await? {
            Ok(r) => {
                if !r.error().is_empty() {
                    out.push(format!("error {:?}", r.error()));
                }
                self.leases.entry(name).or_insert(r.id());
                out.push(format!(
                    "ok {} id={} ttl={}",
                    rev(r.header()),
                    self.lease_name(r.id()),
                    r.ttl()
                ));
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_lease_revoke(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[])?;
        let id = self.lease_id(o.arg(0, "lease")?)?;
        match timed(c.lease_revoke(id)).await? {
            Ok(r) => out.push(format!("ok {}", rev(r.header()))),
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_lease_keepalive(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[])?;
        let id = self.lease_id(o.arg(0, "lease")?)?;
        let res = timed(async {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await?;
        match res {
            Ok(Some(r)) => out.push(format!("ok id={} ttl={}", self.lease_name(r.id()), r.ttl())),
            Ok(None) => out.push("stream closed".into()),
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_lease_ttl(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&["keys"])?;
        let id = self.lease_id(o.arg(0, "lease")?)?;
        let opts = o
            .has("keys")
            .then(|| LeaseTimeToLiveOptions::new().with_keys());
        match timed(c.lease_time_to_live(id, opts)).await? {
            Ok(r) => {
                let g = r.granted_ttl();
                let ttl = if g > 0 && r.ttl() <= g && r.ttl() >= g - 2 {
                    format!("~{g}")
                } else {
                    r.ttl().to_string()
                };
                let mut keys: Vec<String> = r.keys().iter().map(|k| quote(k)).collect();
                keys.sort();
                out.push(format!(
                    "ok {} id={} ttl={ttl} granted={g} keys=[{}]",
                    rev(r.header()),
                    self.lease_name(r.id()),
                    keys.join(", ")
                ));
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_leases(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[])?;
        match timed(c.leases()).await? {
            Ok(r) => {
                let mut ids: Vec<String> =
                    r.leases().iter().map(|l| self.lease_name(l.id())).collect();
                ids.sort();
                out.push(format!("ok {} [{}]", rev(r.header()), ids.join(", ")));
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_status(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[])?;
        match timed(c.status()).await? {
            Ok(r) => out.push(format!("ok version={} {}", r.version(), rev(r.header()))),
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_alarms(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[])?;
        match timed(c.alarm(etcd::AlarmAction::Get, etcd::AlarmType::None, None)).await? {
            Ok(r) => {
                let v: Vec<String> = r
                    .alarms()
                    .iter()
                    .map(|a| format!("{:?}", a.alarm()))
                    .collect();
                out.push(format!("ok {} [{}]", rev(r.header()), v.join(", ")));
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_sleep(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        let ms: u64 = o.arg(0, "milliseconds")?.parse()?;
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        out.push("ok".into());
        Ok(out)
    }

    async fn op_watch(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut c = self.client.clone();
        let mut out = Vec::new();
        o.check(&[
            "prefix",
            "from-key",
            "range-end",
            "rev",
            "prev-kv",
            "progress-notify",
            "no-put",
            "no-delete",
        ])?;
        let name = o.arg(0, "watch name")?.to_string();
        let key = o.arg(1, "key")?.to_string();
        let mut w = WatchOptions::new();
        if o.has("prefix") {
            w = w.with_prefix();
        }
        if o.has("from-key") {
            w = w.with_from_key();
        }
        if let Some(e) = o.val("range-end") {
            w = w.with_range(e);
        }
        if let Some(r) = o.num("rev")? {
            w = w.with_start_revision(r);
        }
        if o.has("prev-kv") {
            w = w.with_prev_key();
        }
        if o.has("progress-notify") {
            w = w.with_progress_notify();
        }
        let mut filters = Vec::new();
        if o.has("no-put") {
            filters.push(etcd::WatchFilterType::NoPut);
        }
        if o.has("no-delete") {
            filters.push(etcd::WatchFilterType::NoDelete);
        }
        if !filters.is_empty() {
            w = w.with_filters(filters);
        }
        match timed(c.watch(key, Some(w))).await? {
            Ok((watcher, stream)) => {
                out.push(format!("ok watch id={}", watcher.watch_id()));
                self.watches.insert(name, (watcher, stream));
            }
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }

    async fn op_events(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        // `events W N`: waits for N items (events, or a cancel) on
        // W, up to a timeout, then prints the responses.
        o.check(&[])?;
        let name = o.arg(0, "watch name")?.to_string();
        let want: usize = o.arg(1, "how many events")?.parse()?;
        let (_, stream) = self
            .watches
            .get_mut(&name)
            .with_context(|| format!("no watch {name}"))?;
        let mut got = 0;
        let mut resps = Vec::new();
        let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
        while got < want {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => break,
                Ok(Ok(Some(r))) => {
                    got += r.events().len() + usize::from(r.canceled());
                    resps.push(Ok(r));
                }
                Ok(Ok(None)) => {
                    resps.push(Err("stream closed".to_string()));
                    break;
                }
                Ok(Err(e)) => {
                    resps.push(Err(eerr(&e)));
                    break;
                }
            }
        }
        let mut last = 0;
        for r in resps {
            match r {
                Ok(r) => self.watch_lines(&r, &mut last, &mut out),
                Err(e) => out.push(e),
            }
        }
        if got < want {
            out.push(format!("only {got} of {want} within {OP_TIMEOUT:?}"));
        }
        Ok(out)
    }

    async fn op_cancel_watch(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let name = o.arg(0, "watch name")?.to_string();
        let (mut watcher, mut stream) = self
            .watches
            .remove(&name)
            .with_context(|| format!("no watch {name}"))?;
        timed(watcher.cancel()).await??;
        match timed(stream.message()).await? {
            Ok(Some(r)) => self.watch_lines(&r, &mut 0, &mut out),
            Ok(None) => out.push("stream closed".into()),
            Err(e) => out.push(eerr(&e)),
        }
        Ok(out)
    }
}

/// Runs the real `etcdctl` (v3 API) with `args` against `endpoint`: its
/// exit status, stdout and stderr, without the client library's retry
/// warnings (JSON log lines with timestamps and random target names).
async fn etcdctl(endpoint: &str, args: &[Tok]) -> Result<Vec<String>> {
    let mut cmd = tokio::process::Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args.iter().map(|t| t.s.as_str()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = timed(cmd.output())
        .await?
        .context("cannot run etcdctl (is etcd's client installed?)")?;
    let mut lines = vec![format!("exit {}", out.status.code().unwrap_or(-1))];
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        lines.push(format!("out {l}"));
    }
    for l in String::from_utf8_lossy(&out.stderr).lines() {
        if !l.starts_with("{\"level\"") {
            lines.push(format!("err {l}"));
        }
    }
    Ok(lines)
}

/// `[ ... ]` at the start of `toks` (nesting allowed): the inside and how
/// many tokens the bracket took.
fn bracket(toks: &[Tok]) -> Result<(&[Tok], usize)> {
    if !toks.first().is_some_and(|t| t.is("[")) {
        bail!("expected `[`");
    }
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is("[") {
            depth += 1;
        } else if t.is("]") {
            depth -= 1;
            if depth == 0 {
                return Ok((&toks[1..i], i + 1));
            }
        }
    }
    bail!("unbalanced `[`")
}
