//! `/metrics` (Prometheus text of [`janus_core::metrics`]) and the gRPC
//! request counters of go-grpc-prometheus that etcd exports:
//! `grpc_server_started_total` and `grpc_server_handled_total` by
//! `grpc_type`, `grpc_service`, `grpc_method` (and `grpc_code`, Go's name
//! of the status code). A call counts as handled when its final status is
//! known: in the response headers for a trailers-only (error) response, in
//! the trailers otherwise; a stream dropped before its trailers (client
//! gone) counts as `Canceled`.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Started {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

struct Grpc {
    started: Family<Started, Counter>,
    handled: Family<Handled, Counter>,
}

static GRPC: LazyLock<Grpc> = LazyLock::new(|| {
    let g = Grpc {
        started: Family::default(),
        handled: Family::default(),
    };
    janus_core::metrics::register(|r| {
        r.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            g.started.clone(),
        );
        r.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            g.handled.clone(),
        );
    });
    g
});

/// Makes sure the gRPC counters are registered (so they appear, empty,
/// before the first call).
pub fn init() {
    LazyLock::force(&GRPC);
}

/// The routes serving the registry.
pub fn router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, janus_core::metrics::CONTENT_TYPE)],
        janus_core::metrics::encode_text(),
    )
        .into_response()
}

/// etcd's streaming methods; every other method is unary.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") => "server_stream",
        _ => "unary",
    }
}

/// Go's `codes.Code.String()`.
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Counts the call `path` (`/service/method`) as started and returns what
/// counts it as handled once the response is known.
pub fn start(path: &str) -> Call {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or("").to_string();
    let method = parts.next().unwrap_or("").to_string();
    let labels = Started {
        grpc_type: grpc_type(&service, &method),
        grpc_service: service,
        grpc_method: method,
    };
    GRPC.started.get_or_create(&labels).inc();
    Call { labels }
}

/// A started call.
pub struct Call {
    labels: Started,
}

impl Call {
    fn handled(&self, code: &'static str) {
        let l = &self.labels;
        GRPC.handled
            .get_or_create(&Handled {
                grpc_type: l.grpc_type,
                grpc_service: l.grpc_service.clone(),
                grpc_method: l.grpc_method.clone(),
                grpc_code: code,
            })
            .inc();
    }

    /// Counts the response: now if its headers carry the status, else when
    /// its body's trailers do.
    pub fn finish(self, resp: Response) -> Response {
        if let Some(code) = resp.headers().get("grpc-status") {
            self.handled(code_name(code.as_bytes()));
            return resp;
        }
        resp.map(|body| {
            Body::new(Counted {
                inner: body,
                call: Some(self),
            })
        })
    }
}

/// A response body that counts its call as handled at its trailers.
struct Counted {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                if let Some(call) = self.call.take() {
                    call.handled(code_name(code.as_bytes()));
                }
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.handled("Canceled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_methods_and_codes_have_go_names() {
        assert_eq!(grpc_type("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(grpc_type("etcdserverpb.KV", "Range"), "unary");
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"11"), "OutOfRange");
        assert_eq!(code_name(b"99"), "Unknown");
    }
}
