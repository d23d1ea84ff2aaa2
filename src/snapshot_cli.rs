//! `janus snapshot status FILE` and `janus snapshot restore FILE ...`, as
//! `etcdutl snapshot status/restore`: the file is etcd's bbolt snapshot
//! (from `etcdctl snapshot save` against janus or against etcd itself,
//! [`janus_etcd::snapshot_file`]).
//!
//! Restore writes a new member data dir: a janus snapshot comes back whole
//! (its `janus` bucket), an etcd snapshot from its `key`, `lease`, `meta`
//! and auth buckets (revisions, compaction point, leases, users, roles and
//! the auth flag kept, as etcd's restore keeps them; keys become implicit
//! znodes). The member list is not in the data dir: start
//! each restored member with the same `--name`, `--initial-cluster` and
//! `--initial-advertise-peer-urls` given here, as with etcd, and it
//! bootstraps a new cluster whose revisions continue from the snapshot's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use janus_core::backup::{restore, Source};
use janus_etcd::snapshot_file;

#[derive(Parser, Debug)]
#[command(
    name = "janus snapshot",
    bin_name = "janus snapshot",
    about = "Inspect or restore an etcd-format snapshot file"
)]
struct SnapshotArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Hash, revision, total keys and size of a snapshot file (the numbers
    /// `etcdctl snapshot status` reports).
    Status {
        file: PathBuf,
        /// `simple`, `table` or `json`.
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
    /// Writes a new member data dir from a snapshot file.
    Restore {
        file: PathBuf,
        #[arg(long, default_value = "default")]
        name: String,
        /// Defaults to `<name>.janus`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        initial_cluster: Option<String>,
        #[arg(long)]
        initial_advertise_peer_urls: Option<String>,
        #[arg(long, default_value = "janus-cluster")]
        initial_cluster_token: String,
        /// Restore a file whose sha256 is missing (a copied db file).
        #[arg(long)]
        skip_hash_check: bool,
    },
}

/// Runs `janus snapshot ...`; `args` starts with the program name.
pub fn main(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let mut args: Vec<String> = args.into_iter().collect();
    // "janus snapshot status f" → "janus snapshot" "status" "f".
    if args.len() > 1 {
        args.remove(1);
    }
    let parsed = SnapshotArgs::parse_from(args);
    match parsed.cmd {
        Cmd::Status { file, write_out } => status(&file, &write_out),
        Cmd::Restore {
            file,
            name,
            data_dir,
            initial_cluster,
            initial_advertise_peer_urls,
            initial_cluster_token,
            skip_hash_check,
        } => {
            check_membership(
                &name,
                initial_cluster.as_deref(),
                initial_advertise_peer_urls.as_deref(),
                &initial_cluster_token,
            )?;
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.janus")));
            restore_file(&file, &dir, skip_hash_check)
        }
    }
}

fn read_file(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn status(file: &Path, write_out: &str) -> anyhow::Result<()> {
    let bytes = read_file(file)?;
    let (db, _) = snapshot_file::split_checksum(&bytes).map_err(anyhow::Error::msg)?;
    let c = snapshot_file::read(db).map_err(anyhow::Error::msg)?;
    match write_out {
        "json" => println!(
            "{}",
            serde_json::json!({
                "hash": c.hash,
                "revision": c.revision,
                "totalKey": c.total_keys,
                "totalSize": c.total_size,
            })
        ),
        "table" => {
            println!("| HASH | REVISION | TOTAL KEYS | TOTAL SIZE |");
            println!(
                "| {:x} | {} | {} | {} |",
                c.hash, c.revision, c.total_keys, c.total_size
            );
        }
        _ => println!(
            "{:x}, {}, {}, {}",
            c.hash, c.revision, c.total_keys, c.total_size
        ),
    }
    Ok(())
}

/// etcdutl's check: this member must be in `--initial-cluster` with the
/// peer URLs it advertises.
fn check_membership(
    name: &str,
    initial_cluster: Option<&str>,
    peer_urls: Option<&str>,
    token: &str,
) -> anyhow::Result<()> {
    let (Some(ic), Some(urls)) = (initial_cluster, peer_urls) else {
        return Ok(());
    };
    let mine: Vec<String> = urls
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let listed: Vec<String> = ic
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, u)| u.to_string())
        .collect();
    if listed.is_empty() || mine.iter().any(|u| !listed.contains(u)) {
        bail!("--initial-cluster has no entry {name}= with the peer URLs {urls}");
    }
    let id = janus_core::members::member_id_for(&mine, token);
    eprintln!("restoring member {name} ({id:x})");
    Ok(())
}

fn restore_file(file: &Path, dir: &Path, skip_hash_check: bool) -> anyhow::Result<()> {
    let bytes = read_file(file)?;
    let (db, had_hash) = snapshot_file::split_checksum(&bytes).map_err(anyhow::Error::msg)?;
    if !had_hash && !skip_hash_check {
        bail!("snapshot missing hash but --skip-hash-check=false");
    }
    let c = snapshot_file::read(db).map_err(anyhow::Error::msg)?;
    if c.stale_janus {
        eprintln!(
            "the file's janus bucket predates etcd's changes (etcd restored a janus \
             snapshot and wrote this one): restoring from etcd's buckets"
        );
    }
    let from_janus = c.janus.is_some();
    let source = match c.janus {
        Some(b) => Source::Janus(b),
        None => Source::Portable {
            kvs: c.kvs,
            leases: c.leases,
            compact_revision: c.compact_revision,
            auth: c.auth,
        },
    };
    let r = restore(dir, source).with_context(|| format!("restore into {}", dir.display()))?;
    println!(
        "restored {} snapshot into {}: revision {}, {} MVCC records, {} leases",
        if from_janus { "a janus" } else { "an etcd" },
        dir.display(),
        r.revision,
        r.keys,
        r.leases
    );
    Ok(())
}
