//! The differential scenario runner.
//!
//! A scenario (`conformance/scenarios/*.scn`, format in
//! `conformance/scenarios/README.md`) is a list of ZooKeeper or etcd client
//! operations. [`run_scenario`] runs one against a fresh server — real
//! ZooKeeper 3.8 / etcd 3.4 ([`Target::Reference`]) or janus
//! ([`Target::Janus`]) — with real client libraries (`zookeeper-client`,
//! `etcd-client`) and turns every answer into a canonical text
//! [`Transcript`], normalized only where the protocols let servers differ
//! (see [`zk`] and [`etcd`]). Reference transcripts are checked in under
//! `conformance/scenarios/recorded/`, so janus is compared even where the
//! reference servers are not installed; [`record`] regenerates them.
//!
//! [`compare`] checks janus's transcript step by step. A step whose output
//! differs fails, unless the scenario puts `allow "<row>" on FIELD: <why>`
//! on it, naming a row of the README's compatibility table and the fields
//! ([`fields`]) that may differ; everything else of the step is still
//! compared exactly. Such a row must exist in the README, and an allowance
//! whose fields do not differ fails too (the allow, or the README row, is
//! stale). So the compatibility table is checked against what the suite
//! ran.

pub mod digest;
pub mod etcd;
pub mod fields;
pub mod script;
pub mod zk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub use script::{Protocol, Scenario};

/// One protocol's scenario interpreter: a step's output lines.
pub(crate) trait Steps {
    async fn step(&mut self, st: &script::Step) -> Result<Vec<String>>;
}

/// Runs every step of `sc` in order into a transcript (shared by both
/// protocols' runners); an error names the scenario line.
pub(crate) async fn run_steps<R: Steps>(r: &mut R, sc: &Scenario) -> Result<Transcript> {
    let mut blocks = Vec::new();
    for st in &sc.steps {
        let out = r
            .step(st)
            .await
            .with_context(|| format!("{}.scn:{}: {}", sc.name, st.line, st.text))?;
        blocks.push(Block {
            line: st.line,
            text: st.text.clone(),
            out,
        });
    }
    Ok(Transcript { blocks })
}

use crate::harness::Janus;
use crate::reference::{RealEtcd, RealZk};

/// How long one operation (or one wait for watch events) may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// The output of one scenario step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Line number of the step in its .scn file.
    pub line: usize,
    /// The step as written.
    pub text: String,
    /// Normalized answer lines.
    pub out: Vec<String>,
}

/// What a scenario produced, step by step.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transcript {
    pub blocks: Vec<Block>,
}

impl Transcript {
    /// The checked-in text form: `LINE| STEP` then the answer lines, each
    /// indented by four spaces. Lines starting with `#` are comments.
    pub fn to_text(&self, header: &str) -> String {
        let mut s = String::new();
        for h in header.lines() {
            s.push_str("# ");
            s.push_str(h);
            s.push('\n');
        }
        for b in &self.blocks {
            s.push_str(&format!("{}| {}\n", b.line, b.text));
            for l in &b.out {
                s.push_str("    ");
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    pub fn from_text(text: &str) -> Result<Transcript> {
        let mut blocks: Vec<Block> = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.starts_with('#') || l.is_empty() {
                continue;
            }
            if let Some(out) = l.strip_prefix("    ") {
                let b = blocks
                    .last_mut()
                    .with_context(|| format!("transcript line {}: output before a step", i + 1))?;
                b.out.push(out.to_string());
                continue;
            }
            let (n, text) = l
                .split_once("| ")
                .with_context(|| format!("transcript line {}: {l:?}", i + 1))?;
            blocks.push(Block {
                line: n
                    .parse()
                    .with_context(|| format!("transcript line {}: {l:?}", i + 1))?,
                text: text.to_string(),
                out: Vec::new(),
            });
        }
        Ok(Transcript { blocks })
    }
}

/// Bytes as a double-quoted string (`\"`, `\\`, `\n`, `\xNN` escaped).
pub fn quote(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

/// Which server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Real ZooKeeper 3.8 or etcd 3.4 (by the scenario's protocol).
    Reference,
    Janus,
}

/// `conformance/scenarios`.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// `conformance/scenarios/recorded/NAME.txt`.
pub fn recorded_path(name: &str) -> PathBuf {
    scenarios_dir().join("recorded").join(format!("{name}.txt"))
}

/// Every scenario, sorted by file name.
pub fn load_all() -> Result<Vec<Scenario>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Scenario::load(p)).collect()
}

