//! Log setup: `--log-level`, `--log-format`, and `RUST_LOG` overriding both
//! filters.
//!
//! Quiet by default: janus's own crates log at the chosen level (INFO:
//! lifecycle lines such as start, leader changes, shutdown), every
//! dependency (fjall, lsm-tree, raft-rs, h2, hyper, tonic) only at WARN, so
//! a healthy start prints a handful of lines. `RUST_LOG` (tracing's
//! `EnvFilter` syntax, e.g. `RUST_LOG=debug,fjall=trace`) replaces that
//! filter entirely for debugging. Logs go to stderr, as etcd's do.

use anyhow::bail;
use tracing_subscriber::EnvFilter;

/// janus's own tracing targets (crate names, plus the `raft` target core
/// forwards raft-rs's records under, which stays a dependency's).
const OWN_TARGETS: [&str; 4] = ["janus", "janus_core", "janus_zk", "janus_etcd"];

/// The filter for `level` without `RUST_LOG`.
fn default_filter(level: &str) -> anyhow::Result<String> {
    let level = match level {
        "debug" | "info" | "warn" | "error" => level,
        // etcd's remaining levels: janus has no separate panic/fatal.
        "panic" | "fatal" => "error",
        _ => bail!("--log-level must be one of debug, info, warn, error"),
    };
    let mut directives = vec!["warn".to_string()];
    directives.extend(OWN_TARGETS.iter().map(|t| format!("{t}={level}")));
    Ok(directives.join(","))
}

/// Installs the global subscriber.
pub fn init(level: &str, format: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("bad RUST_LOG {v:?}: {e}"))?
        }
        _ => EnvFilter::try_new(default_filter(level)?)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        "text" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        _ => bail!("--log-format must be text or json"),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_stay_at_warn() {
        assert_eq!(
            default_filter("info").ok().as_deref(),
            Some("warn,janus=info,janus_core=info,janus_zk=info,janus_etcd=info")
        );
        assert!(default_filter("verbose").is_err());
        assert_eq!(
            default_filter("fatal").ok().as_deref(),
            Some("warn,janus=error,janus_core=error,janus_zk=error,janus_etcd=error")
        );
    }
}
