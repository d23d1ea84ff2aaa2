//! Running a ZooKeeper scenario with the `zookeeper-client` crate, one
//! client per named session, producing a normalized transcript.
//!
//! Normalization (only where servers may differ): zxids become `Z1, Z2...`
//! in order of first appearance (0 and -1 kept), ctime/mtime become `T`
//! (when they are plausible wall-clock times), session ids and ephemeral
//! owners become the scenario's session names.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::FutureExt;
use zk::{Acl, Acls, AddWatchMode, AuthId, CreateMode, Permission, Stat};
use zookeeper_client as zk;

use super::digest::digest_id;
use super::script::{Opts, Scenario, Step, Tok};
use super::{quote, Transcript, OP_TIMEOUT};

type EventFuture = Pin<Box<dyn Future<Output = zk::WatchedEvent> + Send>>;

enum Watch {
    /// A one-shot watch not yet looked at (still removable).
    Armed(zk::OneshotWatcher),
    /// A one-shot watch being polled by `events`.
    Polling(Option<EventFuture>),
    Persistent(Option<zk::PersistentWatcher>),
}

struct WatchEntry {
    session: String,
    watch: Watch,
}

struct Runner {
    addr: String,
    clients: BTreeMap<String, zk::Client>,
    /// Every session id seen, to name ephemeral owners.
    session_names: HashMap<i64, String>,
    watches: BTreeMap<String, WatchEntry>,
    zxids: HashMap<i64, usize>,
    /// The server's own ports, shown by name in configuration text.
    ports: super::PortNames,
}

/// Runs `sc` against the ZooKeeper endpoint `addr` (`HOST:PORT`); `ports`
/// name the server's own ports where its configuration shows them.
pub async fn run(addr: &str, ports: super::PortNames, sc: &Scenario) -> Result<Transcript> {
    let mut r = Runner {
        ports,
        addr: addr.to_string(),
        clients: BTreeMap::new(),
        session_names: HashMap::new(),
        watches: BTreeMap::new(),
        zxids: HashMap::new(),
    };
    super::run_steps(&mut r, sc).await
}

fn zerr(e: &zk::Error) -> String {
    format!("error {e:?}")
}

fn perms(p: Permission) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (Permission::CREATE, 'c'),
        (Permission::DELETE, 'd'),
        (Permission::READ, 'r'),
        (Permission::WRITE, 'w'),
        (Permission::ADMIN, 'a'),
    ] {
        if p.has(bit) {
            s.push(c);
        }
    }
    s
}

fn parse_perms(s: &str) -> Result<Permission> {
    let mut p = Permission::NONE;
    for c in s.chars() {
        p = p | match c {
            'r' => Permission::READ,
            'w' => Permission::WRITE,
            'c' => Permission::CREATE,
            'd' => Permission::DELETE,
            'a' => Permission::ADMIN,
            _ => bail!("bad permission letter {c:?} in {s:?} (cdrwa)"),
        };
    }
    Ok(p)
}

