//! `janus-differential`: runs the differential scenarios
//! (`conformance/scenarios/*.scn`).
//!
//! ```text
//! janus-differential [--record] [--live] [--strict] [NAME...]
//! ```
//! - no flag: run janus against the checked-in recordings;
//! - `--live`: also re-run the real reference servers and check the
//!   recordings still match them;
//! - `--strict`: known janus bugs (`bug` lines in scenarios) fail too;
//! - `--record`: regenerate the recordings from the real servers (Debian
//!   `zookeeper` and `etcd-server` must be installed).
//!
//! NAMEs select scenarios whose file name contains them.

use janus_conformance::differential;

fn main() -> anyhow::Result<()> {
    let mut record = false;
    let mut live = false;
    let mut strict = false;
    let mut names = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--record" => record = true,
            "--live" => live = true,
            "--strict" => strict = true,
            "-h" | "--help" => {
                println!("usage: janus-differential [--record] [--live] [--strict] [NAME...]");
                return Ok(());
            }
            _ => names.push(a),
        }
    }
    if record {
        for p in differential::record_all(&names)? {
            println!("recorded {}", p.display());
        }
        return Ok(());
    }
    let (report, ok) = differential::check(&names, live, strict)?;
    print!("{report}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
