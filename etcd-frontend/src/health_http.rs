//! etcd 3.5's `/livez` and `/readyz` (`etcdhttp/health.go`): named checks,
//! each also at `/livez/<name>` / `/readyz/<name>`, `?exclude=<name>` to skip
//! one, `?verbose` to list them. A success is `200 ok\n` (with `[+]<name>
//! ok` lines first when verbose); a failure is `503` listing every check
//! run, failed ones as `[-]<name> failed: <reason>`, whether verbose or not.
//! The rules themselves are core's ([`janus_core::health`]); the alarm
//! check reads core's replicated alarms.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use janus_core::health;

use crate::context::Shared;
use crate::pb::etcdserverpb as pb;

/// `/livez`: the process serves local reads.
const LIVEZ: &[&str] = &["serializable_read"];
/// `/readyz`: no CORRUPT alarm, local and linearizable reads work
/// (in name order; etcd runs them in map order).
const READYZ: &[&str] = &["data_corruption", "linearizable_read", "serializable_read"];

pub fn router(s: Shared) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/livez/:check", get(livez_one))
        .route("/readyz", get(readyz))
        .route("/readyz/:check", get(readyz_one))
        .with_state(s)
}

async fn run_check(s: &Shared, name: &str) -> Result<(), String> {
    match name {
        "serializable_read" => health::serializable_read(&s.node),
        "linearizable_read" => health::linearizable_read(&s.node).await,
        "data_corruption" => {
            let corrupt = pb::AlarmType::Corrupt as i32;
            if s.alarms().iter().any(|a| a.alarm == corrupt) {
                Err("alarm activated: CORRUPT".into())
            } else {
                Ok(())
            }
        }
        _ => Err("unknown check".into()),
    }
}

/// Runs `checks` minus the excluded ones and answers as etcd does.
async fn answer(s: &Shared, checks: &[&str], query: Option<&str>) -> Response {
    let mut excluded = Vec::new();
    let mut verbose = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "exclude" if !v.is_empty() => excluded.push(v.to_string()),
            "verbose" => verbose = true,
            _ => {}
        }
    }
    let mut report = String::new();
    let mut ok = true;
    for name in checks.iter().filter(|c| !excluded.iter().any(|e| e == *c)) {
        match run_check(s, name).await {
            Ok(()) => report.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                ok = false;
                report.push_str(&format!("[-]{name} failed: {reason}\n"));
            }
        }
    }
    let text = |code, body: String| {
        (
            code,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response()
    };
    if !ok {
        // Go's http.Error adds a newline after the reason.
        return text(StatusCode::SERVICE_UNAVAILABLE, report + "\n");
    }
    let body = if verbose {
        report + "ok\n"
    } else {
        "ok\n".into()
    };
    text(StatusCode::OK, body)
}

async fn livez(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    answer(&s, LIVEZ, q.as_deref()).await
}

async fn readyz(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    answer(&s, READYZ, q.as_deref()).await
}

async fn one(s: &Shared, all: &[&str], check: &str, q: Option<&str>) -> Response {
    match all.iter().find(|c| **c == check) {
        Some(c) => answer(s, &[c], q).await,
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

async fn livez_one(
    State(s): State<Shared>,
    Path(check): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    one(&s, LIVEZ, &check, q.as_deref()).await
}

async fn readyz_one(
    State(s): State<Shared>,
    Path(check): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    one(&s, READYZ, &check, q.as_deref()).await
}
