//! Migration from ZooKeeper: read the source as a client, write znodes into
//! janus with their stats (D3: czxid = create_revision, mzxid =
//! mod_revision, version + 1 = etcd version; ctime, mtime, ACL, aversion,
//! and each parent's create counter (D5) and pzxid).
//!
//! Consistency of the copy: a persistent recursive watch on the subtree is
//! registered first, then `sync`, then the walk; a change made during the
//! walk is either already in what the walk read or arrives as an event and
//! is re-read afterwards (re-reading the node and its parent's stat, whose
//! cversion and pzxid the change moved). The parent's create counter is
//! recovered from its stat as `(cversion + numChildren) / 2`, the inverse of
//! ZooKeeper's `DataNode.copyStat`.
//!
//! What the client protocol cannot show: ephemerals are not copied (their
//! sessions live on the source; skipped and reported); whether a node is a
//! container or TTL node (ZooKeeper 3.8 reports ephemeralOwner 0 for both)
//! is read from the source's own snapshot and log with `--source-data-dir`
//! (`zk_files`), else those arrive as persistent nodes. Null data, which
//! the client library reads as empty, is told apart by asking the source
//! directly (`zk_null`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use janus_etcd::pb::migration as pb;
use zookeeper_client as zk;

use super::target::Target;
use super::verify::{self, Entry, Side};
use super::zk_files::{Kind, Kinds};
use super::{progress, Summary, ZkArgs};

/// Requests in flight per walk step (the client pipelines them on one
/// session).
const PARALLEL: usize = 64;

/// One znode as read from a server.
#[derive(Clone, Debug)]
struct Node {
    path: String,
    data: Vec<u8>,
    acl: Vec<zk::Acl>,
    stat: zk::Stat,
    /// Null data (found by [`mark_null`]; the client reads it as empty).
    null: bool,
    /// Container, TTL or neither (`None`: not known, no
    /// `--source-data-dir`); set by [`mark_kinds`] / [`mark_target_kinds`].
    kind: Option<Kind>,
}

fn perms(p: zk::Permission) -> i32 {
    [
        (zk::Permission::READ, 1),
        (zk::Permission::WRITE, 2),
        (zk::Permission::CREATE, 4),
        (zk::Permission::DELETE, 8),
        (zk::Permission::ADMIN, 16),
    ]
    .iter()
    .filter(|(bit, _)| p.has(*bit))
    .map(|(_, v)| v)
    .sum()
}

