//! Scenario files: parsing `conformance/scenarios/*.scn` (format in
//! `conformance/scenarios/README.md`).
//!
//! A scenario is a list of steps, one per non-blank, non-comment line. A
//! step is a client word (`zk`, `zk@NAME`, `etcd`) followed by an op and its
//! arguments, split on whitespace; double quotes make one argument of text
//! with spaces (`""` is the empty string, `\"` and `\\` escape, `\n` and
//! `\0` are a newline and a NUL). The directive
//! `allow "<README row>" on FIELD[, FIELD] [of PATH]: <why>` attaches a
//! known, deliberate difference in the named fields (see
//! [`super::fields`]) to the next step; `bug "<title>" on FIELD: <detail>`
//! a known janus bug (tolerated, reported, and failing the strict run).

use anyhow::{bail, Context, Result};

use super::fields::Field;

/// Which reference server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Zk,
    Etcd,
}

/// One argument of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tok {
    pub s: String,
    /// Written in double quotes (so `;`, `[` ... are plain text).
    pub quoted: bool,
}

impl Tok {
    /// An unquoted token equal to `word` (syntax, not data).
    pub fn is(&self, word: &str) -> bool {
        !self.quoted && self.s == word
    }
}

/// A tolerated difference on one step: either deliberate (`allow`, naming
/// a row of the README's compatibility table) or a known janus bug
/// (`bug`, a short title; not a README row, to be fixed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// For `allow`: the `area` cell of the README row, without backticks.
    /// For `bug`: the bug's title.
    pub row: String,
    pub why: String,
    /// Written as `bug "<title>" on ...: <detail>`.
    pub bug: bool,
    /// The fields it excuses; everything else of the step is compared.
    pub fields: Vec<Field>,
    /// Only on the lines about this path (`of PATH`).
    pub of: Option<String>,
}

/// One line of a scenario.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based line number in the .scn file.
    pub line: usize,
    /// The line as written (trimmed), shown in transcripts and diffs.
    pub text: String,
    /// Session name for `zk`/`zk@NAME` (default `s1`); empty for etcd.
    pub session: String,
    pub op: String,
    pub args: Vec<Tok>,
    pub allow: Vec<Allow>,
}

/// A parsed scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// File stem, e.g. `zk_basic`.
    pub name: String,
    pub protocol: Protocol,
    pub steps: Vec<Step>,
    /// `option NAME` lines: how the servers are started (`reconfig`: a
    /// ZooKeeper quorum of one with reconfigEnabled, standaloneEnabled=false
    /// and a superuser; janus with `--zk-reconfig`,
    /// `--zk-standalone-enabled=false` and the same superuser).
    pub options: Vec<String>,
}

/// Splits a line into tokens.
pub fn tokenize(line: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => bail!("unterminated string"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('0') => s.push('\0'),
                        Some(c) => s.push(c),
                        None => bail!("unterminated escape"),
                    },
                    Some(c) => s.push(c),
                }
            }
            out.push(Tok { s, quoted: true });
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(Tok { s, quoted: false });
        }
    }
    Ok(out)
}

/// Parses `"ROW" on FIELD[, FIELD] [of PATH]: why` (after `allow` or
/// `bug`). The fields and the reason are required: an allowance names
/// what differs and says why.
fn parse_allow(rest: &str, bug: bool) -> Result<Allow> {
    const FORM: &str = "allow \"<README row>\" on FIELD[, FIELD] [of PATH]: <why>";
    let rest = rest.trim();
    let Some(rest) = rest.strip_prefix('"') else {
        bail!("allow needs a quoted README row: {FORM}");
    };
    let Some(end) = rest.find('"') else {
        bail!("unterminated README row name");
    };
    let row = rest[..end].to_string();
    let rest = rest[end + 1..].trim_start();
    let Some(rest) = rest.strip_prefix("on ") else {
        bail!("allow \"{row}\" must name the fields it excuses: {FORM}");
    };
    // The head ends at the first `:` outside quotes.
    let mut in_quote = false;
    let colon = rest.char_indices().find_map(|(i, c)| {
        if c == '"' {
            in_quote = !in_quote;
        }
        (c == ':' && !in_quote).then_some(i)
    });
    let Some(colon) = colon else {
        bail!("allow \"{row}\" needs ': <why>'");
    };
    let head = &rest[..colon];
    let why = rest[colon + 1..].trim().to_string();
    if why.is_empty() {
        bail!("allow \"{row}\" needs a reason");
    }
    let (names, of) = match head.split_once(" of ") {
        Some((n, p)) => {
            let p = p.trim();
            let p = p
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .unwrap_or(p);
            if p.is_empty() {
                bail!("allow \"{row}\": `of` needs a path");
            }
            (n, Some(p.to_string()))
        }
        None => (head, None),
    };
    let mut fields = Vec::new();
    for n in names.split(',') {
        let n = n.trim();
        match Field::parse(n) {
            Some(f) => fields.push(f),
            None => bail!("allow \"{row}\": {n:?} is not a field name (outcome, message, or NAME of NAME=value)"),
        }
    }
    Ok(Allow {
        row,
        why,
        bug,
        fields,
        of,
    })
}