/// Whether the reference server for `p` is installed.
pub fn reference_available(p: Protocol) -> bool {
    match p {
        Protocol::Zk => RealZk::available(),
        Protocol::Etcd => RealEtcd::available(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The superuser of `option reconfig` scenarios: `auth digest super:test`.
pub const SUPER_USER: &str = "super:test";

/// Ports of the server under test and the names they are shown as in
/// ZooKeeper's configuration text (`:CLIENT`, `:QUORUM`, `:ELECTION`).
pub type PortNames = Vec<(u16, &'static str)>;

/// Runs `sc` against a fresh server of `target` (started here on free
/// loopback ports, stopped on return).
pub fn run_scenario(sc: &Scenario, target: Target) -> Result<Transcript> {
    let rt = runtime()?;
    let reconfig = sc.options.iter().any(|o| o == "reconfig");
    let super_digest = digest::digest_id(SUPER_USER);
    match (target, sc.protocol) {
        (Target::Janus, p) => {
            let election = crate::harness::free_port();
            let args: Vec<String> = if reconfig {
                vec![
                    "--zk-reconfig".into(),
                    "--zk-standalone-enabled=false".into(),
                    "--zk-super-digest".into(),
                    super_digest.clone(),
                    "--zk-server-id".into(),
                    "1".into(),
                    "--zk-election-port".into(),
                    election.to_string(),
                ]
            } else {
                Vec::new()
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let j = start_janus(&args);
            let ports = vec![
                (j.zk_addr().port(), "CLIENT"),
                (j.peer_addr().port(), "QUORUM"),
                (election, "ELECTION"),
            ];
            let res = match p {
                Protocol::Zk => rt.block_on(zk::run(&j.zk_addr().to_string(), ports, sc)),
                Protocol::Etcd => rt.block_on(etcd::run(&j.etcd_endpoint(), sc)),
            };
            drop(rt);
            res.map_err(|e| {
                anyhow::anyhow!("{e:#}\n--- janus log (tail) ---\n{}", tail(&j.log(), 40))
            })
        }
        (Target::Reference, Protocol::Zk) => {
            let z = if reconfig {
                RealZk::start_reconfig(&[&format!(
                    "-Dzookeeper.DigestAuthenticationProvider.superDigest={super_digest}"
                )])?
            } else {
                RealZk::start()?
            };
            let mut ports = vec![(z.addr().port(), "CLIENT")];
            if let Some((q, e)) = z.quorum_ports() {
                ports.push((q, "QUORUM"));
                ports.push((e, "ELECTION"));
            }
            let res = rt.block_on(zk::run(&z.connect_string(), ports, sc));
            drop(rt);
            res.map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\n--- zookeeper log (tail) ---\n{}",
                    tail(&z.log(), 20)
                )
            })
        }
        (Target::Reference, Protocol::Etcd) => {
            let server = RealEtcd::start()?;
            let res = rt.block_on(etcd::run(&server.endpoint(), sc));
            drop(rt);
            res.map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\n--- etcd log (tail) ---\n{}",
                    tail(&server.log(), 20)
                )
            })
        }
    }
}

