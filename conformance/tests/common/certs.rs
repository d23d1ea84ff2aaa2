//! Certificates made with rcgen for the TLS tests: a CA and leaves it
//! signs, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// `<name>.pem` in the directory given to [`ca`].
    pub pem: PathBuf,
}

pub fn ca(dir: &Path, name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("ca key");
    let cert = p.self_signed(&key).expect("ca cert");
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).expect("write ca");
    Ca { cert, key, pem }
}

/// A certificate for 127.0.0.1 usable as server and client (a member is
/// both), written to `<name>.pem` / `<name>.key`.
pub fn leaf(dir: &Path, ca: &Ca, name: &str) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("leaf cert");
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    // Key first, then the certificate: a reload between the two writes
    // fails to load and keeps the old pair.
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    std::fs::write(&c, cert.pem()).expect("write cert");
    (c, k)
}
