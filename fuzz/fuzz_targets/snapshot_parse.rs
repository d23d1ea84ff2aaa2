//! The snapshot stream parser (what a member installs from a peer and
//! etcd's snapshot restore reads): malformed streams are errors, never
//! panics or allocations larger than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = janus_core::snapshot::parse(data);
});