/// A fresh janus with `extra` flags. From a test binary
/// (`<target>/debug/deps/...`) this is [`Janus::start_with`]; from the
/// `janus-differential` binary (`<target>/debug/janus-differential`) the
/// `janus` binary is its sibling, which the harness's test-layout lookup
/// does not find.
fn start_janus(extra: &[&str]) -> Janus {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    match dir {
        Some(d) if d.file_name().is_some_and(|n| n != "deps") => {
            static BUILT: std::sync::Once = std::sync::Once::new();
            BUILT.call_once(|| {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = std::process::Command::new(cargo)
                    .args(["build", "-q", "-p", "janus", "--bin", "janus"])
                    .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
                    .status()
                    .expect("cannot run cargo build for the janus binary");
                assert!(status.success(), "building the janus binary failed");
            });
            Janus::start_binary(&d.join("janus"), extra)
        }
        _ => Janus::start_with(extra),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `sc` against the real server and writes its recording.
pub fn record(sc: &Scenario) -> Result<PathBuf> {
    let t = run_scenario(sc, Target::Reference)?;
    let who = match sc.protocol {
        Protocol::Zk => "ZooKeeper 3.8 (Debian zookeeper)",
        Protocol::Etcd => "etcd 3.4 (Debian etcd-server)",
    };
    let header = format!(
        "Recorded from {who} by `cargo run -p janus-conformance --bin janus-differential -- --record {}`.\n\
         Do not edit: re-record after changing {}.scn.",
        sc.name, sc.name
    );
    let path = recorded_path(&sc.name);
    std::fs::write(&path, t.to_text(&header))?;
    Ok(path)
}

/// The checked-in recording of `sc`.
pub fn load_recorded(sc: &Scenario) -> Result<Transcript> {
    let p = recorded_path(&sc.name);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "{}: no recording; run `cargo run -p janus-conformance --bin janus-differential -- --record {}` where the reference servers are installed",
            p.display(),
            sc.name
        )
    })?;
    Transcript::from_text(&text)
}

/// The `area` cells of the README's "Compatibility notes" table
/// (backticks removed).
pub fn readme_rows(readme: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut in_section = false;
    for l in readme.lines() {
        if l.starts_with("## ") {
            in_section = l.trim() == "## Compatibility notes";
            continue;
        }
        if !in_section || !l.starts_with('|') {
            continue;
        }
        let cell = l.trim_start_matches('|').split('|').next().unwrap_or("");
        let cell = cell.trim().replace('`', "");
        if cell.is_empty() || cell == "area" || cell.chars().all(|c| c == '-' || c == ':') {
            continue;
        }
        rows.push(cell);
    }
    rows
}

/// The workspace README.
pub fn readme() -> Result<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&p).with_context(|| p.display().to_string())
}

/// The result of comparing one scenario.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Readable failures: differences not allowed, stale allows, unknown
    /// README rows, a stale recording.
    pub failures: Vec<String>,
    /// Allowed differences: (README row, scenario line, the diff).
    pub allowed: Vec<(String, usize, String)>,
    /// Known janus bugs that showed: (title, scenario line, the diff).
    pub bugs: Vec<(String, usize, String)>,
}

impl Outcome {
    /// README rows this scenario exercised (a difference was seen).
    pub fn rows_used(&self) -> BTreeSet<String> {
        self.allowed.iter().map(|(r, _, _)| r.clone()).collect()
    }
}

fn diff(expected: &[String], got: &[String]) -> String {
    let mut s = String::new();
    let n = expected.len().max(got.len());
    for i in 0..n {
        match (expected.get(i), got.get(i)) {
            (Some(e), Some(g)) if e == g => s.push_str(&format!("      same:     {e}\n")),
            (e, g) => {
                if let Some(e) = e {
                    s.push_str(&format!("      expected: {e}\n"));
                }
                if let Some(g) = g {
                    s.push_str(&format!("      got:      {g}\n"));
                }
            }
        }
    }
    s
}

/// The first argument of a step when it is a path or key (for `of`).
fn step_path(st: &script::Step) -> Option<&str> {
    st.args
        .first()
        .filter(|t| t.quoted || !t.s.starts_with("--"))
        .map(|t| t.s.as_str())
}

