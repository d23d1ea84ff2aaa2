//! Migration from etcd: the keyspace at one revision (paginated reads at
//! that revision), `create_revision`, `mod_revision`, `version` and leases
//! kept (leases re-granted with their remaining TTL before the keys that
//! use them), janus's revision set to the source's; then, with --follow,
//! the source's watch from the next revision, each event applied at its own
//! revision, so store and key revisions stay the source's and a watcher
//! resuming on janus from a source revision continues where it was.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client as etcd;
use janus_etcd::pb::migration as pb;

use super::target::Target;
use super::verify::{self, Entry, Side};
use super::{progress, EtcdArgs, Summary};

/// Keys per paginated read.
const PAGE: i64 = 1000;

async fn connect(urls: &str, what: &str) -> anyhow::Result<etcd::Client> {
    let eps: Vec<&str> = urls.split(',').collect();
    let opts = etcd::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    let mut c = match tokio::time::timeout(
        Duration::from_secs(10),
        etcd::Client::connect(&eps, Some(opts)),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => bail!("cannot reach {what} etcd at {urls}: {e}"),
        Err(_) => bail!("cannot reach {what} etcd at {urls}: no answer in 10 s"),
    };
    c.status()
        .await
        .with_context(|| format!("cannot reach {what} etcd at {urls}"))?;
    Ok(c)
}

fn range_of(prefix: &str) -> (Vec<u8>, etcd::GetOptions) {
    if prefix.is_empty() {
        (vec![0], etcd::GetOptions::new().with_from_key())
    } else {
        (
            prefix.as_bytes().to_vec(),
            etcd::GetOptions::new().with_prefix(),
        )
    }
}

/// Every key under `prefix` at `revision` (0: the current one), and the
/// revision read.
async fn read_all(
    c: &mut etcd::Client,
    prefix: &str,
    revision: i64,
    mut seen: impl FnMut(u64),
) -> anyhow::Result<(Vec<etcd::KeyValue>, i64)> {
    let (mut from, _) = range_of(prefix);
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    let mut rev = revision;
    loop {
        let mut opts = etcd::GetOptions::new().with_limit(PAGE);
        opts = if end.is_empty() {
            opts.with_from_key()
        } else {
            opts.with_range(end.clone())
        };
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let mut r = c
            .get(from.clone(), Some(opts))
            .await
            .with_context(|| format!("range at revision {rev}"))?;
        if rev == 0 {
            rev = r.header().map_or(0, |h| h.revision());
        }
        let kvs = r.take_kvs();
        let n = kvs.len();
        seen(n as u64);
        if let Some(last) = kvs.last() {
            from = last.key().to_vec();
            from.push(0);
        }
        out.extend(kvs);
        if (n as i64) < PAGE {
            break;
        }
    }
    Ok((out, rev))
}

/// etcd's range end for a prefix (empty: to the end of the keyspace).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

fn put_item(kv: &etcd::KeyValue, now_ms: i64) -> pb::Item {
    pb::Item {
        kind: Some(pb::item::Kind::Put(pb::Key {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            null_value: false,
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
            ctime: now_ms,
            mtime: now_ms,
            znode: None,
            tree: None,
        })),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Grants `id` on janus with the TTL it has left on the source (once).
async fn grant(
    source: &mut etcd::Client,
    janus: &mut etcd::Client,
    granted: &mut BTreeSet<i64>,
    id: i64,
) -> anyhow::Result<()> {
    if id == 0 || granted.contains(&id) {
        return Ok(());
    }
    let ttl = source
        .lease_time_to_live(id, None)
        .await
        .with_context(|| format!("source: lease {id:x} time to live"))?
        .ttl();
    if ttl > 0 {
        janus
            .lease_grant(ttl, Some(etcd::LeaseGrantOptions::new().with_id(id)))
            .await
            .with_context(|| format!("janus: grant lease {id:x}"))?;
    }
    granted.insert(id);
    Ok(())
}

fn side(kvs: &[etcd::KeyValue]) -> Side {
    kvs.iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                Entry {
                    data: kv.value().to_vec(),
                    acl: Vec::new(),
                    version: kv.version(),
                    other: vec![
                        ("create_revision", kv.create_revision()),
                        ("mod_revision", kv.mod_revision()),
                        ("lease", kv.lease()),
                    ],
                },
            )
        })
        .collect()
}

pub async fn run(a: EtcdArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let c = &a.common;
    let mut source = connect(&a.from, "source").await?;
    let mut janus = connect(&c.to, "janus").await?;
    let mut summary = Summary::default();
    if !c.verify_only {
        let mut t = Target::connect(&c.to).await?;
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
        let bar = progress::bar("keys", c.quiet);
        let (kvs, rev) = read_all(&mut source, &a.prefix, 0, |n| bar.inc(n)).await?;
        bar.finish_and_clear();
        for kv in &kvs {
            let size = kv.key().len() + kv.value().len();
            if size > t.max_item_bytes {
                bail!(
                    "{}: {size} bytes, above janus's limit of {} bytes (--max-request-bytes); nothing was imported",
                    String::from_utf8_lossy(kv.key()),
                    t.max_item_bytes
                );
            }
        }
        let lowest = kvs.iter().map(|kv| kv.mod_revision()).min().unwrap_or(0);
        t.begin(&format!("etcd {}", a.from), c.force, lowest)
            .await?;
        let r = copy_and_follow(&mut source, &mut janus, &mut t, &a, kvs, rev, &mut summary).await;
        if let Err(e) = r {
            let _ = t.end().await;
            return Err(e);
        }
        t.end().await?;
    } else {
        verify_into(&mut summary, &mut source, &mut janus, &a.prefix).await?;
        summary.seconds = started.elapsed().as_secs_f64();
    }
    Ok(summary)
}

