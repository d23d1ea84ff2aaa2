//! Differential check: one scripted etcdctl session against a fresh real
//! etcd 3.4 and a fresh janus must print the same thing, revisions
//! included. Only cluster/member ids, raft terms and lease ids (random on
//! both) are normalized.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{error_lines, etcdctl, etcdctl_for};
use janus_conformance::harness::Janus;
use janus_conformance::reference::RealEtcd;
use serde_json::Value;

/// One step: etcdctl arguments (`{L1}` = the first granted lease id, in
/// hex), optional stdin, and for watches how long to let it run.
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    run_for: Option<Duration>,
}

const fn s(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        run_for: None,
    }
}
const fn txn(stdin: &'static str, json: bool) -> Step {
    Step {
        args: if json {
            &["txn", "-w", "json"]
        } else {
            &["txn"]
        },
        stdin: Some(stdin),
        run_for: None,
    }
}
const fn watch(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        run_for: Some(Duration::from_millis(1500)),
    }
}

const SESSION: &[Step] = &[
    s(&["put", "foo", "bar"]),
    s(&["put", "foo", "baz", "--prev-kv", "-w", "json"]),
    s(&["put", "foo", "baz"]),
    s(&["put", "foo2", "v2", "-w", "json"]),
    s(&["put", "bar", "1"]),
    s(&["put", "zoo", "z"]),
    s(&["get", "foo", "-w", "json"]),
    s(&["get", "foo"]),
    s(&["get", "foo", "--print-value-only"]),
    s(&["get", "nope", "-w", "json"]),
    s(&["get", "f", "--prefix", "-w", "json"]),
    s(&["get", "f", "--prefix", "--keys-only"]),
    s(&["get", "f", "--prefix", "--count-only", "-w", "json"]),
    s(&["get", "a", "--from-key", "--limit", "2", "-w", "json"]),
    s(&[
        "get",
        "",
        "--from-key",
        "--sort-by=MODIFY",
        "--order=DESCEND",
    ]),
    s(&["get", "", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]),
    s(&[
        "get",
        "",
        "--prefix",
        "--sort-by=CREATE",
        "--order=DESCEND",
        "--limit=2",
        "-w",
        "json",
    ]),
    s(&["get", "", "--prefix", "--sort-by=VERSION"]),
    s(&["get", "", "--prefix", "--order=DESCEND"]),
    s(&["get", "bar", "zoo", "-w", "json"]),
    s(&["get", "foo", "--rev", "2", "-w", "json"]),
    s(&["get", "foo", "--rev", "3"]),
    s(&["get", "foo", "--rev", "100"]),
    s(&["get", "f", "--prefix", "--consistency=s", "-w", "json"]),
    s(&["put", "foo", "--ignore-value", "-w", "json"]),
    s(&["put", "missing", "--ignore-value"]),
    s(&["put", "foo", "x", "--ignore-value"]),
    s(&["del", "foo2", "-w", "json"]),
    s(&["del", "nothing", "-w", "json"]),
    s(&["del", "nothing"]),
    s(&["put", "fa", "1"]),
    s(&["put", "fb", "2"]),
    s(&["del", "fa", "fc", "--prev-kv", "-w", "json"]),
    s(&["del", "f", "--prefix", "--prev-kv"]),
    txn(
        "value(\"bar\") = \"1\"\n\nput t1 a\nget bar\n\nput t2 b\n\n",
        true,
    ),
    txn(
        "version(\"bar\") > \"5\"\n\nput t1 a\n\nget t1\ndel t1\n\n",
        false,
    ),
    txn(
        "mod(\"zoo\") < \"100\"\ncreate(\"nope\") = \"0\"\n\nget zoo\n\n\n",
        true,
    ),
    txn("value(\"zzz\") != \"1\"\n\nput t3 c\n\n\n", true),
    txn("\nput t4 a\nput t4 b\n\n\n", false),
    s(&["lease", "grant", "100"]),
    s(&["put", "leased", "v", "--lease={L1}"]),
    s(&["put", "leased2", "v", "--lease={L1}", "-w", "json"]),
    s(&["put", "leased2", "w", "--ignore-lease", "-w", "json"]),
    s(&["get", "leased2", "-w", "json"]),
    s(&["lease", "timetolive", "{L1}", "--keys"]),
    s(&["lease", "list"]),
    s(&["lease", "keep-alive", "--once", "{L1}"]),
    s(&["lease", "revoke", "{L1}"]),
    s(&["get", "leased", "-w", "json"]),
    s(&["lease", "timetolive", "{L1}"]),
    s(&["lease", "revoke", "{L1}"]),
    s(&["lease", "keep-alive", "--once", "{L1}"]),
    s(&["put", "x", "y", "--lease=1234"]),
    s(&["lease", "list"]),
    watch(&["watch", "--rev", "2", "foo", "-w", "json"]),
    watch(&["watch", "--rev", "1", "--prefix", "f"]),
    watch(&["watch", "--rev", "3", "--prefix", "t", "--prev-kv"]),
    s(&["compaction", "5"]),
    s(&["get", "foo", "--rev", "3"]),
    s(&["get", "foo", "--rev", "5", "-w", "json"]),
    s(&["compaction", "4"]),
    s(&["compaction", "1000"]),
    watch(&["watch", "--rev", "2", "foo"]),
    s(&["get", "", "--prefix", "-w", "json"]),
    s(&["alarm", "list"]),
    s(&["put", "", "v"]),
];