/// Whether `e` and `g` agree once the fields of `allows` are excused.
fn equal_under(st: &script::Step, e: &[String], g: &[String], allows: &[&script::Allow]) -> bool {
    use fields::Field;
    let first = |v: &[String]| v.first().map(|l| fields::outcome(l)).unwrap_or_default();
    if allows.iter().any(|a| a.fields.contains(&Field::Outcome)) && first(e) != first(g) {
        return true;
    }
    if e.len() != g.len() {
        return false;
    }
    let sp = step_path(st);
    e.iter().zip(g).all(|(el, gl)| {
        let fs: Vec<&Field> = allows
            .iter()
            .filter(|a| match &a.of {
                None => true,
                Some(p) => fields::about(el, p, sp) || fields::about(gl, p, sp),
            })
            .flat_map(|a| a.fields.iter())
            .filter(|f| **f != Field::Outcome)
            .collect();
        fields::mask(el, &fs) == fields::mask(gl, &fs)
    })
}

/// `"row" on a, b [of P]` for messages.
fn allow_label(a: &script::Allow) -> String {
    let f: Vec<String> = a.fields.iter().map(|f| f.to_string()).collect();
    match &a.of {
        Some(p) => format!("{:?} on {} of {p:?}", a.row, f.join(", ")),
        None => format!("{:?} on {}", a.row, f.join(", ")),
    }
}

/// Compares `got` (janus) with `expected` (the reference) for `sc`, using
/// the scenario's allowances and the README's rows: a step passes when it
/// is equal once the allowed fields are excused, and every allowance must
/// be needed (without it, the step would differ).
pub fn compare(sc: &Scenario, expected: &Transcript, got: &Transcript, rows: &[String]) -> Outcome {
    let mut o = Outcome::default();
    let file = format!("{}.scn", sc.name);
    for st in &sc.steps {
        for a in st.allow.iter().filter(|a| !a.bug) {
            if !rows.contains(&a.row) {
                o.failures.push(format!(
                    "{file}:{}: allow names {:?}, which is not a row of README.md's compatibility table (rows: {rows:?})",
                    st.line, a.row
                ));
            }
        }
    }
    if expected.blocks.len() != sc.steps.len()
        || expected
            .blocks
            .iter()
            .zip(&sc.steps)
            .any(|(b, st)| b.line != st.line || b.text != st.text)
    {
        o.failures.push(format!(
            "{file}: the recording does not match the scenario (steps edited?): re-record with `--record {}`",
            sc.name
        ));
        return o;
    }
    for (i, st) in sc.steps.iter().enumerate() {
        let e = &expected.blocks[i];
        let Some(g) = got.blocks.get(i) else {
            o.failures.push(format!(
                "{file}:{}: {}\n    janus: no output",
                st.line, st.text
            ));
            continue;
        };
        let all: Vec<&script::Allow> = st.allow.iter().collect();
        if !equal_under(st, &e.out, &g.out, &all) {
            let excused = if all.is_empty() {
                String::new()
            } else {
                format!(
                    "    (beyond what is allowed: {})\n",
                    all.iter()
                        .map(|a| allow_label(a))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            o.failures.push(format!(
                "{file}:{}: {}\n{excused}{}",
                st.line,
                st.text,
                diff(&e.out, &g.out)
            ));
            continue;
        }
        for (k, a) in st.allow.iter().enumerate() {
            let others: Vec<&script::Allow> = st
                .allow
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, a)| a)
                .collect();
            if equal_under(st, &e.out, &g.out, &others) {
                o.failures.push(format!(
                    "{file}:{}: {}\n    allowed difference / known bug {} did not occur: janus now matches the reference there; remove or narrow the allow or bug line (and check the README row)",
                    st.line,
                    st.text,
                    allow_label(a)
                ));
                continue;
            }
            let entry = (a.row.clone(), st.line, diff(&e.out, &g.out));
            if a.bug {
                o.bugs.push(entry);
            } else {
                o.allowed.push(entry);
            }
        }
    }
    o
}