/// The create count of a parent (next sequential suffix, D5) from its
/// stat: ZooKeeper shows `2 * creates - numChildren` (Java int arithmetic).
fn creates(stat: &zk::Stat) -> i32 {
    ((stat.cversion as i64 + stat.num_children as i64).rem_euclid(1 << 32) / 2) as i32
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn is_system(path: &str) -> bool {
    path == "/zookeeper" || path.starts_with("/zookeeper/")
}

async fn connect(hosts: &str, digest: Option<&str>, what: &str) -> anyhow::Result<zk::Client> {
    let mut c = zk::Client::connector();
    c.connection_timeout(Duration::from_secs(5))
        .session_timeout(Duration::from_secs(30))
        .fail_eagerly();
    if let Some(d) = digest {
        c.auth("digest".to_string(), d.as_bytes().to_vec());
    }
    match tokio::time::timeout(Duration::from_secs(15), c.connect(hosts)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => bail!("cannot reach {what} ZooKeeper at {hosts}: {e}"),
        Err(_) => bail!("cannot reach {what} ZooKeeper at {hosts}: no answer in 15 s"),
    }
}

/// Reads one node (`None`: it does not exist).
async fn read(client: &zk::Client, path: &str) -> anyhow::Result<Option<Node>> {
    let (data, stat) = match client.get_data(path).await {
        Ok(d) => d,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => bail!("{path}: getData: {e}"),
    };
    let acl = match client.get_acl(path).await {
        Ok((acl, _)) => acl,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => bail!("{path}: getACL: {e}"),
    };
    Ok(Some(Node {
        path: path.to_string(),
        data,
        acl,
        stat,
        null: false,
        kind: None,
    }))
}

/// How long the source's files may lag behind what a client read from the
/// source (another member's dataDir, a log write not yet visible).
const KIND_WAIT: Duration = Duration::from_secs(10);

/// Sets [`Node::kind`] of `nodes` from the source's files, reading the
/// log's new tail when a node is newer than what was read.
async fn mark_kinds(kinds: &mut Option<Kinds>, nodes: &mut [Node]) -> anyhow::Result<()> {
    let Some(k) = kinds.as_mut() else {
        return Ok(());
    };
    let deadline = Instant::now() + KIND_WAIT;
    for n in nodes.iter_mut() {
        if is_ephemeral(n) {
            continue;
        }
        loop {
            if let Some(kind) = k.kind(&n.path, n.stat.czxid) {
                n.kind = Some(kind);
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: created at zxid {:#x}, but the source's files in {} end at zxid {:#x}: \
                     is --source-data-dir the dataDir of this source (and --source-data-log-dir \
                     its dataLogDir)?",
                    n.path,
                    n.stat.czxid,
                    k.dir().display(),
                    k.last_zxid
                );
            }
            tokio::task::block_in_place(|| k.refresh())?;
            if k.kind(&n.path, n.stat.czxid).is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

/// Sets [`Node::kind`] of nodes read from janus (its Import service knows
/// them).
async fn mark_target_kinds(t: &mut Target, root: &str, nodes: &mut [Node]) -> anyhow::Result<()> {
    let special: BTreeMap<Vec<u8>, Kind> = t
        .kinds(root)
        .await?
        .into_iter()
        .map(|k| {
            let kind = match pb::znode::Kind::try_from(k.kind) {
                Ok(pb::znode::Kind::Container) => Kind::Container,
                Ok(pb::znode::Kind::Ttl) => Kind::Ttl(k.ttl_ms),
                _ => Kind::Normal,
            };
            (k.path, kind)
        })
        .collect();
    for n in nodes.iter_mut() {
        n.kind = Some(
            special
                .get(n.path.as_bytes())
                .copied()
                .unwrap_or(Kind::Normal),
        );
    }
    Ok(())
}

/// Sets [`Node::null`] on the nodes with empty data that are null on the
/// server at `hosts` (its first host).
async fn mark_null(hosts: &str, digest: Option<&str>, nodes: &mut [Node]) -> anyhow::Result<()> {
    let host = hosts.split(',').next().unwrap_or(hosts);
    let empty: Vec<String> = nodes
        .iter()
        .filter(|n| n.data.is_empty())
        .map(|n| n.path.clone())
        .collect();
    let null = super::zk_null::null_paths(host, digest, &empty).await?;
    for n in nodes.iter_mut() {
        n.null = null.contains(&n.path);
    }
    Ok(())
}

/// One node of a walk with its children's names (`None`: it is gone).
type Read = anyhow::Result<Option<(Node, Vec<String>)>>;

/// Every node of the subtree under `root` (without the system nodes), in
/// path order, level by level with requests pipelined.
async fn walk(
    client: &zk::Client,
    root: &str,
    mut seen: impl FnMut(u64),
) -> anyhow::Result<Vec<Node>> {
    let mut out = Vec::new();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let read_all: Vec<Read> = stream::iter(level)
            .map(|p| async move {
                let Some(n) = read(client, &p).await? else {
                    return Ok(None);
                };
                let children = if n.stat.num_children > 0 {
                    match client.list_children(&p).await {
                        Ok(c) => c,
                        Err(zk::Error::NoNode) => Vec::new(),
                        Err(e) => bail!("{p}: getChildren: {e}"),
                    }
                } else {
                    Vec::new()
                };
                Ok(Some((n, children)))
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut next = Vec::new();
        for r in read_all {
            // A node deleted during the walk is simply absent: its event
            // is handled after the walk.
            let Some((n, children)) = r? else { continue };
            for c in children {
                let p = child_path(&n.path, &c);
                if !is_system(&p) {
                    next.push(p);
                }
            }
            seen(1);
            out.push(n);
        }
        level = next;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn is_ephemeral(n: &Node) -> bool {
    n.stat.ephemeral_owner != 0
}

/// The summary's line about node kinds.
fn kinds_note(kinds: &Option<Kinds>, nodes: &[Node]) -> String {
    let Some(k) = kinds else {
        return "kinds: not read (no --source-data-dir): containers and TTL nodes arrive as \
                persistent nodes"
            .to_string();
    };
    let count = |f: fn(&Kind) -> bool| {
        nodes
            .iter()
            .filter(|n| n.kind.as_ref().is_some_and(f))
            .count()
    };
    format!(
        "kinds: {} containers, {} TTL nodes (read from {})",
        count(|k| *k == Kind::Container),
        count(|k| matches!(k, Kind::Ttl(_))),
        k.dir().display()
    )
}

/// Checks what janus could not take before anything is written: the node
/// size against the target's limit, and ACLs janus cannot represent.
fn check(nodes: &[Node], max_item_bytes: usize) -> anyhow::Result<()> {
    for n in nodes {
        let size = n.path.len() + n.data.len();
        if size > max_item_bytes {
            bail!(
                "{}: {size} bytes, above janus's limit of {max_item_bytes} bytes (--max-request-bytes); nothing was imported",
                n.path
            );
        }
        // Core's rule for ACLs a client may set (the one the import applies
        // again), checked here for every node before anything is written.
        let acl: Vec<janus_core::znode::Acl> = n
            .acl
            .iter()
            .map(|a| janus_core::znode::Acl {
                perms: perms(a.permission()),
                id: janus_core::znode::Id {
                    scheme: a.scheme().to_string(),
                    id: a.id().to_string(),
                },
            })
            .collect();
        if janus_core::znode::acl::fixup(&acl, &[]).as_ref() != Ok(&acl) {
            let shown: Vec<String> = n
                .acl
                .iter()
                .map(|a| format!("{}:{}", a.scheme(), a.id()))
                .collect();
            bail!(
                "{}: ACL {} cannot be represented by janus (it enforces world:anyone, digest, ip and sasl); nothing was imported",
                n.path,
                shown.join(",")
            );
        }
    }
    Ok(())
}

/// The import items of one node: the key (unless it is an unwritten root)
/// with its own child counters.
fn item(n: &Node) -> pb::Item {
    let s = &n.stat;
    let counters = pb::Counters {
        path: n.path.as_bytes().to_vec(),
        creates: creates(s),
        pzxid: if s.pzxid == s.czxid { 0 } else { s.pzxid },
    };
    if n.path == "/" && s.mzxid == 0 {
        return pb::Item {
            kind: Some(pb::item::Kind::Tree(counters)),
        };
    }
    let key = pb::Key {
        key: n.path.as_bytes().to_vec(),
        value: n.data.clone(),
        null_value: n.null,
        // The root was never created: janus shows czxid 0 for it anyway.
        create_revision: if s.czxid == 0 { s.mzxid } else { s.czxid },
        mod_revision: s.mzxid,
        version: s.version as i64 + 1,
        lease: 0,
        ctime: s.ctime,
        mtime: s.mtime,
        znode: Some(pb::Znode {
            acl: n
                .acl
                .iter()
                .map(|a| pb::AclEntry {
                    perms: perms(a.permission()),
                    scheme: a.scheme().to_string(),
                    id: a.id().to_string(),
                })
                .collect(),
            aversion: s.aversion,
            kind: match n.kind {
                Some(Kind::Container) => pb::znode::Kind::Container,
                Some(Kind::Ttl(_)) => pb::znode::Kind::Ttl,
                Some(Kind::Normal) | None => pb::znode::Kind::Normal,
            } as i32,
            ttl_ms: match n.kind {
                Some(Kind::Ttl(t)) => t,
                _ => 0,
            },
        }),
        tree: Some(counters),
    };
    pb::Item {
        kind: Some(pb::item::Kind::Put(key)),
    }
}

/// The last zxid of the server (`srvr`, whitelisted by default), the
/// revision janus continues above.
async fn last_zxid(hosts: &str) -> anyhow::Result<i64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = hosts.split(',').next().unwrap_or(hosts);
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("srvr on {host}"))?;
    s.write_all(b"srvr").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .with_context(|| format!("srvr on {host}: no answer"))??;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: "))
        .with_context(|| format!("srvr on {host}: no Zxid line in {out:?}"))?;
    let hex = line.trim().trim_start_matches("0x");
    i64::from_str_radix(hex, 16).with_context(|| format!("srvr on {host}: bad zxid {line}"))
}

fn entry(n: &Node) -> Entry {
    let s = &n.stat;
    let mut e = Entry {
        data: n.data.clone(),
        acl: n
            .acl
            .iter()
            .map(|a| format!("{}:{}:{}", perms(a.permission()), a.scheme(), a.id()))
            .collect(),
        version: s.version as i64,
        other: vec![
            ("czxid", if n.path == "/" { 0 } else { s.czxid }),
            ("mzxid", s.mzxid),
            ("pzxid", s.pzxid),
            ("ctime", if n.path == "/" { 0 } else { s.ctime }),
            ("mtime", s.mtime),
            ("cversion", s.cversion as i64),
            ("aversion", s.aversion as i64),
            ("numChildren", s.num_children as i64),
            ("null data", i64::from(n.null)),
        ],
    };
    // Kinds are compared when they were read (both sides then have them).
    match n.kind {
        None => {}
        Some(Kind::Normal) => e.other.extend([("container", 0), ("ttl ms", 0)]),
        Some(Kind::Container) => e.other.extend([("container", 1), ("ttl ms", 0)]),
        Some(Kind::Ttl(t)) => e.other.extend([("container", 0), ("ttl ms", t)]),
    }
    e
}

/// The persistent nodes of a walk as a verification side.
fn side(nodes: &[Node]) -> Side {
    nodes
        .iter()
        .filter(|n| !is_ephemeral(n))
        .map(|n| (n.path.clone(), entry(n)))
        .collect()
}

/// Stats that count skipped ephemerals differ by design: numChildren and
/// cversion of their parents. Those two fields are dropped from the
/// comparison for such parents.
fn forgive_ephemeral_parents(source: &mut Side, target: &mut Side, skipped: &[String]) {
    let parents: BTreeSet<&str> = skipped.iter().filter_map(|p| parent_of(p)).collect();
    for side in [source, target] {
        for p in &parents {
            if let Some(e) = side.get_mut(*p) {
                e.other
                    .retain(|(n, _)| *n != "cversion" && *n != "numChildren");
            }
        }
    }
}

pub async fn run(a: ZkArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let c = &a.common;
    let source = connect(&a.from, a.digest.as_deref(), "source").await?;
    let mut target = if c.verify_only {
        None
    } else {
        Some(Target::connect(&c.to).await?)
    };
    let mut summary = Summary::default();
    if let Some(t) = target.as_mut() {
        let st = t.status().await?;
        if st.locked {
            bail!(
                "janus at {} is held by a migration from {}",
                c.to,
                st.source
            );
        }
        if st.live_keys > 0 && !c.force {
            bail!(
                "janus at {} is not empty ({} keys); refusing without --force",
                c.to,
                st.live_keys
            );
        }
    }
    // The kinds first: a damaged file is refused before anything else.
    let mut kinds = match &a.source_data_dir {
        Some(d) => Some(tokio::task::block_in_place(|| {
            Kinds::open(d, a.source_data_log_dir.as_deref())
        })?),
        None => None,
    };
    // Watch first, then sync, then walk: no change between is missed.
    let mut watcher = source
        .watch(&a.path, zk::AddWatchMode::PersistentRecursive)
        .await
        .with_context(|| format!("source: persistent recursive watch on {}", a.path))?;
    source
        .sync(&a.path)
        .await
        .with_context(|| format!("source: sync {}", a.path))?;
    let bar = progress::bar("znodes", c.quiet);
    let mut nodes = walk(&source, &a.path, |n| bar.inc(n))
        .await
        .with_context(|| format!("reading the source ZooKeeper at {}", a.from))?;
    bar.finish_and_clear();
    mark_null(&a.from, a.digest.as_deref(), &mut nodes).await?;
    mark_kinds(&mut kinds, &mut nodes).await?;
    summary.kinds = Some(kinds_note(&kinds, &nodes));
    if let Some(t) = target.as_mut() {
        check(&nodes, t.max_item_bytes)?;
        let lowest = nodes
            .iter()
            .filter(|n| !is_ephemeral(n) && n.stat.mzxid > 0)
            .map(|n| n.stat.mzxid)
            .min()
            .unwrap_or(0);
        t.begin(&format!("zookeeper {}", a.from), c.force, lowest)
            .await?;
        // A failure of the ZooKeeper client itself (a panic inside it) must
        // not leave janus locked either.
        let copied = std::panic::AssertUnwindSafe(copy_and_follow(
            &source,
            &mut watcher,
            t,
            &a,
            &nodes,
            &mut summary,
            &mut kinds,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "source: the ZooKeeper client failed; the source is gone or its session ended"
            ))
        });
        if let Err(e) = copied {
            // Leave janus writable; what was imported is kept (a rerun with
            // --force replaces it).
            let _ = t.end().await;
            return Err(e);
        }
    }
    verify_into(&source, &a, &mut summary, &mut kinds).await?;
    if let Some(t) = target.as_mut() {
        t.end().await?;
    }
    if summary.seconds == 0.0 {
        summary.seconds = started.elapsed().as_secs_f64();
    }
    Ok(summary)
}

async fn copy_and_follow(
    source: &zk::Client,
    watcher: &mut zk::PersistentWatcher,
    t: &mut Target,
    a: &ZkArgs,
    nodes: &[Node],
    summary: &mut Summary,
    kinds: &mut Option<Kinds>,
) -> anyhow::Result<()> {
    let c = &a.common;
    let started = Instant::now();
    {
        let bar = progress::bar("importing", c.quiet);
        let mut items = Vec::new();
        for n in nodes {
            if is_ephemeral(n) {
                summary.skipped.push(n.path.clone());
                continue;
            }
            summary.bytes += n.data.len() as u64;
            items.push(item(n));
        }
        let top = nodes.iter().map(|n| n.stat.mzxid).max().unwrap_or(0);
        summary.copied = t
            .apply(items, top, true, c.batch_bytes, |n| bar.inc(n))
            .await?;
        bar.finish_and_clear();
        let copy_secs = started.elapsed().as_secs_f64();
        tracing::info!(nodes = summary.copied, secs = copy_secs, "copied");
        summary.seconds = copy_secs;
        // Changes made during the walk, then (with --follow) until stopped.
        let idle = if c.follow {
            c.idle()
        } else {
            Some(Duration::ZERO)
        };
        summary.followed = follow(source, watcher, t, a, idle, &mut summary.skipped, kinds).await?;
        // Last sync, then a reconciling pass (setACL fires no watch; a
        // reconnect may lose events, ZOOKEEPER-4698) before verifying.
        source.sync(&a.path).await.context("source: final sync")?;
        reconcile(source, t, a, &mut summary.skipped, kinds).await?;
        let zxid = last_zxid(&a.from).await.unwrap_or(0);
        t.apply(
            Vec::new(),
            zxid.max(t.revision),
            true,
            c.batch_bytes,
            |_| {},
        )
        .await?;
    }
    Ok(())
}

/// Verification: both sides walked as ZooKeeper clients.
async fn verify_into(
    source: &zk::Client,
    a: &ZkArgs,
    summary: &mut Summary,
    kinds: &mut Option<Kinds>,
) -> anyhow::Result<()> {
    source.sync(&a.path).await.context("source: sync")?;
    let mut src_nodes = walk(source, &a.path, |_| {})
        .await
        .with_context(|| format!("reading the source ZooKeeper at {}", a.from))?;
    mark_null(&a.from, a.digest.as_deref(), &mut src_nodes).await?;
    mark_kinds(kinds, &mut src_nodes).await?;
    let janus = connect(&a.to_zk, a.digest.as_deref(), "janus").await?;
    let mut dst_nodes = walk(&janus, &a.path, |_| {})
        .await
        .with_context(|| format!("reading janus at {}", a.to_zk))?;
    mark_null(&a.to_zk, a.digest.as_deref(), &mut dst_nodes).await?;
    if kinds.is_some() {
        let mut t = Target::connect(&a.common.to).await?;
        mark_target_kinds(&mut t, &a.path, &mut dst_nodes).await?;
    }
    let skipped: Vec<String> = src_nodes
        .iter()
        .filter(|n| is_ephemeral(n))
        .map(|n| n.path.clone())
        .collect();
    let (mut s, mut d) = (side(&src_nodes), side(&dst_nodes));
    forgive_ephemeral_parents(&mut s, &mut d, &skipped);
    summary.source = verify::digest(&s);
    summary.target = verify::digest(&d);
    let (n, first) = verify::compare(&s, &d);
    summary.differences = n;
    summary.first_differences = first;
    if summary.skipped.is_empty() {
        summary.skipped = skipped;
    }
    Ok(())
}

/// Applies the source's changes as the watch reports them. `idle`: stop
/// after that long without a change (`None`: only on SIGINT/SIGTERM).
async fn follow(
    source: &zk::Client,
    watcher: &mut zk::PersistentWatcher,
    t: &mut Target,
    a: &ZkArgs,
    idle: Option<Duration>,
    skipped: &mut Vec<String>,
    kinds: &mut Option<Kinds>,
) -> anyhow::Result<u64> {
    let mut followed = 0;
    let stop = super::stop_signal();
    tokio::pin!(stop);
    let mut last_change = Instant::now();
    loop {
        let wait = match idle {
            Some(d) => d.saturating_sub(last_change.elapsed()),
            None => Duration::from_secs(3600),
        };
        let first = tokio::select! {
            _ = &mut stop => break,
            e = tokio::time::timeout(wait.max(Duration::from_millis(1)), watcher.changed()) => e,
        };
        let Ok(first) = first else {
            if idle.is_some() {
                break;
            }
            continue;
        };
        // Gather what else is ready (a burst is one batch).
        let mut paths = BTreeSet::new();
        let mut resync = false;
        let mut lost = None;
        let mut note = |e: zk::WatchedEvent, paths: &mut BTreeSet<String>| match e.event_type {
            zk::EventType::Session => match e.session_state {
                zk::SessionState::SyncConnected => resync = true,
                zk::SessionState::Disconnected => {}
                // Expired or closed: the source is gone (or lost quorum for
                // longer than the session lives); nothing more can be
                // followed, and the caller releases the migration lock.
                s => lost = Some(s),
            },
            _ if is_system(&e.path) => {}
            _ => {
                paths.insert(e.path);
            }
        };
        note(first, &mut paths);
        let deadline = Instant::now() + Duration::from_millis(20);
        while let Ok(e) = tokio::time::timeout_at(deadline.into(), watcher.changed()).await {
            note(e, &mut paths);
            if paths.len() >= 1000 {
                break;
            }
        }
        if let Some(state) = lost {
            bail!("source: session {state:?}; the source ZooKeeper is gone or lost its quorum, the follow stops here");
        }
        if resync {
            reconcile(source, t, a, skipped, kinds).await?;
        }
        if paths.is_empty() {
            continue;
        }
        last_change = Instant::now();
        followed += apply_changes(source, t, a, &paths, skipped, kinds).await?;
    }
    Ok(followed)
}

/// Re-reads `paths` and their parents and writes what they now are.
async fn apply_changes(
    source: &zk::Client,
    t: &mut Target,
    a: &ZkArgs,
    paths: &BTreeSet<String>,
    skipped: &mut Vec<String>,
    kinds: &mut Option<Kinds>,
) -> anyhow::Result<u64> {
    let mut want: BTreeSet<String> = paths.clone();
    for p in paths {
        if let Some(parent) = parent_of(p) {
            want.insert(parent.to_string());
        }
    }
    let read_all: Vec<(String, anyhow::Result<Option<Node>>)> = stream::iter(want)
        .map(|p| async move {
            let r = read(source, &p).await;
            (p, r)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut found = Vec::new();
    let mut gone = Vec::new();
    for (p, r) in read_all {
        match r? {
            Some(n) => found.push(n),
            None => gone.push(p),
        }
    }
    mark_null(&a.from, a.digest.as_deref(), &mut found).await?;
    mark_kinds(kinds, &mut found).await?;
    let mut now: BTreeMap<String, Option<Node>> = BTreeMap::new();
    for n in found {
        now.insert(n.path.clone(), Some(n));
    }
    for p in gone {
        now.insert(p, None);
    }
    let top = now
        .values()
        .flatten()
        .map(|n| n.stat.mzxid.max(n.stat.pzxid))
        .max()
        .unwrap_or(0);
    let mut deletes = Vec::new();
    let mut puts = Vec::new();
    for (p, n) in &now {
        match n {
            Some(n) if is_ephemeral(n) => {
                if !skipped.contains(p) {
                    skipped.push(p.clone());
                }
            }
            Some(n) => {
                check(std::slice::from_ref(n), t.max_item_bytes)?;
                puts.push(item(n));
            }
            None => {
                // Deleted: at its parent's pzxid (the zxid of the parent's
                // last child change), or the source's last zxid when the
                // parent is gone too.
                let rev = match parent_of(p)
                    .and_then(|q| now.get(q))
                    .and_then(|n| n.as_ref())
                {
                    Some(parent) => parent.stat.pzxid,
                    None => last_zxid(&a.from).await.unwrap_or(top),
                };
                deletes.push((p.clone(), rev));
            }
        }
    }
    // Children go before their parents.
    deletes.sort_by(|x, y| y.0.cmp(&x.0));
    let mut items: Vec<pb::Item> = deletes
        .into_iter()
        .map(|(p, rev)| pb::Item {
            kind: Some(pb::item::Kind::Delete(pb::Deletion {
                key: p.into_bytes(),
                revision: rev,
            })),
        })
        .collect();
    items.extend(puts);
    t.apply(items, top, true, a.common.batch_bytes, |_| {})
        .await
}

/// Makes janus equal to the source: writes every node whose stat or ACL
/// differs, deletes what the source no longer has.
async fn reconcile(
    source: &zk::Client,
    t: &mut Target,
    a: &ZkArgs,
    skipped: &mut Vec<String>,
    kinds: &mut Option<Kinds>,
) -> anyhow::Result<()> {
    let mut src = walk(source, &a.path, |_| {})
        .await
        .with_context(|| format!("reading the source ZooKeeper at {}", a.from))?;
    mark_null(&a.from, a.digest.as_deref(), &mut src).await?;
    mark_kinds(kinds, &mut src).await?;
    let janus = connect(&a.to_zk, a.digest.as_deref(), "janus").await?;
    let mut dst = walk(&janus, &a.path, |_| {})
        .await
        .with_context(|| format!("reading janus at {}", a.to_zk))?;
    mark_null(&a.to_zk, a.digest.as_deref(), &mut dst).await?;
    if kinds.is_some() {
        mark_target_kinds(t, &a.path, &mut dst).await?;
    }
    let dst: BTreeMap<&str, &Node> = dst.iter().map(|n| (n.path.as_str(), n)).collect();
    let mut changed = BTreeSet::new();
    let mut present = BTreeSet::new();
    for n in &src {
        present.insert(n.path.as_str());
        if is_ephemeral(n) {
            continue;
        }
        match dst.get(n.path.as_str()) {
            Some(d) if entry(d) == entry(n) => {}
            _ => {
                changed.insert(n.path.clone());
            }
        }
    }
    for p in dst.keys() {
        if !present.contains(p) {
            changed.insert(p.to_string());
        }
    }
    if !changed.is_empty() {
        tracing::info!(nodes = changed.len(), "reconciling");
        apply_changes(source, t, a, &changed, skipped, kinds).await?;
    }
    Ok(())
}
