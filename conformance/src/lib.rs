//! janus-conformance
