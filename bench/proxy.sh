#!/usr/bin/env bash
# The proxy benchmark of issue 9: waybill against nginx, side by side.
#
# Starts, all on 127.0.0.1:
#   18080  upstream nginx: answers any POST with an 840-byte JSON body
#          (`return 200`, after nginx has read and discarded the request
#          body, as it must to keep the connection alive)
#   18083  the same nginx: an OTLP/HTTP receiver that accepts and drops spans
#   18085  nginx reverse proxy: proxy_pass to a keepalive upstream block
#   18086  haproxy reverse proxy (the second peer): one thread, `http-reuse
#          always` toward the same upstream
#   18090  waybill (bench/waybill-bench.yaml): every observation feature on
#   18091  waybill, listener whose route has `inspect: false` (no tap, no exchange)
#   18099  waybill admin (/metrics, read at the end for drops)
#   18092, 18093, 18098  with BASELINE_BIN: a second waybill (another build,
#          say the one before a change) with the same routes, as targets
#          `baseline` and `baseline-plain`, measured in the same repetitions
# and drives them with wrk (bench/post.lua: POSTs of 840-byte JSON bodies).
# The figures to quote are the ratios against nginx (and haproxy) measured
# in the same run.
#
# Pinning: wrk on CPU 0; upstream, proxies and waybill on CPU 1 (so a
# proxy competes with the upstream for one core, as in the issue's
# reference figures). Runs are interleaved (the order rotates every
# repetition) and the table shows medians over the repetitions, with
# ratios against nginx measured in the same run.
#
# Usage: bench/proxy.sh            (from the repository root)
# Environment (defaults in brackets):
#   REPS [5]        repetitions of every measurement
#   DURATION [10]   seconds per throughput run
#   CONNS [64]      connections for the throughput runs
#   LAT_DURATION [10] seconds per latency run
#   LAT_CONNS [6], PACE_MS [2]  latency runs: LAT_CONNS connections that
#                   each pause PACE_MS before every request (≈ 2.5–3 k req/s)
#   WAYBILL_BIN     a prebuilt binary (default: cargo build --release)
#   WAYBILL_CONFIG  the routes file [bench/waybill-bench.yaml] (e.g. a copy
#                   with another listener option, to measure what it costs)
#   BASELINE_BIN    a second waybill binary to measure beside WAYBILL_BIN in
#                   the same repetitions (same routes, its own ports); the
#                   table then ends with waybill's ratios against it, the
#                   median of each repetition's own ratio. Two builds measured
#                   in separate runs of this script differ by more than most
#                   changes (the machine drifts between runs); in one run,
#                   interleaved, they face the same machine.
#   LOAD_CPU [0], SERVER_CPU [1]
#   KEEP [unset]    keep the work directory (configs, raw wrk output)
#   PROFILE=callgrind  instead of benchmarking, run waybill under valgrind
#                   for PROFILE_SECONDS [20] of light load and print the top
#                   of the profile (kept in PROFILE_OUT [/tmp/waybill-profile])
#                   and the requests wrk completed (for instructions per exchange);
#                   PROFILE_TARGET [waybill] or waybill-plain picks the listener
#   PROFILE=syscalls  instead of benchmarking, count the proxy's system calls
#                   per request for each of PROFILE_TARGETS [nginx waybill-plain]
#                   (waybill, waybill-plain, nginx, haproxy, and with
#                   BASELINE_BIN baseline, baseline-plain): first from the kernel's own
#                   counters without any tracer (read-like and write-like calls
#                   from /proc/PID/io, voluntary and involuntary context switches
#                   of every thread), then by syscall with `strace -f -c` attached
#                   to the proxy (nginx: its worker) over a run of PROFILE_SECONDS
#                   [5] with CONNS connections each; strace slows the proxy, so
#                   compare per-request counts, not times
#
# Every process this script starts is stopped on exit (trap); loops are
# bounded; nothing listens beyond loopback.
set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
LAT_DURATION=${LAT_DURATION:-10}
LAT_CONNS=${LAT_CONNS:-6}
PACE_MS=${PACE_MS:-2}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
BODY_SIZE=840

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/waybill-bench.XXXXXX)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # Bounded wait: 50 × 0.1 s, then KILL.
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n "${KEEP:-}" ]]; then
    echo "work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[proxy.sh] $*" >&2; }

