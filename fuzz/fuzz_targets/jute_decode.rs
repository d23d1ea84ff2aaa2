//! The jute decoders: a ConnectRequest and every request frame. Malformed
//! input must be an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = janus_zk::proto::ConnectRequest::decode(data);
    if let Ok((hdr, req)) = janus_zk::proto::decode_request(data) {
        // A decoded request must be printable (Debug walks every field).
        let _ = format!("{hdr:?} {req:?}");
    }
});
