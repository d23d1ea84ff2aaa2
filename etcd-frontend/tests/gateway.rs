//! The HTTP side of the client port, driven with curl as etcd's docs do:
//! `/version`, `/health`, the JSON gateway (base64 bytes, int64 strings,
//! proto field names) and its streamed watch, and gRPC-gateway errors.

use std::process::Command;

use janus_conformance::harness::Janus;
use serde_json::{json, Value};

fn curl(url: &str, body: Option<&str>, max_time: Option<&str>) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-w", "\\n%{http_code}"]);
    if let Some(t) = max_time {
        c.args(["--max-time", t]);
    }
    if let Some(b) = body {
        c.args(["-X", "POST", "-d", b]);
    }
    let out = c
        .arg(url)
        .output()
        .expect("curl is needed for gateway tests");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), code.to_string())
}

fn post(j: &Janus, path: &str, body: &str) -> (Value, String) {
    let (b, code) = curl(&format!("{}{path}", j.etcd_endpoint()), Some(body), None);
    (
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{path}: {e}: {b:?}")),
        code,
    )
}

#[test]
fn version_and_health() {
    let j = Janus::start();
    let (v, code) = curl(&format!("{}/version", j.etcd_endpoint()), None, None);
    assert_eq!(code, "200");
    assert_eq!(v, r#"{"etcdserver":"3.4.31","etcdcluster":"3.4.0"}"#);
    // Healthy once the member has elected itself (right after start it may
    // answer {"health":"false"} with 503, as etcd does without a leader).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (h, code) = curl(&format!("{}/health", j.etcd_endpoint()), None, None);
        if code == "200" {
            assert_eq!(h, r#"{"health":"true"}"#);
            break;
        }
        assert_eq!(
            (h.as_str(), code.as_str()),
            (r#"{"health":"false"}"#, "503")
        );
        assert!(std::time::Instant::now() < deadline, "never healthy");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn json_kv_lease_and_errors() {
    let j = Janus::start();
    // foo=bar, base64.
    let (r, code) = post(&j, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(code, "200");
    assert_eq!(r["header"]["revision"], "2");
    assert!(r["header"]["member_id"].is_string());
    let (r, _) = post(&j, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(
        r["kvs"][0],
        json!({"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"})
    );
    assert_eq!(r["count"], "1");
    // Numbers accepted for int64, unknown keys read as absent.
    let (r, _) = post(&j, "/v3/kv/range", r#"{"key":"Zm9v","revision":1}"#);
    assert!(r.get("kvs").is_none() && r.get("count").is_none(), "{r}");
    let (r, _) = post(
        &j,
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
            "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#,
    );
    assert_eq!(r["succeeded"], true);
    assert_eq!(r["responses"][0]["response_put"]["header"]["revision"], "3");
    let (r, _) = post(&j, "/v3/lease/grant", r#"{"TTL":30}"#);
    let id = r["ID"].as_str().expect("lease id string").to_string();
    assert_eq!(r["TTL"], "30");
    let (r, _) = post(
        &j,
        "/v3/lease/timetolive",
        &format!(r#"{{"ID":{id},"keys":true}}"#),
    );
    assert_eq!(r["grantedTTL"], "30");
    let (r, _) = post(&j, "/v3/lease/leases", "{}");
    assert_eq!(r["leases"][0]["ID"], id.as_str());
    let (r, _) = post(&j, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert!(r["header"].is_object());
    // Errors: grpc-gateway's shape and HTTP status.
    let (r, code) = post(&j, "/v3/kv/range", r#"{"key":""}"#);
    assert_eq!(code, "400");
    assert_eq!(
        r,
        json!({"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3})
    );
    let (r, code) = post(&j, "/v3/lease/revoke", r#"{"ID":"99"}"#);
    assert_eq!(code, "404");
    assert_eq!(r["code"], 5);
    let (r, code) = post(&j, "/v3/kv/compaction", r#"{"revision":"100"}"#);
    assert_eq!(code, "400");
    assert_eq!(
        r["error"],
        "etcdserver: mvcc: required revision is a future revision"
    );
    let (_, code) = curl(
        &format!("{}/v3/kv/put", j.etcd_endpoint()),
        Some("{not json"),
        None,
    );
    assert_eq!(code, "400");
}

#[test]
fn json_watch_streams_history_as_results() {
    let j = Janus::start();
    post(&j, "/v3/kv/put", r#"{"key":"Zm9v","value":"MQ=="}"#);
    post(&j, "/v3/kv/put", r#"{"key":"Zm9v","value":"Mg=="}"#);
    let (b, _) = curl(
        &format!("{}/v3/watch", j.etcd_endpoint()),
        Some(r#"{"create_request":{"key":"Zm9v","start_revision":"2"}}"#),
        Some("2"),
    );
    let msgs: Vec<Value> = b
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(msgs.len() >= 2, "{b}");
    assert_eq!(msgs[0]["result"]["created"], true);
    let events = &msgs[1]["result"]["events"];
    assert_eq!(events[0]["kv"]["value"], "MQ==");
    assert_eq!(events[1]["kv"]["value"], "Mg==");
    assert!(
        events[0].get("type").is_none(),
        "PUT is the default and omitted"
    );
}

/// A gateway watch from the current revision of a fresh store (revision 1,
/// which no record carries) delivers the next put, as etcd 3.4 does
/// (Patroni's etcd3 DCS watches from its range's header revision).
#[test]
fn json_watch_from_the_current_revision_of_a_fresh_store() {
    let j = Janus::start();
    let url = format!("{}/v3/watch", j.etcd_endpoint());
    let watch = std::thread::spawn(move || {
        curl(
            &url,
            Some(r#"{"create_request":{"key":"L3M=","range_end":"L3Q=","start_revision":"1"}}"#),
            Some("3"),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    post(&j, "/v3/kv/put", r#"{"key":"L3MveA==","value":"MQ=="}"#);
    let (b, _) = watch.join().expect("watch thread");
    let msgs: Vec<Value> = b
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        msgs.first().map(|m| &m["result"]["created"]),
        Some(&json!(true)),
        "{b}"
    );
    let events = msgs.get(1).map(|m| &m["result"]["events"]);
    assert_eq!(
        events.map(|e| &e[0]["kv"]["key"]),
        Some(&json!("L3MveA==")),
        "the put after the watch: {b}"
    );
}

/// A response with the member-specific header fields dropped (cluster and
/// member ids and the raft term differ between two fresh servers).
fn comparable(mut v: Value) -> Value {
    if let Some(h) = v.get_mut("header").and_then(Value::as_object_mut) {
        h.remove("cluster_id");
        h.remove("member_id");
        h.remove("raft_term");
    }
    v
}

/// `/v3/lock/lock` and `/v3/lock/unlock` (and the election's no-leader
/// error) answer what real etcd 3.4's gateway answers.
fn lock_script(endpoint: &str) -> Vec<(Value, String)> {
    let call = |path: &str, body: &str| {
        let (b, code) = curl(&format!("{endpoint}{path}"), Some(body), Some("10"));
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|e| panic!("{path}: {e}: {b:?}"));
        (comparable(v), code)
    };
    vec![
        call("/v3/lease/grant", r#"{"TTL":60,"ID":4660}"#),
        // name "gw", lease 0x1234: the key is "gw/1234".
        call("/v3/lock/lock", r#"{"name":"Z3c=","lease":"4660"}"#),
        call("/v3/kv/range", r#"{"key":"Z3cv","range_end":"Z3cw"}"#),
        call("/v3/lock/lock", r#"{"name":"Z3c=","lease":4660}"#),
        call("/v3/lock/unlock", r#"{"key":"Z3cvMTIzNA=="}"#),
        call("/v3/lock/lock", r#"{"name":"Z3c=","lease":"999"}"#),
        call("/v3/election/leader", r#"{"name":"Z3c="}"#),
    ]
}

#[test]
fn json_lock_matches_etcd() {
    let etcd = janus_conformance::reference::RealEtcd::start().expect("real etcd 3.4");
    let j = Janus::start();
    let want = lock_script(&etcd.endpoint());
    let got = lock_script(&j.etcd_endpoint());
    assert_eq!(got, want);
    assert_eq!(got[1].0["key"], "Z3cvMTIzNA==", "{:?}", got[1]);
    assert_eq!(got[5].1, "500", "unknown lease: {:?}", got[5]);
}
