#!/bin/bash
# The runs behind BENCHMARKS.md's current tables, from the repository root:
#   bash conformance/benchmarks/session9/run.sh
set -u
B=target/release/janus-bench
export JANUS_BIN=${JANUS_BIN:-$PWD/target/release/janus}
out=conformance/benchmarks/session9
uptime > $out/load.txt
for w in "etcd put" "etcd txn-cas" "zk create" "zk set" "zk ephemeral-seq"; do
  f=$out/$(echo $w | tr ' ' -)
  floor=; [ "$w" = "etcd put" ] && floor=--grpc-floor
  $B compare $w --levels 1,64,256 --duration 5s --warmup 1s $floor --svg $f.svg > $f.txt 2> $f.log
  uptime >> $out/load.txt
done
for w in "etcd range" "etcd range-serializable" "zk get"; do
  f=$out/$(echo $w | tr ' ' -)
  floor=; [ "${w%% *}" = etcd ] && floor=--grpc-floor
  $B compare $w --levels 64 --duration 5s --warmup 1s $floor --svg $f.svg > $f.txt 2> $f.log
  uptime >> $out/load.txt
done
for w in "etcd put" "zk create"; do
  f=$out/m3-$(echo $w | tr ' ' -)
  $B compare $w --levels 64 --members 3 --duration 5s --warmup 1s --svg $f.svg > $f.txt 2> $f.log
  uptime >> $out/load.txt
done