/// `open` | `read` | `creator` | `none` | comma-separated `scheme:id:perms`
/// (`digest:user:password:perms` is hashed as ZooKeeper does).
fn parse_acls(spec: &str) -> Result<Vec<Acl>> {
    match spec {
        "open" => return Ok(Acls::anyone_all().to_vec()),
        "read" => return Ok(Acls::anyone_read().to_vec()),
        "creator" => return Ok(Acls::creator_all().to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    let mut out = Vec::new();
    for one in spec.split(',') {
        let (scheme, rest) = one.split_once(':').context("acl scheme:id:perms")?;
        let (id, p) = rest.rsplit_once(':').context("acl scheme:id:perms")?;
        let id = if scheme == "digest" && !id.ends_with('=') {
            digest_id(id)
        } else {
            id.to_string()
        };
        out.push(Acl::new(parse_perms(p)?, AuthId::new(scheme, &id)));
    }
    Ok(out)
}

fn fmt_acls(acls: &[Acl]) -> String {
    let v: Vec<String> = acls
        .iter()
        .map(|a| format!("{}:{}:{}", a.scheme(), a.id(), perms(a.permission())))
        .collect();
    format!("[{}]", v.join(", "))
}

fn parse_mode(s: &str) -> Result<CreateMode> {
    Ok(match s {
        "persistent" => CreateMode::Persistent,
        "persistent-seq" => CreateMode::PersistentSequential,
        "ephemeral" => CreateMode::Ephemeral,
        "ephemeral-seq" => CreateMode::EphemeralSequential,
        "container" => CreateMode::Container,
        _ => {
            bail!("create mode {s:?}: persistent|persistent-seq|ephemeral|ephemeral-seq|container")
        }
    })
}

fn data(t: &Tok) -> Vec<u8> {
    t.s.as_bytes().to_vec()
}

fn version(o: &Opts, i: usize) -> Result<Option<i32>> {
    o.pos
        .get(i)
        .map(|t| {
            t.s.parse::<i32>()
                .with_context(|| format!("version {:?}", t.s))
        })
        .transpose()
}

/// Parsed arguments of a create (in a step or a multi).
struct CreateArgs {
    path: String,
    data: Vec<u8>,
    mode: CreateMode,
    acls: Vec<Acl>,
    ttl: Option<Duration>,
}

/// The data argument at position `i`, repeated `--repeat=N` times (large
/// values without writing them out).
fn data_arg(o: &Opts, i: usize) -> Result<Vec<u8>> {
    let d = data(o.pos.get(i).context("missing data")?);
    Ok(match o.num("repeat")? {
        Some(n) if n >= 0 => d.repeat(n as usize),
        Some(n) => bail!("--repeat={n}: not a count"),
        None => d,
    })
}

/// A long answer in a few words: its length and an FNV-1a hash (the
/// recording stays small, a difference in any byte still shows).
fn summary(b: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("len={} fnv={h:016x}", b.len())
}

/// Sorted child names as one summary (`--summary`).
fn names_summary(v: &[String]) -> String {
    format!("n={} names({})", v.len(), summary(v.join("/").as_bytes()))
}

fn create_args(args: &[Tok]) -> Result<CreateArgs> {
    let o = Opts::split(args);
    o.check(&["acl", "ttl", "repeat"])?;
    Ok(CreateArgs {
        path: o.arg(0, "path")?.to_string(),
        data: data_arg(&o, 1)?,
        mode: parse_mode(o.pos.get(2).map(|t| t.s.as_str()).unwrap_or("persistent"))?,
        acls: parse_acls(o.val("acl").unwrap_or("open"))?,
        ttl: o.num("ttl")?.map(|ms| Duration::from_millis(ms as u64)),
    })
}

impl CreateArgs {
    fn options(&self) -> zk::CreateOptions<'_> {
        let o = self.mode.with_acls(Acls::new(&self.acls));
        match self.ttl {
            Some(t) => o.with_ttl(t),
            None => o,
        }
    }
}

async fn timed<T>(f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {OP_TIMEOUT:?}"))
}

impl super::Steps for Runner {
    async fn step(&mut self, st: &Step) -> Result<Vec<String>> {
        Runner::step(self, st).await
    }
}

impl Runner {
    fn zxid(&mut self, z: i64) -> String {
        if z == 0 || z == -1 {
            return z.to_string();
        }
        let n = self.zxids.len() + 1;
        format!("Z{}", self.zxids.entry(z).or_insert(n))
    }

    fn owner(&self, o: i64) -> String {
        if o == 0 {
            return "0".into();
        }
        match self.session_names.get(&o) {
            Some(name) => format!("session:{name}"),
            None => format!("{o:#x}"),
        }
    }

    fn stat(&mut self, s: &Stat) -> String {
        // A wall-clock time within a day of now is normalized; anything
        // else (0, garbage) is shown as is.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let time = |t: i64| {
            if (t - now).abs() < 86_400_000 {
                "T".to_string()
            } else {
                t.to_string()
            }
        };
        format!(
            "stat(czxid={} mzxid={} pzxid={} ctime={} mtime={} version={} cversion={} aversion={} ephemeralOwner={} dataLength={} numChildren={})",
            self.zxid(s.czxid),
            self.zxid(s.mzxid),
            self.zxid(s.pzxid),
            time(s.ctime),
            time(s.mtime),
            s.version,
            s.cversion,
            s.aversion,
            self.owner(s.ephemeral_owner),
            s.data_length,
            s.num_children
        )
    }

    fn event(&mut self, e: &zk::WatchedEvent) -> String {
        let mut s = format!("{:?}", e.event_type);
        if !e.path.is_empty() {
            s.push(' ');
            s.push_str(&e.path);
        }
        if e.event_type == zk::EventType::Session {
            s.push_str(&format!(" state={:?}", e.session_state));
        }
        if e.zxid != -1 {
            s.push_str(&format!(" zxid={}", self.zxid(e.zxid)));
        }
        s
    }

    async fn connect(
        &mut self,
        name: &str,
        timeout_ms: u64,
        auth: Option<&str>,
        version: (u32, u32, u32),
        chroot: Option<&str>,
    ) -> Result<std::result::Result<zk::Client, zk::Error>> {
        let mut c = zk::Client::connector();
        c.session_timeout(Duration::from_millis(timeout_ms))
            .server_version(version.0, version.1, version.2);
        if let Some(a) = auth {
            let (scheme, cred) = a.split_once(':').context("--auth=SCHEME:CRED")?;
            c.auth(scheme.to_string(), cred.as_bytes().to_vec());
        }
        let target = format!("{}{}", self.addr, chroot.unwrap_or(""));
        let res = timed(c.connect(&target)).await?;
        if let Ok(client) = &res {
            self.session_names
                .insert(client.session_id().0, name.to_string());
            self.clients.insert(name.to_string(), client.clone());
        }
        Ok(res)
    }

    /// The session's client, connecting it (10 s timeout) on first use.
    async fn client(&mut self, name: &str) -> Result<zk::Client> {
        if let Some(c) = self.clients.get(name) {
            return Ok(c.clone());
        }
        match self.connect(name, 10_000, None, (3, 8, 0), None).await? {
            Ok(c) => Ok(c),
            Err(e) => bail!("implicit connect of session {name}: {e:?}"),
        }
    }

    /// Runs one step: one function per operation, each returning the
    /// step's transcript lines.
    async fn step(&mut self, st: &Step) -> Result<Vec<String>> {
        match st.op.as_str() {
            "connect" => self.op_connect(st).await,
            "close" => self.op_close(st).await,
            "sleep" => self.op_sleep(st).await,
            "create" => self.op_create(st).await,
            "create-children" => self.op_create_children(st).await,
            "delete" => self.op_delete(st).await,
            "exists" => self.op_exists(st).await,
            "get" => self.op_get(st).await,
            "set" => self.op_set(st).await,
            "children" => self.op_children(st).await,
            "list" => self.op_list(st).await,
            "count" => self.op_count(st).await,
            "ephemerals" => self.op_ephemerals(st).await,
            "get-acl" => self.op_get_acl(st).await,
            "set-acl" => self.op_set_acl(st).await,
            "auth" => self.op_auth(st).await,
            "whoami" => self.op_whoami(st).await,
            "sync" => self.op_sync(st).await,
            "config" => self.op_config(st).await,
            "reconfig" => self.op_reconfig(st).await,
            "watch-data" | "watch-exists" | "watch-children" | "add-watch" => {
                self.op_watch(st).await
            }
            "events" => self.op_events(st).await,
            "remove-watch" => self.op_remove_watch(st).await,
            "multi" => self.op_multi(st).await,
            "multi-read" => self.op_multi_read(st).await,
            op => bail!("unknown zk op {op:?}"),
        }
    }

    async fn op_connect(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&["timeout", "auth", "assume-version", "chroot"])?;
        if self.clients.contains_key(&st.session) {
            bail!("session {} is already connected", st.session);
        }
        let t = o.num("timeout")?.unwrap_or(10_000) as u64;
        let v: Vec<u32> = o
            .val("assume-version")
            .unwrap_or("3.8.0")
            .split('.')
            .map(|x| x.parse().context("--assume-version=X.Y.Z"))
            .collect::<Result<_>>()?;
        let v = match v[..] {
            [a, b, c] => (a, b, c),
            _ => bail!("--assume-version=X.Y.Z"),
        };
        match self
            .connect(&st.session, t, o.val("auth"), v, o.val("chroot"))
            .await?
        {
            Ok(c) => out.push(format!(
                "connected timeout={}ms",
                c.session_timeout().as_millis()
            )),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_close(&mut self, st: &Step) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let c = self
            .clients
            .remove(&st.session)
            .with_context(|| format!("session {} is not open", st.session))?;
        let mut state = c.state_watcher();
        drop(c);
        let end = timed(async {
            loop {
                let s = state.changed().await;
                if s.is_terminated() {
                    return s;
                }
            }
        })
        .await?;
        out.push(format!("closed state={end:?}"));
        Ok(out)
    }

    async fn op_sleep(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        let ms: u64 = o.arg(0, "milliseconds")?.parse()?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        out.push("ok".into());
        Ok(out)
    }

    async fn op_create(&mut self, st: &Step) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let c = self.client(&st.session).await?;
        let a = create_args(&st.args)?;
        match timed(c.create(&a.path, &a.data, &a.options())).await? {
            Ok((stat, seq)) => {
                let path = if seq.into_i64() >= 0 {
                    format!("{}{:010}", a.path, seq.into_i64())
                } else {
                    a.path.clone()
                };
                let s = self.stat(&stat);
                out.push(format!("ok {path} {s}"));
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    /// `create-children PARENT N [--name-len=L]`: N persistent, empty
    /// children named by their index, zero-padded to L characters
    /// (default 10), created 64 at a time (pipelined on one session).
    async fn op_create_children(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        o.check(&["name-len"])?;
        let c = self.client(&st.session).await?;
        let parent = o.arg(0, "parent")?.trim_end_matches('/').to_string();
        let n: usize = o.arg(1, "count")?.parse().context("count")?;
        let len = o.num("name-len")?.unwrap_or(10) as usize;
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let mut created = 0;
        let mut first_err = None;
        let paths: Vec<String> = (0..n).map(|i| format!("{parent}/{i:0>len$}")).collect();
        for chunk in paths.chunks(64) {
            let calls = chunk.iter().map(|p| c.create(p, b"", &opts));
            for r in timed(futures::future::join_all(calls)).await? {
                match r {
                    Ok(_) => created += 1,
                    Err(e) => {
                        first_err.get_or_insert(zerr(&e));
                    }
                }
            }
        }
        Ok(vec![match first_err {
            None => format!("ok created={created}"),
            Some(e) => format!("{e} created={created}"),
        }])
    }

    async fn op_delete(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.delete(o.arg(0, "path")?, version(&o, 1)?)).await? {
            Ok(()) => out.push("ok".into()),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_exists(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.check_stat(o.arg(0, "path")?)).await? {
            Ok(Some(s)) => out.push(format!("ok {}", self.stat(&s))),
            Ok(None) => out.push("ok none".into()),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_get(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&["summary", "lines"])?;
        let c = self.client(&st.session).await?;
        match timed(c.get_data(o.arg(0, "path")?)).await? {
            Ok((d, s)) if o.has("summary") => {
                out.push(format!("ok data({}) {}", summary(&d), self.stat(&s)))
            }
            Ok((d, s)) if o.has("lines") => self.config_lines(&d, &s, &mut out),
            Ok((d, s)) => {
                let d = self.name_ports(&quote(&d));
                out.push(format!("ok {d} {}", self.stat(&s)))
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_set(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&["repeat"])?;
        let c = self.client(&st.session).await?;
        let d = data_arg(&o, 1)?;
        match timed(c.set_data(o.arg(0, "path")?, &d, version(&o, 2)?)).await? {
            Ok(s) => out.push(format!("ok {}", self.stat(&s))),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_children(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&["summary"])?;
        let c = self.client(&st.session).await?;
        match timed(c.get_children(o.arg(0, "path")?)).await? {
            Ok((mut v, s)) if o.has("summary") => {
                v.sort();
                out.push(format!("ok {} {}", names_summary(&v), self.stat(&s)))
            }
            Ok((mut v, s)) => {
                v.sort();
                out.push(format!("ok [{}] {}", v.join(", "), self.stat(&s)))
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_list(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&["summary"])?;
        let c = self.client(&st.session).await?;
        match timed(c.list_children(o.arg(0, "path")?)).await? {
            Ok(mut v) if o.has("summary") => {
                v.sort();
                out.push(format!("ok {}", names_summary(&v)))
            }
            Ok(mut v) => {
                v.sort();
                out.push(format!("ok [{}]", v.join(", ")))
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_count(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.count_descendants_number(o.arg(0, "path")?)).await? {
            Ok(n) => out.push(format!("ok {n}")),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_ephemerals(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.list_ephemerals(o.arg(0, "path")?)).await? {
            Ok(mut v) => {
                v.sort();
                out.push(format!("ok [{}]", v.join(", ")))
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_get_acl(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.get_acl(o.arg(0, "path")?)).await? {
            Ok((a, s)) => out.push(format!("ok {} {}", fmt_acls(&a), self.stat(&s))),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_set_acl(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        let acls = parse_acls(o.arg(1, "acl")?)?;
        let v = version(&o, 2)?;
        match timed(c.set_acl(o.arg(0, "path")?, &acls, v)).await? {
            Ok(s) => out.push(format!("ok {}", self.stat(&s))),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_auth(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        let scheme = o.arg(0, "scheme")?.to_string();
        let cred = o.arg(1, "credentials")?.as_bytes().to_vec();
        match timed(c.auth(scheme, cred)).await? {
            Ok(()) => out.push("ok".into()),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_whoami(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.list_auth_users()).await? {
            Ok(users) => {
                let mut v: Vec<String> = users
                    .iter()
                    .map(|u| format!("{}:{}", u.scheme(), u.user()))
                    .collect();
                v.sort();
                out.push(format!("ok [{}]", v.join(", ")))
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_sync(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.sync(o.arg(0, "path")?)).await? {
            Ok(()) => out.push("ok".into()),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_config(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        match timed(c.get_config()).await? {
            Ok((d, s)) => self.config_lines(&d, &s, &mut out),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_reconfig(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        // `reconfig SERVER...` (non-incremental: the new members), or
        // `reconfig --add=SERVER,... --remove=ID,...` (incremental);
        // `--from=VERSION` (hex, as the config's `version=` line) makes it
        // conditional. Standalone servers refuse it.
        o.check(&["add", "remove", "from"])?;
        let c = self.client(&st.session).await?;
        let list = |k: &str| -> Vec<String> {
            o.val(k)
                .map(|v| v.split(',').map(|s| self.port_numbers(s)).collect())
                .unwrap_or_default()
        };
        let (adds, removes) = (list("add"), list("remove"));
        let servers: Vec<String> = o.pos.iter().map(|t| self.port_numbers(&t.s)).collect();
        let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
        let from = o
            .val("from")
            .map(|v| i64::from_str_radix(v, 16).with_context(|| format!("--from={v}: hex")))
            .transpose()?;
        let update = if o.has("add") || o.has("remove") {
            zk::EnsembleUpdate::Incremental {
                joinings: adds.iter().map(String::as_str),
                leavings: removes.iter().map(String::as_str),
            }
        } else {
            // Its own call: the iterator types of the two arms differ.
            return self.reconfig_new(&c, &servers, from).await;
        };
        match timed(c.update_ensemble(update, from)).await? {
            Ok((d, s)) => self.config_lines(&d, &s, &mut out),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn reconfig_new(
        &mut self,
        c: &zk::Client,
        servers: &[&str],
        from: Option<i64>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let update = zk::EnsembleUpdate::New {
            ensemble: servers.iter().copied(),
        };
        match timed(c.update_ensemble(update, from)).await? {
            Ok((d, s)) => self.config_lines(&d, &s, &mut out),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    /// A configuration answer: `ok "" stat(...)` when empty, else
    /// `ok stat(...)` and one line per line of the text, the server's own
    /// ports shown by name (`:CLIENT`, `:QUORUM`, `:ELECTION`).
    fn config_lines(&mut self, d: &[u8], s: &Stat, out: &mut Vec<String>) {
        if d.is_empty() {
            out.push(format!("ok \"\" {}", self.stat(s)));
            return;
        }
        out.push(format!("ok {}", self.stat(s)));
        for l in String::from_utf8_lossy(d).lines() {
            out.push(format!("  {}", self.name_ports(l)));
        }
    }

    /// `s` with `:CLIENT`, `:QUORUM`, `:ELECTION` replaced by the server's
    /// own ports (a scenario names them so).
    fn port_numbers(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (p, name) in &self.ports {
            s = s.replace(&format!(":{name}"), &format!(":{p}"));
        }
        s
    }

    /// `l` with each `:PORT` of the server's own ports replaced by its name.
    fn name_ports(&self, l: &str) -> String {
        let mut out = String::new();
        let mut rest = l;
        while let Some(i) = rest.find(':') {
            out.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            let name = rest[..n]
                .parse::<u16>()
                .ok()
                .and_then(|p| self.ports.iter().find(|(q, _)| *q == p));
            if let Some((_, name)) = name {
                out.push_str(name);
                rest = &rest[n..];
            }
        }
        out.push_str(rest);
        out
    }

    async fn op_watch(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let c = self.client(&st.session).await?;
        let name = o.arg(0, "watch name")?.to_string();
        if self.watches.contains_key(&name) {
            bail!("watch {name} already exists");
        }
        let path = o.arg(1, "path")?;
        let watch = match st.op.as_str() {
            "watch-data" => match timed(c.get_and_watch_data(path)).await? {
                Ok((d, s, w)) => {
                    out.push(format!("ok {} {}", quote(&d), self.stat(&s)));
                    Some(Watch::Armed(w))
                }
                Err(e) => {
                    out.push(zerr(&e));
                    None
                }
            },
            "watch-exists" => match timed(c.check_and_watch_stat(path)).await? {
                Ok((s, w)) => {
                    match s {
                        Some(s) => out.push(format!("ok {}", self.stat(&s))),
                        None => out.push("ok none".into()),
                    }
                    Some(Watch::Armed(w))
                }
                Err(e) => {
                    out.push(zerr(&e));
                    None
                }
            },
            "watch-children" => match timed(c.get_and_watch_children(path)).await? {
                Ok((mut v, s, w)) => {
                    v.sort();
                    out.push(format!("ok [{}] {}", v.join(", "), self.stat(&s)));
                    Some(Watch::Armed(w))
                }
                Err(e) => {
                    out.push(zerr(&e));
                    None
                }
            },
            _ => {
                let mode = match o.arg(2, "persistent|recursive")? {
                    "persistent" => AddWatchMode::Persistent,
                    "recursive" => AddWatchMode::PersistentRecursive,
                    m => bail!("watch mode {m:?}: persistent|recursive"),
                };
                match timed(c.watch(path, mode)).await? {
                    Ok(w) => {
                        out.push("ok".into());
                        Some(Watch::Persistent(Some(w)))
                    }
                    Err(e) => {
                        out.push(zerr(&e));
                        None
                    }
                }
            }
        };
        if let Some(watch) = watch {
            self.watches.insert(
                name,
                WatchEntry {
                    session: st.session.clone(),
                    watch,
                },
            );
        }
        Ok(out)
    }

    async fn op_events(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let name = o.arg(0, "watch name")?;
        let session = self
            .watches
            .get(name)
            .with_context(|| format!("no watch {name}"))?
            .session
            .clone();
        // A round trip on the watch's connection: ZooKeeper writes
        // every notification for changes up to this read's zxid
        // before the reply (janus: D6).
        if let Some(c) = self.clients.get(&session).cloned() {
            let _ = timed(c.check_stat("/")).await?;
        }
        let entry = self.watches.get_mut(name).expect("checked");
        let mut events = Vec::new();
        match &mut entry.watch {
            Watch::Armed(_) => {
                let Watch::Armed(w) = std::mem::replace(&mut entry.watch, Watch::Polling(None))
                else {
                    unreachable!()
                };
                let mut fut: EventFuture = Box::pin(w.changed());
                match (&mut fut).now_or_never() {
                    Some(e) => events.push(e),
                    None => entry.watch = Watch::Polling(Some(fut)),
                }
            }
            Watch::Polling(f) => {
                if let Some(fut) = f {
                    if let Some(e) = fut.now_or_never() {
                        events.push(e);
                        *f = None;
                    }
                }
            }
            Watch::Persistent(w) => {
                if let Some(w) = w {
                    while let Some(e) = w.changed().now_or_never() {
                        let terminal = e.event_type == zk::EventType::Session
                            && e.session_state.is_terminated();
                        events.push(e);
                        if terminal {
                            break;
                        }
                    }
                }
            }
        }
        if events.is_empty() {
            out.push("none".into());
        }
        for e in &events {
            let s = self.event(e);
            out.push(s);
        }
        Ok(out)
    }

    async fn op_remove_watch(&mut self, st: &Step) -> Result<Vec<String>> {
        let o = Opts::split(&st.args);
        let mut out = Vec::new();
        o.check(&[])?;
        let name = o.arg(0, "watch name")?;
        let entry = self
            .watches
            .remove(name)
            .with_context(|| format!("no watch {name}"))?;
        let res = match entry.watch {
            Watch::Armed(w) => timed(w.remove()).await?,
            Watch::Persistent(Some(w)) => timed(w.remove()).await?,
            _ => bail!("watch {name} was already looked at; remove it before `events`"),
        };
        match res {
            Ok(()) => out.push("ok".into()),
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }

    async fn op_multi(&mut self, st: &Step) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let c = self.client(&st.session).await?;
        let mut w = c.new_multi_writer();
        for op in st.args.split(|t| t.is(";")) {
            let (kind, rest) = op.split_first().context("empty multi op")?;
            let ro = Opts::split(rest);
            match kind.s.as_str() {
                "create" => {
                    let a = create_args(rest)?;
                    if let Err(e) = w.add_create(&a.path, &a.data, &a.options()) {
                        bail!("client refused multi create: {e:?}");
                    }
                }
                "delete" => {
                    if let Err(e) = w.add_delete(ro.arg(0, "path")?, version(&ro, 1)?) {
                        bail!("client refused multi delete: {e:?}");
                    }
                }
                "set" => {
                    let d = data_arg(&ro, 1)?;
                    if let Err(e) = w.add_set_data(ro.arg(0, "path")?, &d, version(&ro, 2)?) {
                        bail!("client refused multi set: {e:?}");
                    }
                }
                "check" => {
                    let v = version(&ro, 1)?.context("check needs a version")?;
                    if let Err(e) = w.add_check_version(ro.arg(0, "path")?, v) {
                        bail!("client refused multi check: {e:?}");
                    }
                }
                k => bail!("multi op {k:?}: create|delete|set|check"),
            }
        }
        match timed(w.commit()).await? {
            Ok(results) => {
                out.push("ok".into());
                for r in results {
                    let line = match r {
                        zk::MultiWriteResult::Check => "  check".to_string(),
                        zk::MultiWriteResult::Delete => "  delete".to_string(),
                        zk::MultiWriteResult::Create { path, stat } => {
                            format!("  create {path} {}", self.stat(&stat))
                        }
                        zk::MultiWriteResult::SetData { stat } => {
                            format!("  set {}", self.stat(&stat))
                        }
                        other => format!("  {other:?}"),
                    };
                    out.push(line);
                }
            }
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                out.push(format!("error at op {index}: {source:?}"))
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => out.push(zerr(&source)),
        }
        Ok(out)
    }

    async fn op_multi_read(&mut self, st: &Step) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let c = self.client(&st.session).await?;
        let mut r = c.new_multi_reader();
        for op in st.args.split(|t| t.is(";")) {
            let (kind, rest) = op.split_first().context("empty multi-read op")?;
            let path = &rest.first().context("path")?.s;
            let res = match kind.s.as_str() {
                "get" => r.add_get_data(path),
                "children" => r.add_get_children(path),
                k => bail!("multi-read op {k:?}: get|children"),
            };
            if let Err(e) = res {
                bail!("client refused multi-read op: {e:?}");
            }
        }
        match timed(r.commit()).await? {
            Ok(results) => {
                out.push("ok".into());
                for r in results {
                    let line = match r {
                        zk::MultiReadResult::Data { data, stat } => {
                            format!("  data {} {}", quote(&data), self.stat(&stat))
                        }
                        zk::MultiReadResult::Children { mut children } => {
                            children.sort();
                            format!("  children [{}]", children.join(", "))
                        }
                        zk::MultiReadResult::Error { err } => format!("  {}", zerr(&err)),
                        other => format!("  {other:?}"),
                    };
                    out.push(line);
                }
            }
            Err(e) => out.push(zerr(&e)),
        }
        Ok(out)
    }
}