async fn copy_and_follow(
    source: &mut etcd::Client,
    janus: &mut etcd::Client,
    t: &mut Target,
    a: &EtcdArgs,
    kvs: Vec<etcd::KeyValue>,
    rev: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let c = &a.common;
    let started = Instant::now();
    {
        let mut granted = BTreeSet::new();
        for kv in &kvs {
            grant(source, janus, &mut granted, kv.lease()).await?;
        }
        let now = now_ms();
        summary.bytes = kvs.iter().map(|kv| kv.value().len() as u64).sum();
        let items = kvs.iter().map(|kv| put_item(kv, now)).collect();
        let bar = progress::bar("importing", c.quiet);
        summary.copied = t
            .apply(items, rev, false, c.batch_bytes, |n| bar.inc(n))
            .await?;
        bar.finish_and_clear();
        summary.seconds = started.elapsed().as_secs_f64();
        if c.follow {
            summary.followed = follow(source, janus, t, a, rev, &mut granted).await?;
        }
        // The source's revision may have moved on outside the prefix.
        let (_, last) = read_all(source, &a.prefix, 0, |_| {}).await?;
        t.apply(Vec::new(), last, false, c.batch_bytes, |_| {})
            .await?;
        // Leases the source no longer has (their keys are gone already);
        // the others start a fresh TTL on janus, as a keepalive would.
        let src_leases: BTreeSet<i64> = source
            .leases()
            .await
            .context("source: lease list")?
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        for id in &granted {
            if !src_leases.contains(id) {
                let _ = janus.lease_revoke(*id).await;
            }
        }
        verify_into(summary, source, janus, &a.prefix).await?;
        for id in granted.iter().filter(|id| src_leases.contains(id)) {
            if let Ok((mut keeper, _)) = janus.lease_keep_alive(*id).await {
                let _ = keeper.keep_alive().await;
            }
        }
    }
    Ok(())
}

async fn verify_into(
    summary: &mut Summary,
    source: &mut etcd::Client,
    janus: &mut etcd::Client,
    prefix: &str,
) -> anyhow::Result<()> {
    let (src, src_rev) = read_all(source, prefix, 0, |_| {}).await?;
    let (dst, dst_rev) = read_all(janus, prefix, 0, |_| {}).await?;
    let (s, d) = (side(&src), side(&dst));
    summary.source = verify::digest(&s);
    summary.target = verify::digest(&d);
    let (n, mut first) = verify::compare(&s, &d);
    summary.differences = n;
    if src_rev != dst_rev {
        summary.differences += 1;
        first.push(format!("store revision {src_rev} vs {dst_rev}"));
    }
    summary.first_differences = first;
    Ok(())
}

/// Applies the source's events from `rev + 1` on, each at its own revision.
async fn follow(
    source: &mut etcd::Client,
    janus: &mut etcd::Client,
    t: &mut Target,
    a: &EtcdArgs,
    rev: i64,
    granted: &mut BTreeSet<i64>,
) -> anyhow::Result<u64> {
    let (key, _) = range_of(&a.prefix);
    let mut opts = etcd::WatchOptions::new().with_start_revision(rev + 1);
    let end = prefix_end(&a.prefix);
    opts = if end.is_empty() {
        opts.with_from_key()
    } else {
        opts.with_range(end)
    };
    let (_w, mut stream) = source
        .watch(key, Some(opts))
        .await
        .context("source: watch")?;
    let stop = super::stop_signal();
    tokio::pin!(stop);
    let idle = a.common.idle();
    let mut last_change = Instant::now();
    let mut followed = 0u64;
    loop {
        let wait = idle.map_or(Duration::from_secs(3600), |d| {
            d.saturating_sub(last_change.elapsed())
        });
        let msg = tokio::select! {
            _ = &mut stop => break,
            m = tokio::time::timeout(wait.max(Duration::from_millis(1)), stream.message()) => m,
        };
        let resp = match msg {
            Err(_) if idle.is_some() => break,
            Err(_) => continue,
            Ok(Err(e)) => bail!("source watch failed: {e}"),
            Ok(Ok(None)) => bail!("source watch ended"),
            Ok(Ok(Some(r))) => r,
        };
        if resp.canceled() {
            bail!("source watch canceled: {}", resp.cancel_reason());
        }
        if resp.events().is_empty() {
            continue;
        }
        last_change = Instant::now();
        let now = now_ms();
        let mut items = Vec::new();
        let mut top = 0;
        for e in resp.events() {
            let Some(kv) = e.kv() else { continue };
            top = top.max(kv.mod_revision());
            match e.event_type() {
                etcd::EventType::Put => {
                    grant(source, janus, granted, kv.lease()).await?;
                    items.push(put_item(kv, now));
                }
                etcd::EventType::Delete => items.push(pb::Item {
                    kind: Some(pb::item::Kind::Delete(pb::Deletion {
                        key: kv.key().to_vec(),
                        revision: kv.mod_revision(),
                    })),
                }),
            }
        }
        followed += t
            .apply(items, top, false, a.common.batch_bytes, |_| {})
            .await?;
    }
    Ok(followed)
}
