//! ZooKeeper's `x509` scheme (`X509AuthenticationProvider`): a client that
//! presented a verified certificate on the secure port is authenticated as
//! `x509:<subject>`, the subject written as Java's
//! `X500Principal.getName()` writes it (RFC 2253), because that string is
//! what ZooKeeper stores in ACLs and what operators copy between servers;
//! the configured superuser subject also gets the superuser identity.

use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::Id;

/// The scheme name.
pub const SCHEME: &str = "x509";

/// The identities a verified client certificate authenticates as, in
/// ZooKeeper's order: `super:<subject>` first when the subject is the
/// configured superuser (`zookeeper.X509AuthenticationProvider.superUser`),
/// then `x509:<subject>`. `None`: the certificate does not parse (the
/// connection is refused, as an AUTHFAILED handshake is in ZooKeeper).
pub fn ids(cert_der: &[u8], super_user: Option<&str>) -> Option<Vec<Id>> {
    let subject = subject_name(cert_der)?;
    let mut out = Vec::new();
    if super_user == Some(subject.as_str()) {
        out.push(Id::new(super::acl::SUPER, &subject));
    }
    out.push(Id::new(SCHEME, &subject));
    Some(out)
}

/// The certificate's subject as `X500Principal.getName()` (RFC 2253):
/// RDNs last to first, joined by `,`; the AVAs of a multi-valued RDN
/// sorted as Java's `AVAComparator` sorts them and joined by `+`.
pub fn subject_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(rfc2253(cert.subject()))
}

fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let mut avas: Vec<(Keyword, String)> = rdn
                .iter()
                .map(|ava| {
                    let k = keyword(ava);
                    let v = value(&k, ava);
                    (k, v)
                })
                .collect();
            if avas.len() > 1 {
                avas.sort_by(|a, b| a.0.cmp(&b.0));
            }
            avas.into_iter()
                .map(|(k, v)| format!("{}={v}", k.text()))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// An attribute type as RFC 2253 output names it: one of the keywords
/// RFC 2253 defines, or the dotted OID. Ordered as `AVAComparator`
/// orders AVAs: keywords alphabetically, then OIDs numerically.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Keyword {
    Known(&'static str),
    Oid(Vec<u64>, String),
}

impl Keyword {
    fn text(&self) -> &str {
        match self {
            Keyword::Known(k) => k,
            Keyword::Oid(_, s) => s,
        }
    }
}

/// The keywords of RFC 2253 (section 2.3), the only ones Java's RFC 2253
/// output uses; every other attribute type is written as its OID.
const RFC2253_KEYWORDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

fn keyword(ava: &AttributeTypeAndValue<'_>) -> Keyword {
    let oid = ava.attr_type().to_id_string();
    match RFC2253_KEYWORDS.iter().find(|(o, _)| *o == oid) {
        Some((_, k)) => Keyword::Known(k),
        None => Keyword::Oid(
            ava.attr_type()
                .iter()
                .map(|i| i.collect())
                .unwrap_or_default(),
            oid,
        ),
    }
}

/// The characters RFC 2253 output escapes with a backslash.
const ESCAPED: &str = ",=+<>#;\"\\";