/// What one step printed, normalized.
#[derive(Debug, PartialEq)]
struct Seen {
    code: Option<i32>,
    stdout: String,
    errors: String,
}

fn run_session(endpoint: &str) -> Vec<(String, Seen)> {
    let mut leases: Vec<i64> = Vec::new();
    let mut out = Vec::new();
    for step in SESSION {
        let args: Vec<String> = step
            .args
            .iter()
            .map(|a| {
                let mut a = a.to_string();
                for (i, l) in leases.iter().enumerate() {
                    a = a.replace(&format!("{{L{}}}", i + 1), &format!("{l:x}"));
                }
                a
            })
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = match step.run_for {
            Some(d) => etcdctl_for(endpoint, &argv, d),
            None => etcdctl(endpoint, &argv, step.stdin),
        };
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        if let Some(rest) = stdout.strip_prefix("lease ") {
            if let Some(hex) = rest.split_whitespace().next() {
                if rest.contains("granted with TTL") && !rest.contains("remaining") {
                    leases.push(i64::from_str_radix(hex, 16).expect("lease id in hex"));
                }
            }
        }
        let code = if step.run_for.is_some() {
            None
        } else {
            o.status.code()
        };
        let seen = Seen {
            code,
            stdout: normalize(&stdout, &leases),
            errors: normalize(&error_lines(&o.stderr), &leases),
        };
        out.push((format!("{argv:?} {:?}", step.stdin.unwrap_or("")), seen));
    }
    out
}

/// Replaces lease ids by `<Ln>`, zeroes ids/terms in JSON lines, and turns
/// `remaining(Ns)` of a `granted with TTL(Gs)` line into FULL (N = G) or
/// RUNNING (G-5 <= N < G): how long the steps took is not compared, but
/// etcd's rounding down of the remaining time is.
fn normalize(text: &str, leases: &[i64]) -> String {
    let ids: HashMap<i64, usize> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, i + 1))
        .collect();
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = match serde_json::from_str::<Value>(line) {
            Ok(mut v) if v.is_object() => {
                zero_ids(&mut v, &ids);
                v.to_string()
            }
            _ => line.to_string(),
        };
        let mut line = line;
        for (l, n) in &ids {
            line = line
                .replace(&format!("{l:016x}"), &format!("<L{n}>"))
                .replace(&format!("{l:x}"), &format!("<L{n}>"));
        }
        lines.push(sorted_attached_keys(&remaining_bucket(&line)));
    }
    lines.join("\n")
}

/// etcd lists a lease's keys from a Go map, in no fixed order: compare them
/// as a set.
fn sorted_attached_keys(line: &str) -> String {
    let Some(start) = line.find("attached keys([") else {
        return line.to_string();
    };
    let from = start + "attached keys([".len();
    let Some(len) = line[from..].find("])") else {
        return line.to_string();
    };
    let mut keys: Vec<&str> = line[from..from + len].split(' ').collect();
    keys.sort_unstable();
    format!("{}{}{}", &line[..from], keys.join(" "), &line[from + len..])
}

fn remaining_bucket(line: &str) -> String {
    let num = |after: &str| -> Option<(usize, i64)> {
        let i = line.find(after)? + after.len();
        let end = i + line[i..].find("s)")?;
        Some((end, line[i..end].parse().ok()?))
    };
    let (Some((_, granted)), Some((end, remaining))) = (num("TTL("), num("remaining(")) else {
        return line.to_string();
    };
    let bucket = if remaining == granted {
        "FULL"
    } else if (granted - 5..granted).contains(&remaining) {
        "RUNNING"
    } else {
        return line.to_string();
    };
    let start = line
        .find("remaining(")
        .map_or(0, |i| i + "remaining(".len());
    format!("{}{}{}", &line[..start], bucket, &line[end..])
}

fn zero_ids(v: &mut Value, leases: &HashMap<i64, usize>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match k.as_str() {
                    "cluster_id" | "member_id" | "raft_term" => *x = Value::from(0),
                    "ID" | "lease" => {
                        if let Some(n) = x.as_i64().and_then(|l| leases.get(&l)) {
                            *x = Value::from(format!("<L{n}>"));
                        }
                    }
                    _ => zero_ids(x, leases),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| zero_ids(x, leases)),
        _ => {}
    }
}

#[test]
fn etcdctl_session_matches_real_etcd() {
    let etcd = RealEtcd::start().expect("real etcd 3.4 is needed: apt-get install etcd-server");
    let janus = Janus::start();
    let want = run_session(&etcd.endpoint());
    let got = run_session(&janus.etcd_endpoint());
    let mut diffs = Vec::new();
    for ((step, w), (_, g)) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("step {step}\n  etcd:  {w:?}\n  janus: {g:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} steps differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}
