//! Smoke test of the janus-bench driver: every workload runs a few hundred
//! operations against a real janus from the harness with no errors; the
//! compare mode runs against the real reference servers where installed.

use std::time::Duration;

use janus_conformance::bench::{
    self, compare, EtcdWorkload, Limit, RunConfig, Workload, ZkWorkload,
};
use janus_conformance::harness::{janus_binary, Janus};
use janus_conformance::reference::{RealEtcd, RealZk};

const OPS: u64 = 200;

fn config(workload: Workload, endpoint: String) -> RunConfig {
    let mut cfg = RunConfig::new(workload, endpoint);
    cfg.clients = 4;
    cfg.connections = 2;
    cfg.limit = Limit::Ops(OPS);
    cfg.warmup = Duration::ZERO;
    cfg.keys = 50;
    cfg.progress = false;
    cfg
}

fn check(r: &bench::RunResult) {
    eprintln!("{r}");
    assert_eq!(r.errors, 0, "errors: {r}");
    assert_eq!(r.ops, OPS, "{r}");
    assert!(r.throughput() > 0.0, "{r}");
    assert!(r.latency_us.max() > 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_etcd_workload_runs_against_janus() {
    let j = Janus::start();
    for w in [
        EtcdWorkload::Put,
        EtcdWorkload::Range,
        EtcdWorkload::RangeSerializable,
        EtcdWorkload::TxnCas,
        EtcdWorkload::Watch,
        EtcdWorkload::LeaseKeepalive,
    ] {
        let r = bench::run(&config(Workload::Etcd(w), j.etcd_endpoint()))
            .await
            .unwrap_or_else(|e| panic!("{w:?}: {e}\njanus log:\n{}", j.log()));
        check(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zk_workload_runs_against_janus() {
    let j = Janus::start();
    for w in [
        ZkWorkload::Create,
        ZkWorkload::Set,
        ZkWorkload::Get,
        ZkWorkload::EphemeralSeq,
        ZkWorkload::Watch,
    ] {
        let r = bench::run(&config(Workload::Zk(w), j.zk_addr().to_string()))
            .await
            .unwrap_or_else(|e| panic!("{w:?}: {e}\njanus log:\n{}", j.log()));
        check(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_an_error_not_a_panic() {
    let port = janus_conformance::harness::free_port();
    let mut cfg = config(
        Workload::Etcd(EtcdWorkload::Put),
        format!("http://127.0.0.1:{port}"),
    );
    cfg.op_timeout = Duration::from_secs(2);
    let r = bench::run(&cfg).await;
    // tonic connects lazily or eagerly depending on options: either the
    // connect fails or every op fails; both are reported, nothing panics.
    match r {
        Err(e) => eprintln!("connect error as expected: {e}"),
        Ok(r) => assert!(r.errors > 0 && r.ops == 0, "{r}"),
    }
    let cfg = config(Workload::Zk(ZkWorkload::Get), format!("127.0.0.1:{port}"));
    let r = tokio::time::timeout(Duration::from_secs(30), bench::run(&cfg)).await;
    assert!(
        matches!(r, Ok(Err(_))),
        "zk connect to a dead port must fail"
    );
}

/// compare mode end to end: fresh reference + fresh janus at two levels,
/// table and SVG. Skipped (loudly) where the reference is not installed.
fn compare_smoke(workload: Workload) {
    compare_smoke_members(workload, &[1, 4], 1);
}

fn compare_smoke_members(workload: Workload, levels: &[usize], members: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut base = config(workload, String::new());
    base.limit = Limit::Ops(100);
    let rows =
        compare::compare(&rt, &base, levels, janus_binary(), members, None).expect("compare runs");
    assert_eq!(rows.len(), levels.len());
    for row in &rows {
        check_n(&row.janus, 100);
        check_n(&row.reference, 100);
        assert!(row.throughput_ratio().is_finite());
        assert!(row.janus.server_cpu.is_some() && row.reference.server_cpu.is_some());
    }
    let table = compare::table(workload, &rows);
    eprintln!("{table}");
    assert_eq!(table.lines().count(), 2 + levels.len());
    let svg = compare::svg(workload, &rows);
    assert!(svg.contains("<polyline"));
}

fn check_n(r: &bench::RunResult, n: u64) {
    eprintln!("{r}");
    assert_eq!(r.errors, 0, "{r}");
    assert_eq!(r.ops, n, "{r}");
}

#[test]
fn compare_mode_runs_against_real_etcd() {
    if !RealEtcd::available() {
        eprintln!("SKIP: etcd 3.4 not installed (apt-get install etcd-server)");
        return;
    }
    compare_smoke(Workload::Etcd(EtcdWorkload::Put));
}

#[test]
fn compare_mode_runs_against_real_zookeeper() {
    if !RealZk::available() {
        eprintln!("SKIP: ZooKeeper 3.8 not installed (apt-get install zookeeper)");
        return;
    }
    compare_smoke(Workload::Zk(ZkWorkload::Set));
}

/// `--members 3`: a three-member janus against a three-member etcd cluster
/// and a three-server ZooKeeper ensemble, clients spread over the members.
#[test]
fn compare_mode_runs_three_member_clusters() {
    if !RealEtcd::available() || !RealZk::available() {
        eprintln!("SKIP: etcd 3.4 or ZooKeeper 3.8 not installed");
        return;
    }
    compare_smoke_members(Workload::Etcd(EtcdWorkload::Put), &[4], 3);
    compare_smoke_members(Workload::Zk(ZkWorkload::Create), &[4], 3);
}

/// The gRPC floor (`janus-bench grpc-floor`, a child process) answers the
/// etcd workloads it serves through the real etcd client without errors,
/// refuses the others, and compare runs it beside janus and etcd.
#[test]
fn grpc_floor_answers_put_and_range() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_janus-bench"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let floor = compare::Server::GrpcFloor(compare::GrpcFloor::start(bin, 256).expect("starts"));
    for w in [
        EtcdWorkload::Put,
        EtcdWorkload::Range,
        EtcdWorkload::RangeSerializable,
    ] {
        let w = Workload::Etcd(w);
        let mut cfg = config(w, floor.endpoint(w));
        cfg.server_pids = floor.pids();
        let r = rt.block_on(bench::run(&cfg)).expect("runs");
        check(&r);
        assert!(r.server_cpu.is_some(), "{r}");
    }
    let txn = Workload::Etcd(EtcdWorkload::TxnCas);
    let r = rt.block_on(bench::run(&config(txn, floor.endpoint(txn))));
    assert!(
        !matches!(r, Ok(ref r) if r.errors == 0),
        "the floor answers only Put and Range"
    );
    drop(floor);

    if !RealEtcd::available() {
        eprintln!("SKIP: compare with the floor: etcd 3.4 not installed");
        return;
    }
    let put = Workload::Etcd(EtcdWorkload::Put);
    let mut base = config(put, String::new());
    base.limit = Limit::Ops(100);
    let rows =
        compare::compare(&rt, &base, &[4], janus_binary(), 1, Some(bin)).expect("compare runs");
    let f = rows[0].grpc_floor.as_ref().expect("a floor run");
    check_n(f, 100);
    let table = compare::grpc_floor_table(put, &rows).expect("a floor table");
    eprintln!("{table}");
    assert_eq!(table.lines().count(), 3);
    assert!(compare::svg(put, &rows).contains("gRPC floor"));
    let zk = Workload::Zk(ZkWorkload::Set);
    assert!(compare::compare(
        &rt,
        &config(zk, String::new()),
        &[1],
        janus_binary(),
        1,
        Some(bin)
    )
    .is_err());
}