/// An attribute value as Java's `AVA.toRFC2253String` writes it: `#` and
/// the hex of its DER encoding when the type is an OID or the value is not
/// one of the string types Java reads as text; otherwise the text with
/// `,=+<>#;"\` escaped, NUL as `\00`, and leading and trailing spaces
/// escaped.
fn value(k: &Keyword, ava: &AttributeTypeAndValue<'_>) -> String {
    let v = ava.attr_value();
    let text_tag = v.class() == Class::Universal
        && matches!(
            v.tag(),
            Tag::PrintableString
                | Tag::T61String
                | Tag::Ia5String
                | Tag::GeneralString
                | Tag::BmpString
                | Tag::Utf8String
        );
    if matches!(k, Keyword::Oid(..)) || !text_tag {
        let mut out = String::from("#");
        for b in der(v) {
            out.push_str(&format!("{b:02x}"));
        }
        return out;
    }
    // Java decodes the content bytes as UTF-8 whatever the string type.
    let text = String::from_utf8_lossy(v.data);
    let mut escaped: Vec<(bool, char)> = Vec::new();
    for c in text.chars() {
        if ESCAPED.contains(c) {
            escaped.push((true, c));
        } else if c == '\0' {
            escaped.push((false, '\\'));
            escaped.push((false, '0'));
            escaped.push((false, '0'));
        } else {
            escaped.push((false, c));
        }
    }
    let blank = |c: char| c == ' ' || c == '\r';
    let lead = escaped
        .iter()
        .position(|&(_, c)| !blank(c))
        .unwrap_or(escaped.len());
    let trail = escaped.iter().rposition(|&(_, c)| !blank(c));
    let mut out = String::new();
    for (i, (esc, c)) in escaped.into_iter().enumerate() {
        let edge = i < lead || trail.is_none_or(|t| i > t);
        if esc || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The DER encoding (tag, length, content) of a parsed value.
fn der(v: &Any<'_>) -> Vec<u8> {
    let class = match v.class() {
        Class::Universal => 0x00,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed = if v.header.is_constructed() { 0x20 } else { 0 };
    let tag = v.tag().0;
    let mut out = Vec::with_capacity(v.data.len() + 8);
    if tag < 31 {
        out.push(class | constructed | tag as u8);
    } else {
        out.push(class | constructed | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
        }
    }
    let len = v.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(v.data);
    out
}

/// Keywords Java's `X500Principal(String)` accepts (its `AVAKeyword`
/// table), upper case.
const PARSE_KEYWORDS: &[&str] = &[
    "CN",
    "C",
    "L",
    "S",
    "ST",
    "O",
    "OU",
    "T",
    "IP",
    "STREET",
    "DC",
    "DNQUALIFIER",
    "DNQ",
    "SURNAME",
    "GIVENNAME",
    "INITIALS",
    "GENERATION",
    "EMAIL",
    "EMAILADDRESS",
    "UID",
    "SERIALNUMBER",
];

/// Whether an ACL id is a distinguished name `X500Principal(String)`
/// accepts (`X509AuthenticationProvider.isValid`): empty, or RDNs split by
/// unescaped `,` or `;`, AVAs by `+`, each `keyword=value` with a known
/// keyword or a dotted OID (optionally `OID.`-prefixed), a value either
/// quoted, `#hex`, or text whose `\` escapes are complete.
pub fn valid_name(dn: &str) -> bool {
    if dn.trim().is_empty() {
        return true;
    }
    let Some(avas) = split_avas(dn) else {
        return false;
    };
    avas.iter().all(|ava| valid_ava(ava))
}

/// Splits at unescaped, unquoted `,` `;` `+`; `None` for an unfinished
/// escape or quote.
fn split_avas(dn: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                cur.push(chars.next()?);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' | ';' | '+' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

fn valid_ava(ava: &str) -> bool {
    let Some((key, value)) = ava.split_once('=') else {
        return false;
    };
    let key = key.trim();
    let upper = key.to_ascii_uppercase();
    let oid = upper.strip_prefix("OID.").unwrap_or(&upper);
    let key_ok = PARSE_KEYWORDS.contains(&upper.as_str())
        || (!oid.is_empty()
            && oid.split('.').count() >= 2
            && oid
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    if !key_ok {
        return false;
    }
    let value = value.trim();
    if let Some(hex) = value.strip_prefix('#') {
        return !hex.is_empty() && hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    if value.starts_with('"') {
        return value.len() >= 2 && value.ends_with('"');
    }
    // An unescaped `"` inside a text value is refused (`=` is not).
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return false,
            '"' => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    /// The expected names are what OpenJDK 17's
    /// `X509Certificate.getSubjectX500Principal().getName()` printed for
    /// the same rcgen-made certificates.
    #[test]
    fn subject_is_written_as_java_writes_it() {
        use rcgen::DnType::*;
        let email = CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
        for (dn, java) in [
            (
                vec![
                    (CountryName, "US"),
                    (OrganizationName, "acme, inc"),
                    (CommonName, " client+1 "),
                ],
                "CN=\\ client\\+1\\ ,O=acme\\, inc,C=US",
            ),
            (
                vec![
                    (CommonName, "  two  "),
                    (OrganizationalUnitName, "x\0y"),
                    (email, "a@b"),
                ],
                "1.2.840.113549.1.9.1=#0c03614062,OU=x\\00y,CN=\\ \\ two\\ \\ ",
            ),
            (
                vec![(CommonName, "日本"), (LocalityName, "#lead")],
                "L=\\#lead,CN=日本",
            ),
            (
                vec![(CommonName, "a#b=c;d<e>\"f\\")],
                "CN=a\\#b\\=c\\;d\\<e\\>\\\"f\\\\",
            ),
        ] {
            assert_eq!(subject_name(&cert(&dn)).as_deref(), Some(java), "{dn:?}");
        }
    }

    #[test]
    fn the_super_user_subject_also_gets_super() {
        let der = cert(&[(rcgen::DnType::CommonName, "admin")]);
        assert_eq!(
            ids(&der, Some("CN=admin")).expect("ids"),
            vec![Id::new("super", "CN=admin"), Id::new("x509", "CN=admin")]
        );
        assert_eq!(
            ids(&der, Some("CN=other")).expect("ids"),
            vec![Id::new("x509", "CN=admin")]
        );
        assert_eq!(ids(b"not a certificate", None), None);
    }

    /// Each verdict is what `new X500Principal(name)` said on OpenJDK 17.
    #[test]
    fn acl_names_are_checked_as_x500_principal_parses_them() {
        for ok in [
            "",
            "CN=client,O=acme",
            "cn=client; o=acme",
            "CN=a\\,b",
            "CN=\"a,b\"",
            "1.2.840.113549.1.9.1=#160161",
            "OID.2.5.4.3=x",
            "CN=a+OU=b",
            "EMAILADDRESS=a@b",
            "CN=",
            "CN=a=b",
            "CN=a, O=b",
        ] {
            assert!(valid_name(ok), "{ok:?} should be valid");
        }
        for bad in [
            "client", "XX=a", "CN=a\\", "CN=\"a", "CN=#abc", "=a", "CN=a\"b", "CN=a,,",
        ] {
            assert!(!valid_name(bad), "{bad:?} should be invalid");
        }
    }
}