# --- tools ----------------------------------------------------------------

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  log "installing ${need[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [[ -z "${WAYBILL_BIN:-}" ]]; then
  log "building waybill (release)"
  (cd "$ROOT" && cargo build --release --bin waybill -q)
  WAYBILL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/waybill"
fi

# --- configs --------------------------------------------------------------

# The upstream's answer: a carrier booking response whose tracking code is
# nginx's per-request $request_id (32 hex digits), so every exchange links
# a new tracking number instead of merging all orders into one.
response_doc() {
  local pad=$1
  printf '{"tracking_code":"1Z$request_id","carrier":"UPS","service":"EXPRESS_SAVER",'
  printf '"label":{"format":"PDF","size":"4x6","url":"https://labels.example.com/v1/labels/0001"},'
  printf '"rate":{"amount":"18.40","currency":"EUR","billable_weight_kg":10.3},'
  printf '"parcels":[{"parcel":1,"tracking_code":"1Z999AA10123456784","weight_kg":2.4},'
  printf '{"parcel":2,"tracking_code":"1Z999AA10123456785","weight_kg":7.9}],'
  printf '"estimated_delivery":"2026-11-30T18:00:00Z","note":"%s"}' "$pad"
}
# $request_id is 11 characters in the config and 32 in the answer.
bare=$(response_doc "")
fill=$((BODY_SIZE - ${#bare} - (32 - 11)))
RESPONSE=$(response_doc "$(printf '%*s' "$fill" '' | tr ' ' 'x')")

mkdir -p "$WORK/up" "$WORK/px"
# The part both nginx configs share: one worker in the foreground, its
# files under $WORK/$1, no access log, long keep-alive toward wrk. Leaves the
# `http {` block open for the caller's servers.
nginx_preamble() {
  cat <<EOF
worker_processes 1;
daemon off;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  fastcgi_temp_path $WORK/$1/fastcgi;
  uwsgi_temp_path $WORK/$1/uwsgi;
  scgi_temp_path $WORK/$1/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_buffer_size 16k;
EOF
}

{ nginx_preamble up; cat <<EOF
  server {
    listen 127.0.0.1:18080 backlog=4096;
    default_type application/json;
    location / { return 200 '$RESPONSE'; }
  }
  server {
    listen 127.0.0.1:18083;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    default_type application/x-protobuf;
    location / { return 200 ''; }
  }
}
EOF
} >"$WORK/up/nginx.conf"

{ nginx_preamble px; cat <<EOF
  upstream backend {
    server 127.0.0.1:18080;
    keepalive 128;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:18085 backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$WORK/px/nginx.conf"

# haproxy as the issue's second peer: one process, one thread (as nginx's
# one worker), idle upstream connections reused across client connections
# as nginx's keepalive block does.
mkdir -p "$WORK/ha"
cat >"$WORK/ha/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend bench
  bind 127.0.0.1:18086
  default_backend upstream
backend upstream
  server up 127.0.0.1:18080 pool-max-conn 128
EOF

# --- processes ------------------------------------------------------------

wait_port() {
  local port=$1
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on $port"
  return 1
}

# Every port this run serves on. One already taken (another run of this
# script, say) would answer this run's wrk, and the servers here would not
# bind: both runs' figures would be wrong, so refuse to start.
PORTS=(18080 18083 18085 18086 18090 18091 18099)
[[ -n "${BASELINE_BIN:-}" ]] && PORTS+=(18092 18093 18098)
for port in "${PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is already in use (another bench/proxy.sh?): run one at a time"
    exit 1
  fi
done

taskset -c "$SERVER_CPU" nginx -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log" &
PIDS+=($!)
UP_PID=$!
taskset -c "$SERVER_CPU" nginx -c "$WORK/px/nginx.conf" -e "$WORK/px/error.log" &
PIDS+=($!)
NGINX_PID=$!
taskset -c "$SERVER_CPU" haproxy -db -f "$WORK/ha/haproxy.cfg" 2>"$WORK/ha/haproxy.log" &
PIDS+=($!)
HAPROXY_PID=$!
# PROFILE=callgrind runs waybill under valgrind instead and only profiles.
WRAP=()
if [[ "${PROFILE:-}" == callgrind ]]; then
  command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out")
fi
CONFIG=${WAYBILL_CONFIG:-$ROOT/bench/waybill-bench.yaml}
WAYBILL_LOG=warn WAYBILL_DRAIN_TIMEOUT=2s \
  taskset -c "$SERVER_CPU" "${WRAP[@]}" "$WAYBILL_BIN" run --config "$CONFIG" \
  2>"$WORK/waybill.log" &
PIDS+=($!)
WAYBILL_PID=$!
BASELINE_PID=
if [[ -n "${BASELINE_BIN:-}" ]]; then
  # The same routes on the baseline's own ports (listeners, admin).
  sed -e 's/127\.0\.0\.1:18090/127.0.0.1:18092/' -e 's/127\.0\.0\.1:18091/127.0.0.1:18093/' \
    -e 's/127\.0\.0\.1:18099/127.0.0.1:18098/' "$CONFIG" >"$WORK/baseline.yaml"
  WAYBILL_LOG=warn WAYBILL_DRAIN_TIMEOUT=2s \
    taskset -c "$SERVER_CPU" "$BASELINE_BIN" run --config "$WORK/baseline.yaml" 2>"$WORK/baseline.log" &
  PIDS+=($!)
  BASELINE_PID=$!
fi
for port in "${PORTS[@]}"; do wait_port "$port"; done
sleep 1

# The upstream must answer exactly BODY_SIZE bytes.
got=$(curl -s -o /dev/null -w '%{size_download}' -X POST -H 'Content-Type: application/json' \
  --data-binary "{}" http://127.0.0.1:18080/v2/shipments)
[[ "$got" == "$BODY_SIZE" ]] || { log "upstream answers $got bytes, not $BODY_SIZE"; exit 1; }

# Processes whose CPU and memory count as "the proxy" for a target.
proxy_pids() {
  case $1 in
    direct) ;;
    nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
    haproxy) echo "$HAPROXY_PID" ;;
    waybill | waybill-plain) echo "$WAYBILL_PID" ;;
    baseline | baseline-plain) echo "$BASELINE_PID" ;;
  esac
}
port_of() {
  case $1 in
    direct) echo 18080 ;; nginx) echo 18085 ;; haproxy) echo 18086 ;;
    waybill) echo 18090 ;; waybill-plain) echo 18091 ;;
    baseline) echo 18092 ;; baseline-plain) echo 18093 ;;
  esac
}
TICK=$(getconf CLK_TCK)
# utime + stime of the given pids, in clock ticks.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    # Fields after the command name (which may contain spaces): 14, 15.
    local -a f
    read -r -a f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
