//! The fields of a transcript line, so an allowance can excuse one field
//! and leave the rest of the step compared exactly.
//!
//! A transcript line is split on whitespace outside double quotes. Its
//! fields are:
//!
//! - `outcome`: the first word (`ok`, `error`, an event type, ...) and,
//!   after `error`, the error's code (`NoAuth`, `InvalidArgument`, the
//!   name before `(` in `BadArguments("...")`). When the outcome of a
//!   step's first line differs, the answers have nothing in common to
//!   compare: excusing `outcome` excuses the rest of that step.
//! - `message`: an error's text after its code.
//! - `NAME`: the value of every `NAME=value` word, also inside a group
//!   such as `stat(czxid=Z1 ... numChildren=0)` (so `cversion`,
//!   `mzxid`, `rev`, `ttl`, ...).
//!
//! A field can be narrowed to the lines about one path (`of "/"`): lines
//! that contain the path as a word, or every line of a step whose first
//! argument is that path. (`outcome` is about the step's first line and is
//! not narrowed.)

/// Which part of a step's answer an allowance excuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// What happened at all (first word, error code): excuses the step
    /// when it differs.
    Outcome,
    /// An error's text, its code still compared.
    Message,
    /// The value of `NAME=...` words.
    Named(String),
}

impl Field {
    pub fn parse(s: &str) -> Option<Field> {
        match s {
            "outcome" => Some(Field::Outcome),
            "message" => Some(Field::Message),
            _ if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Some(Field::Named(s.to_string()))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Outcome => f.write_str("outcome"),
            Field::Message => f.write_str("message"),
            Field::Named(n) => f.write_str(n),
        }
    }
}

/// Words of a line: split on whitespace outside `"..."` (with `\`
/// escapes inside quotes).
pub fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(&line[s..i]);
            }
            continue;
        }
        if start.is_none() {
            start = Some(i);
        }
        if c == '"' {
            in_quote = true;
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// The outcome of a line: its first word, plus the error code after
/// `error`.
pub fn outcome(line: &str) -> String {
    let w = words(line);
    match w.first() {
        Some(&"error") => {
            let code = w.get(1).copied().unwrap_or("");
            let code = code.split('(').next().unwrap_or(code);
            format!("error {code}")
        }
        Some(first) => first.to_string(),
        None => String::new(),
    }
}

/// The `NAME` of a `NAME=value` word, after an optional `group(` prefix,
/// and the byte offset of its value within the word.
fn named(word: &str) -> Option<(&str, usize)> {
    let mut rest = word;
    let mut off = 0;
    if let Some(p) = rest.find('(') {
        let head = &rest[..p];
        if !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            rest = &rest[p + 1..];
            off = p + 1;
        }
    }
    let eq = rest.find('=')?;
    let name = &rest[..eq];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return None;
    }
    Some((name, off + eq + 1))
}

/// `line` with the values of `fields` replaced by `*` (closing
/// parentheses of a group kept). `Outcome` is not masked here (see
/// [`outcome`]).
pub fn mask(line: &str, fields: &[&Field]) -> String {
    if fields.is_empty() {
        return line.to_string();
    }
    let ws = words(line);
    let mut out: Vec<String> = Vec::with_capacity(ws.len());
    let is_error = ws.first() == Some(&"error");
    for (i, w) in ws.iter().enumerate() {
        if is_error && fields.contains(&&Field::Message) {
            if i == 1 {
                // `Code("text")` keeps the code, hides the text.
                match w.find('(') {
                    Some(p) => out.push(format!("{}(*)", &w[..p])),
                    None => out.push(w.to_string()),
                }
                continue;
            }
            if i > 1 {
                if i == 2 {
                    out.push("*".into());
                }
                continue;
            }
        }
        if let Some((name, off)) = named(w) {
            if fields
                .iter()
                .any(|f| matches!(f, Field::Named(n) if n == name))
            {
                let closing: String = w[off..].chars().rev().take_while(|&c| c == ')').collect();
                out.push(format!("{}*{closing}", &w[..off]));
                continue;
            }
        }
        out.push(w.to_string());
    }
    out.join(" ")
}

/// Whether `line` is about `path`: it has the path as a word (a bare
/// word, or an item of `[a, b]`), or the step's first argument is it.
pub fn about(line: &str, path: &str, step_path: Option<&str>) -> bool {
    if step_path == Some(path) {
        return true;
    }
    words(line)
        .iter()
        .any(|w| w.trim_matches(|c| c == '[' || c == ']' || c == ',') == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            words(r#"ok "a b\" c" stat(x=1 y=2)"#),
            ["ok", r#""a b\" c""#, "stat(x=1", "y=2)"]
        );
        assert_eq!(words("  "), Vec::<&str>::new());
    }

    #[test]
    fn outcome_and_masks() {
        assert_eq!(outcome("error BadArguments(\"x y\")"), "error BadArguments");
        assert_eq!(
            outcome("error InvalidArgument \"m\""),
            "error InvalidArgument"
        );
        assert_eq!(outcome("ok /a stat(x=1)"), "ok");
        let cv = Field::Named("cversion".into());
        assert_eq!(
            mask("ok \"\" stat(czxid=0 cversion=1 numChildren=3)", &[&cv]),
            "ok \"\" stat(czxid=0 cversion=* numChildren=3)"
        );
        assert_eq!(mask("ok stat(cversion=1)", &[&cv]), "ok stat(cversion=*)");
        assert_eq!(
            mask(
                "error ResourceExhausted \"grpc: too big\"",
                &[&Field::Message]
            ),
            "error ResourceExhausted *"
        );
        assert_eq!(
            mask("error BadArguments(\"server error\")", &[&Field::Message]),
            "error BadArguments(*)"
        );
        // `"k"="v"` is not a named field.
        assert_eq!(mask("\"k\"=\"v\" rev=2", &[&cv]), "\"k\"=\"v\" rev=2");
    }

    #[test]
    fn about_a_path() {
        assert!(about("  create /a stat(x=1)", "/a", None));
        assert!(!about("  create /a/b stat(x=1)", "/a", None));
        assert!(about("ok \"\" stat(x=1)", "/", Some("/")));
        assert!(about("ok [a, /b]", "/b", None));
    }
}
