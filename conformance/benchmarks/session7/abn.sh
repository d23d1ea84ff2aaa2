#!/bin/bash
# abn.sh PROTO WORKLOAD CLIENTS ROUNDS name=bin...
proto=$1; wl=$2; cl=$3; rounds=$4; shift 4
for r in $(seq $rounds); do
 for nb in "$@"; do
  b=${nb%%=*}; bin=${nb#*=}
  d=$(mktemp -d /tmp/jb.XXXX)
  p=$((20000 + RANDOM % 20000)); z=$((p+1)); pe=$((p+2))
  $bin --data-dir $d/data --listen-client-urls http://127.0.0.1:$p --advertise-client-urls http://127.0.0.1:$p --listen-peer-urls http://127.0.0.1:$pe --initial-advertise-peer-urls http://127.0.0.1:$pe --initial-cluster default=http://127.0.0.1:$pe --listen-zk-addr 127.0.0.1:$z --log-level warn >$d/log 2>&1 &
  pid=$!
  sleep 1.5
  if [ $proto = zk ]; then ep=127.0.0.1:$z; else ep=http://127.0.0.1:$p; fi
  out=$(/work/main/target/release/janus-bench $proto $wl --endpoint $ep --clients $cl --connections ${CONNS:-8} --duration 5s --warmup 1s 2>&1 | grep -E "throughput" | sed -E "s/.*(ops=[0-9]+).*(throughput=[0-9.]+).*(p50=[0-9.]+ms).*(p99=[0-9.]+ms).*/\1 \2 \3 \4/")
  cpu=$(awk '{print $14+$15}' /proc/$pid/stat)
  rss=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
  kill $pid; wait $pid 2>/dev/null
  echo "$proto $wl $cl $b r$r $out cpu_ticks=$cpu hwm_kb=$rss load=$(cut -d' ' -f1 /proc/loadavg)"
  rm -rf $d
 done
done