# Resident set size of the given pids together, in kB.
rss_kb() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
  done
  echo "$total"
}
# wrk's latency percentile line ("  99%  1.23ms") → microseconds.
percentile_us() {
  awk -v p="$1%" '$1 == p {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 0;
    printf "%.0f\n", v * f }' "$2"
}

if [[ "${PROFILE:-}" == syscalls ]]; then
  command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
  secs=${PROFILE_SECONDS:-5}
  # The processes that do the proxying: nginx's worker (the master only
  # waits), waybill's process with all its threads.
  traced_pids() {
    case $1 in
      nginx) pgrep -P "$NGINX_PID" ;;
      *) proxy_pids "$1" ;;
    esac
  }
  # syscr syscw voluntary involuntary utime stime (ticks) minor-faults,
  # summed over the pids and their threads.
  counters() {
    local pid task r w v i u s m
    local -a f
    r=0 w=0 v=0 i=0 u=0 s=0 m=0
    for pid in "$@"; do
      r=$((r + $(awk '/^syscr:/ {print $2}' "/proc/$pid/io")))
      w=$((w + $(awk '/^syscw:/ {print $2}' "/proc/$pid/io")))
      read -r -a f <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
      u=$((u + f[11])) s=$((s + f[12])) m=$((m + f[7]))
      for task in /proc/"$pid"/task/*; do
        v=$((v + $(awk '/^voluntary_ctxt_switches:/ {print $2}' "$task/status" 2>/dev/null || echo 0)))
        i=$((i + $(awk '/^nonvoluntary_ctxt_switches:/ {print $2}' "$task/status" 2>/dev/null || echo 0)))
      done
    done
    echo "$r $w $v $i $u $s $m"
  }
  for target in ${PROFILE_TARGETS:-nginx waybill-plain}; do
    pids=$(traced_pids "$target")
    url="http://127.0.0.1:$(port_of "$target")"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s "$ROOT/bench/post.lua" "$url" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    read -r r0 w0 v0 i0 u0 s0 m0 <<<"$(counters $pids)"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" -s "$ROOT/bench/post.lua" "$url" >"$WORK/sys-$target.txt" 2>&1 || true
    # shellcheck disable=SC2086
    read -r r1 w1 v1 i1 u1 s1 m1 <<<"$(counters $pids)"
    n=$(awk '/requests in/ {print $1}' "$WORK/sys-$target.txt")
    echo
    echo "== $target: $n requests in ${secs}s (wrk -c$CONNS), no tracer; per request:"
    awk -v n="$n" -v r=$((r1 - r0)) -v w=$((w1 - w0)) -v v=$((v1 - v0)) -v i=$((i1 - i0)) \
      -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v m=$((m1 - m0)) -v hz="$TICK" 'BEGIN {
      printf "   CPU us: user %.2f + system %.2f = %.2f\n", u / hz * 1e6 / n, s / hz * 1e6 / n, (u + s) / hz * 1e6 / n
      printf "   read(v) %.2f, write(v) %.2f (/proc/PID/io; recvfrom and sendto are not counted there)\n", r / n, w / n
      printf "   context switches: voluntary %.3f, involuntary %.3f; minor page faults %.3f\n", v / n, i / n, m / n }'
    strace_args=()
    for pid in $pids; do strace_args+=(-p "$pid"); done
    strace -f -c -o "$WORK/strace-$target.txt" "${strace_args[@]}" 2>/dev/null &
    strace_pid=$!
    sleep 1
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" -s "$ROOT/bench/post.lua" "$url" >"$WORK/strace-wrk-$target.txt" 2>&1 || true
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    n=$(awk '/requests in/ {print $1}' "$WORK/strace-wrk-$target.txt")
    echo "== $target under strace: $n requests in ${secs}s; calls (and errors, e.g. EAGAIN) per request:"
    awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
        name = $NF; calls = $4; errors = (NF == 6) ? $5 : 0
        printf "   %-16s %7.3f", name, calls / n
        if (errors > 0) printf "   (errors %.3f)", errors / n
        printf "\n"
      }
      $NF == "total" { printf "   %-16s %7.3f\n", "total", $4 / n }' "$WORK/strace-$target.txt"
  done
  exit 0
fi

if [[ "${PROFILE:-}" == callgrind ]]; then
  # A short, light run through waybill under callgrind (≈ 50× slower), then
  # a clean stop so callgrind writes its profile; the top of it by
  # inclusive and exclusive instruction counts.
  secs=${PROFILE_SECONDS:-20}
  target=${PROFILE_TARGET:-waybill}
  log "profiling waybill ($target) under callgrind for ${secs}s"
  PACE_MS=0 taskset -c "$LOAD_CPU" wrk -t1 -c4 -d"${secs}s" -s "$ROOT/bench/post.lua" \
    "http://127.0.0.1:$(port_of "$target")" >"$WORK/profile-wrk.txt" 2>&1 || true
  grep -E 'requests in' "$WORK/profile-wrk.txt" >&2 || true
  kill -TERM "$WAYBILL_PID"
  for _ in $(seq 600); do kill -0 "$WAYBILL_PID" 2>/dev/null || break; sleep 0.1; done
  out=${PROFILE_OUT:-/tmp/waybill-profile}
  mkdir -p "$out"
  cp "$WORK/callgrind.out" "$out/callgrind.out"
  cp "$WORK/profile-wrk.txt" "$out/wrk.txt"
  log "profile kept in $out/callgrind.out (wrk's output in $out/wrk.txt)"
  callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null | head -60 || true
  echo
  callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -45 || true
  exit 0
fi

TARGETS=(direct nginx haproxy waybill waybill-plain)
[[ -n "$BASELINE_PID" ]] && TARGETS+=(baseline baseline-plain)
RES="$WORK/results"
mkdir -p "$RES"
for t in "${TARGETS[@]}"; do
  pids=$(proxy_pids "$t")
  [[ -n "$pids" ]] && rss_kb $pids >"$RES/$t.rss_idle"
done

run_wrk() { # target seconds connections outfile [pace]
  local target=$1 secs=$2 conns=$3 out=$4 pace=${5:-0}
  PACE_MS=$pace taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${secs}s" --latency \
    -s "$ROOT/bench/post.lua" "http://127.0.0.1:$(port_of "$target")" >"$out" 2>&1
  if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
    log "$target: $(grep -e 'Non-2xx' -e 'Socket errors' "$out" | tr -s ' ')"
  fi
}

log "warm-up"
for t in "${TARGETS[@]}"; do run_wrk "$t" 2 "$CONNS" "$WORK/warmup-$t.txt"; done

for rep in $(seq "$REPS"); do
  # Rotate the order each repetition so no target always runs first.
  shift_by=$(((rep - 1) % ${#TARGETS[@]}))
  order=("${TARGETS[@]:$shift_by}" "${TARGETS[@]:0:$shift_by}")
  for t in "${order[@]}"; do
    out="$WORK/tput-$t-$rep.txt"
    pids=$(proxy_pids "$t")
    [[ -n "$pids" ]] && before=$(cpu_ticks $pids)
    run_wrk "$t" "$DURATION" "$CONNS" "$out"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    echo "$rps" >>"$RES/$t.rps"
    if [[ -n "$pids" ]]; then
      after=$(cpu_ticks $pids)
      awk -v d=$((after - before)) -v n="$reqs" -v hz="$TICK" \
        'BEGIN { printf "%.2f\n", d / hz * 1e6 / n }' >>"$RES/$t.cpu_us"
      rss_kb $pids >>"$RES/$t.rss_load"
    fi
    log "rep $rep $t: $rps req/s"
  done
  for t in "${order[@]}"; do
    out="$WORK/lat-$t-$rep.txt"
    run_wrk "$t" "$LAT_DURATION" "$LAT_CONNS" "$out" "$PACE_MS"
    awk '/^Requests\/sec:/ {print $2}' "$out" >>"$RES/$t.lat_rps"
    percentile_us 50 "$out" >>"$RES/$t.p50"
    percentile_us 99 "$out" >>"$RES/$t.p99"
    log "rep $rep $t latency: p50 $(tail -1 "$RES/$t.p50") µs, p99 $(tail -1 "$RES/$t.p99") µs"
  done
done

# --- table ----------------------------------------------------------------

median() { # file → median (empty file → "-")
  [[ -s "$1" ]] || { echo "-"; return; }
  sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() { # file [printf format of one value, %.0f] → "min–max"
  [[ -s "$1" ]] || { echo "-"; return; }
  sort -g "$1" | awk -v f="${2:-%.0f}" 'NR == 1 { lo = $1 } { hi = $1 } END { printf f "–" f, lo, hi }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%+.0f", a - b }'; }
mb() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }'; }

N_RPS=$(median "$RES/nginx.rps")
D_P50=$(median "$RES/direct.p50")
D_P99=$(median "$RES/direct.p99")
N_CPU=$(median "$RES/nginx.cpu_us")
echo
echo "waybill vs nginx: POST ${BODY_SIZE} B JSON → ${BODY_SIZE} B JSON, $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), wrk on CPU $LOAD_CPU, servers on CPU $SERVER_CPU"
echo "medians of $REPS interleaved repetitions; throughput: wrk -t1 -c$CONNS -d${DURATION}s; latency: wrk -t1 -c$LAT_CONNS, ${PACE_MS} ms pause per request per connection, ${LAT_DURATION}s"
echo
printf '| %-14s | %9s | %13s | %6s | %7s | %7s | %9s | %9s | %7s | %9s | %6s | %7s | %7s |\n' \
  target "req/s" "req/s min–max" "×nginx" "lat r/s" "p50 µs" "+p50 dir" "p99 µs" "+p99 dir" "CPU µs/req" "×nginx" "RSS idle" "RSS load"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' --------------- ----------- --------------- -------- --------- --------- ----------- ----------- --------- ------------ -------- --------- ---------
for t in "${TARGETS[@]}"; do
  rps=$(median "$RES/$t.rps")
  p50=$(median "$RES/$t.p50")
  p99=$(median "$RES/$t.p99")
  cpu=$(median "$RES/$t.cpu_us")
  printf '| %-14s | %9.0f | %13s | %6s | %7.0f | %7s | %9s | %9s | %7s | %9s | %6s | %7s | %7s |\n' \
    "$t" "$rps" "$(spread "$RES/$t.rps")" "$(ratio "$rps" "$N_RPS")" "$(median "$RES/$t.lat_rps")" \
    "$p50" "$(diff_us "$p50" "$D_P50")" "$p99" "$(diff_us "$p99" "$D_P99")" \
    "$cpu" "$(ratio "$cpu" "$N_CPU")" "$(mb "$(median "$RES/$t.rss_idle")")" "$(mb "$(median "$RES/$t.rss_load")")"
done
echo
echo "RSS in MB (nginx: master + worker); CPU: utime+stime of the proxy's processes over the throughput run / requests."
H_RPS=$(median "$RES/haproxy.rps")
H_CPU=$(median "$RES/haproxy.cpu_us")
for t in waybill waybill-plain; do
  echo "$t against haproxy (the second peer): throughput × $(ratio "$(median "$RES/$t.rps")" "$H_RPS"), CPU per request × $(ratio "$(median "$RES/$t.cpu_us")" "$H_CPU")"
done
# Each repetition's own ratio (line by line: the same repetition), then
# their median and spread: what drifts between repetitions cancels.
paired() { # file-a file-b → one ratio per line
  paste "$1" "$2" | awk '$2 > 0 { printf "%.4f\n", $1 / $2 }'
}
if [[ -n "$BASELINE_PID" ]]; then
  echo
  for t in waybill waybill-plain; do
    b=${t/waybill/baseline}
    paired "$RES/$t.rps" "$RES/$b.rps" >"$RES/$t.rps_vs_base"
    paired "$RES/$t.cpu_us" "$RES/$b.cpu_us" >"$RES/$t.cpu_vs_base"
    echo "$t against baseline (BASELINE_BIN), median (min–max) of $REPS paired repetitions: throughput × $(median "$RES/$t.rps_vs_base") ($(spread "$RES/$t.rps_vs_base" %.3f)), CPU per request × $(median "$RES/$t.cpu_vs_base") ($(spread "$RES/$t.cpu_vs_base" %.3f))"
  done
fi

# What waybill did with the traffic: observations and spans dropped would
# make it look cheaper than it is.
echo
echo "waybill's own counters after the runs:"
curl -s http://127.0.0.1:18099/metrics |
  grep -E '^waybill_(exchanges_total|observations_dropped|telemetry_(dropped_spans|exported_spans)|proxy_requests_total|extraction_failures_total|correlated_observations|transactions_(created|merged))' |
  grep -vE ' 0(\.0)?$' | sed 's/^/  /' || true