/// Runs every scenario whose name contains one of `filters` (all when
/// empty) against janus and compares with the recordings; with `live`,
/// also runs the reference servers (where installed) and checks that the
/// recording is still what they answer. Returns a printable report and
/// whether everything passed.
///
/// Known bugs (`bug` lines) are reported but pass, unless `strict`.
pub fn check(filters: &[String], live: bool, strict: bool) -> Result<(String, bool)> {
    let rows = readme_rows(&readme()?);
    let mut report = String::new();
    let mut ok = true;
    let mut used = BTreeSet::new();
    let mut bugs = 0;
    for sc in load_all()? {
        if !filters.is_empty() && !filters.iter().any(|f| sc.name.contains(f.as_str())) {
            continue;
        }
        let recorded = load_recorded(&sc)?;
        if live {
            if reference_available(sc.protocol) {
                let now = run_scenario(&sc, Target::Reference)?;
                // Reference against its own recording: no allow applies.
                let stale: Vec<String> = recorded
                    .blocks
                    .iter()
                    .zip(&now.blocks)
                    .filter(|(a, b)| a.out != b.out)
                    .map(|(a, b)| {
                        format!(
                            "{}.scn:{}: {}\n{}",
                            sc.name,
                            a.line,
                            a.text,
                            diff(&a.out, &b.out)
                        )
                    })
                    .collect();
                if stale.is_empty() {
                    report.push_str(&format!(
                        "{}: live reference matches the recording\n",
                        sc.name
                    ));
                } else {
                    ok = false;
                    report.push_str(&format!(
                        "{}: the live reference differs from the recording (re-record?):\n{}\n",
                        sc.name,
                        stale.join("\n")
                    ));
                }
            } else {
                report.push_str(&format!(
                    "{}: SKIP live: reference server not installed\n",
                    sc.name
                ));
            }
        }
        let got = run_scenario(&sc, Target::Janus)?;
        let o = compare(&sc, &recorded, &got, &rows);
        for (row, line, d) in &o.allowed {
            report.push_str(&format!(
                "{}.scn:{line}: allowed difference (README row {row:?}):\n{d}",
                sc.name
            ));
        }
        used.extend(o.rows_used());
        for (title, line, d) in &o.bugs {
            report.push_str(&format!(
                "{}.scn:{line}: KNOWN JANUS BUG ({title}):\n{d}",
                sc.name
            ));
            bugs += 1;
        }
        if strict && !o.bugs.is_empty() {
            ok = false;
        }
        if o.failures.is_empty() {
            report.push_str(&format!(
                "{}: no unexpected difference ({} steps)\n",
                sc.name,
                sc.steps.len()
            ));
        } else {
            ok = false;
            report.push_str(&format!(
                "{}: {} difference(s):\n{}\n",
                sc.name,
                o.failures.len(),
                o.failures.join("\n")
            ));
        }
    }
    report.push_str(&format!("known janus bugs seen: {bugs}\n"));
    report.push_str(&format!(
        "README compatibility rows exercised: {}\n",
        used.iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok((report, ok))
}

/// Records every scenario matching `filters` (all when empty).
pub fn record_all(filters: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for sc in load_all()? {
        if !filters.is_empty() && !filters.iter().any(|f| sc.name.contains(f.as_str())) {
            continue;
        }
        if !reference_available(sc.protocol) {
            bail!(
                "{}: the reference server is not installed (apt-get install zookeeper etcd-server)",
                sc.name
            );
        }
        out.push(record(&sc)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_round_trip_and_readme_rows() {
        let t = Transcript {
            blocks: vec![Block {
                line: 3,
                text: "zk get /a".into(),
                out: vec!["ok \"x\"".into(), "  y".into()],
            }],
        };
        assert_eq!(Transcript::from_text(&t.to_text("h\ni")).unwrap(), t);
        let rows = readme_rows(
            "# x\n## Compatibility notes\n| area | a |\n|---|---|\n| `/zookeeper` subtree | x |\n| setACL | y |\n## Next\n| no | z |\n",
        );
        assert_eq!(rows, ["/zookeeper subtree", "setACL"]);
    }

    #[test]
    fn compare_allows_only_named_rows() {
        let sc = Scenario::parse(
            "t",
            "zk get /a\nallow \"setACL\" on outcome: why\nzk set-acl /a open\nallow \"setACL\" on outcome: why\nzk get /b\n",
        )
        .unwrap();
        let mk = |outs: [&str; 3]| Transcript {
            blocks: sc
                .steps
                .iter()
                .zip(outs)
                .map(|(s, o)| Block {
                    line: s.line,
                    text: s.text.clone(),
                    out: vec![o.to_string()],
                })
                .collect(),
        };
        let rows = vec!["setACL".to_string()];
        let o = compare(&sc, &mk(["a", "b", "c"]), &mk(["a", "B", "C"]), &rows);
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        assert_eq!(o.allowed.len(), 2);
        let o = compare(&sc, &mk(["a", "b", "c"]), &mk(["A", "b", "C"]), &rows);
        assert_eq!(o.failures.len(), 2, "{:?}", o.failures); // line 1 differs, line 3 allow unused
        let o = compare(&sc, &mk(["a", "b", "c"]), &mk(["a", "B", "C"]), &[]);
        assert_eq!(o.failures.len(), 2, "{:?}", o.failures); // unknown row twice
    }

    #[test]
    fn compare_excuses_only_the_named_field() {
        let sc = Scenario::parse(
            "t",
            "allow \"root\" on cversion of \"/\": why\nzk get /\nallow \"root\" on cversion: why\nzk children /a\n",
        )
        .unwrap();
        let mk = |a: &str, b: &[&str]| Transcript {
            blocks: vec![
                Block {
                    line: 2,
                    text: "zk get /".into(),
                    out: vec![a.to_string()],
                },
                Block {
                    line: 4,
                    text: "zk children /a".into(),
                    out: b.iter().map(|s| s.to_string()).collect(),
                },
            ],
        };
        let rows = vec!["root".to_string()];
        let exp = mk(
            "ok \"\" stat(cversion=1 numChildren=3)",
            &["ok [x] stat(cversion=2)"],
        );
        // Only cversion differs: allowed.
        let got = mk(
            "ok \"\" stat(cversion=2 numChildren=3)",
            &["ok [x] stat(cversion=3)"],
        );
        let o = compare(&sc, &exp, &got, &rows);
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        assert_eq!(o.allowed.len(), 2);
        // Another field differs too: a failure.
        let got = mk(
            "ok \"\" stat(cversion=2 numChildren=4)",
            &["ok [x] stat(cversion=3)"],
        );
        let o = compare(&sc, &exp, &got, &rows);
        assert_eq!(o.failures.len(), 1, "{:?}", o.failures);
        // The allowed field no longer differs: stale.
        let got = mk(
            "ok \"\" stat(cversion=1 numChildren=3)",
            &["ok [x] stat(cversion=2)"],
        );
        let o = compare(&sc, &exp, &got, &rows);
        assert_eq!(o.failures.len(), 2, "{:?}", o.failures);
        assert!(o.failures.iter().all(|f| f.contains("did not occur")));
    }

    #[test]
    fn an_allowance_of_a_path_excuses_no_other_line() {
        let sc = Scenario::parse(
            "t",
            "allow \"r\" on mzxid of \"/a\": why\nzk multi set /a x ; set /b y\n",
        )
        .unwrap();
        let mk = |a: &str, b: &str| Transcript {
            blocks: vec![Block {
                line: 2,
                text: sc.steps[0].text.clone(),
                out: vec!["ok".into(), a.to_string(), b.to_string()],
            }],
        };
        let rows = vec!["r".to_string()];
        let exp = mk("  set /a stat(mzxid=Z1)", "  set /b stat(mzxid=Z2)");
        let o = compare(
            &sc,
            &exp,
            &mk("  set /a stat(mzxid=Z3)", "  set /b stat(mzxid=Z2)"),
            &rows,
        );
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        let o = compare(
            &sc,
            &exp,
            &mk("  set /a stat(mzxid=Z1)", "  set /b stat(mzxid=Z3)"),
            &rows,
        );
        assert_eq!(o.failures.len(), 1, "{:?}", o.failures);
    }
}