impl Scenario {
    /// Parses a scenario's text; `name` is used in messages.
    pub fn parse(name: &str, text: &str) -> Result<Scenario> {
        let mut steps = Vec::new();
        let mut pending: Vec<Allow> = Vec::new();
        let mut protocol = None;
        let mut options = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ctx = || format!("{name}.scn:{line}: {t}");
            if let Some(rest) = t.strip_prefix("option ") {
                match rest.trim() {
                    o @ "reconfig" => options.push(o.to_string()),
                    o => bail!("{}: unknown option {o:?} (reconfig)", ctx()),
                }
                continue;
            }
            if let Some(rest) = t.strip_prefix("allow ") {
                pending.push(parse_allow(rest, false).with_context(ctx)?);
                continue;
            }
            if let Some(rest) = t.strip_prefix("bug ") {
                pending.push(parse_allow(rest, true).with_context(ctx)?);
                continue;
            }
            let mut toks = tokenize(t).with_context(ctx)?;
            if toks.len() < 2 {
                bail!("{}: a step is CLIENT OP [ARGS...]", ctx());
            }
            let client = toks.remove(0);
            let op = toks.remove(0);
            let (p, session) = if client.is("etcd") {
                (Protocol::Etcd, String::new())
            } else if client.is("zk") {
                (Protocol::Zk, "s1".to_string())
            } else if let Some(s) = client.s.strip_prefix("zk@") {
                (Protocol::Zk, s.to_string())
            } else {
                bail!(
                    "{}: unknown client {:?} (zk, zk@NAME, etcd)",
                    ctx(),
                    client.s
                );
            };
            match protocol {
                None => protocol = Some(p),
                Some(q) if q != p => bail!("{}: a scenario speaks one protocol", ctx()),
                _ => {}
            }
            steps.push(Step {
                line,
                text: t.to_string(),
                session,
                op: op.s,
                args: toks,
                allow: std::mem::take(&mut pending),
            });
        }
        if !pending.is_empty() {
            bail!("{name}.scn: allow at the end of the file applies to no step");
        }
        let Some(protocol) = protocol else {
            bail!("{name}.scn: no steps");
        };
        Ok(Scenario {
            name: name.to_string(),
            protocol,
            steps,
            options,
        })
    }

    /// Reads and parses a .scn file.
    pub fn load(path: &std::path::Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("scenario file name")?;
        Scenario::parse(name, &text)
    }
}

/// `--name=value` / `--flag` options after the positional arguments.
#[derive(Debug, Default)]
pub struct Opts {
    pub pos: Vec<Tok>,
    pub flags: Vec<(String, Option<String>)>,
}

impl Opts {
    pub fn split(args: &[Tok]) -> Opts {
        let mut o = Opts::default();
        for a in args {
            if !a.quoted && a.s.starts_with("--") {
                let body = &a.s[2..];
                match body.split_once('=') {
                    Some((k, v)) => o.flags.push((k.to_string(), Some(v.to_string()))),
                    None => o.flags.push((body.to_string(), None)),
                }
            } else {
                o.pos.push(a.clone());
            }
        }
        o
    }

    pub fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == name)
    }

    pub fn val(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn num(&self, name: &str) -> Result<Option<i64>> {
        self.val(name)
            .map(|v| {
                v.parse()
                    .with_context(|| format!("--{name}={v}: not a number"))
            })
            .transpose()
    }

    /// Flags that are not in `known` (a typo must not silently pass).
    pub fn check(&self, known: &[&str]) -> Result<()> {
        for (k, _) in &self.flags {
            if !known.contains(&k.as_str()) {
                bail!("unknown option --{k} (known: {})", known.join(", "));
            }
        }
        Ok(())
    }

    pub fn arg(&self, i: usize, what: &str) -> Result<&str> {
        self.pos
            .get(i)
            .map(|t| t.s.as_str())
            .with_context(|| format!("missing argument {} ({what})", i + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_quotes_and_allow() {
        let t = tokenize(r#"zk create /a "x y" persistent "" "q\"" ;"#).unwrap();
        let s: Vec<_> = t.iter().map(|t| t.s.as_str()).collect();
        assert_eq!(
            s,
            ["zk", "create", "/a", "x y", "persistent", "", "q\"", ";"]
        );
        let sc = Scenario::parse(
            "t",
            "# c\nallow \"setACL\" on mzxid, pzxid of \"/a\": no zxid\nzk set-acl /a open\nzk@s2 get /a\n",
        )
        .unwrap();
        assert_eq!(sc.protocol, Protocol::Zk);
        assert_eq!(sc.steps[0].allow[0].row, "setACL");
        assert_eq!(
            sc.steps[0].allow[0].fields,
            [Field::Named("mzxid".into()), Field::Named("pzxid".into())]
        );
        assert_eq!(sc.steps[0].allow[0].of.as_deref(), Some("/a"));
        assert_eq!(sc.steps[0].allow[0].why, "no zxid");
        // A whole-step allowance is no longer accepted.
        assert!(Scenario::parse("t", "allow \"x\": why\nzk get /\n").is_err());
        assert!(Scenario::parse("t", "allow \"x\" on a-b: why\nzk get /\n").is_err());
        assert_eq!(sc.steps[0].line, 3);
        assert_eq!(sc.steps[1].session, "s2");
        assert!(sc.steps[1].allow.is_empty());
        assert!(Scenario::parse("t", "allow \"x\"\nzk get /\n").is_err());
        assert!(Scenario::parse("t", "zk get /\netcd get k\n").is_err());
    }
}
