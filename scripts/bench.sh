#!/usr/bin/env bash
# The standard benchmark: a fresh local ferrocket broker per run, driven by mqbench.
#
#   scripts/bench.sh [--runs N] [--duration S] [--warmup S] [--backlog N] [--only REGEX]
#                    [--pin] [--out FILE] [--no-build] [--ports NAMESRV,BROKER]
#                    [--broker-threads N]
#   scripts/bench.sh --report target/bench/<time> [--out FILE]   # the table of earlier runs
#
# Workloads (1 KiB = 1024-byte bodies, topic with 8 queues, closed loop):
#   async-128B-1 / -64, async-1KiB-1 / -64 (the headline), sync-128B-1 / -64,
#   sync-1KiB-1 / -64 / -256, and backlog-1KiB-pull / -push (write --backlog messages, then
#   time a pull and a push consumer reading them all from the first offset).
#
# Each workload runs --runs times (default 5), each run on a new broker with an empty store
# (ASYNC_FLUSH, or --sync-flush for sync workloads): --warmup seconds (default 10) then
# --duration seconds measured (default 60). The markdown table of medians (min–max where it
# matters) goes to stdout and to --out if given; every run's JSON summary and the broker logs
# stay in target/bench/<time>/. --pin runs the broker on cpu1 and mqbench on cpu0.
# --broker-threads sets the broker's runtime worker threads (default 1: on a 2-core machine
# shared with mqbench, one thread serves the most; 0 leaves ferrocket's default, one per core).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
duration=60
warmup=10
backlog=1000000
only=""
pin=false
out=""
build=true
namesrv_port=29876
broker_port=29911
report_only=""
broker_threads=1

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --backlog) backlog="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --pin) pin=true; shift ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=false; shift ;;
    --ports) namesrv_port="${2%,*}"; broker_port="${2#*,}"; shift 2 ;;
    --report) report_only="$2"; shift 2 ;;
    --broker-threads) broker_threads="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage 1 ;;
  esac
done

# name|flush|body bytes|requests in flight|producers (connections)
workloads=(
  "async-128B-1|async|128|1|1"
  "async-128B-64|async|128|64|4"
  "async-1KiB-1|async|1024|1|1"
  "async-1KiB-64|async|1024|64|4"
  "sync-128B-1|sync|128|1|1"
  "sync-128B-64|sync|128|64|4"
  "sync-1KiB-1|sync|1024|1|1"
  "sync-1KiB-64|sync|1024|64|4"
  "sync-1KiB-256|sync|1024|256|8"
  "backlog-1KiB|async|1024|64|4"
)

ferrocket=target/release/ferrocket
mqbench=target/release/mqbench

broker_cpu=()
client_cpu=()
if $pin; then
  broker_cpu=(taskset -c 1)
  client_cpu=(taskset -c 0)
fi

broker_pid=""
data_dir=""

stop_broker() {
  if [[ -n "$broker_pid" ]]; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    for _ in $(seq 300); do
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
  if [[ -n "$data_dir" ]]; then
    rm -rf "$data_dir"
    data_dir=""
  fi
}
trap stop_broker EXIT

# Starts a broker with an empty store; $1 is async or sync, $2 its log file.
start_broker() {
  local flush="$1" log="$2" flags=()
  [[ "$flush" == sync ]] && flags=(--sync-flush)
  [[ "$broker_threads" != 0 ]] && flags+=(--worker-threads "$broker_threads")
  data_dir="$(mktemp -d "${TMPDIR:-/tmp}/ferrocket-bench.XXXXXX")"
  : >"$log"
  "${broker_cpu[@]}" "$ferrocket" --data-dir "$data_dir" --namesrv-port "$namesrv_port" \
    --broker-port "$broker_port" "${flags[@]}" >"$log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 300); do
    grep -q "ferrocket is running" "$log" && return 0
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench.sh: the broker did not start; its log:" >&2
  cat "$log" >&2
  exit 1
}

# RssAnon of the broker in KiB.
rss_anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$broker_pid/status"; }

# Runs mqbench with the broker's pid and the name server, the JSON summary into $1 and the
# live lines into $1 with .log for .json. A failed run is reported and left out of the table.
bench() {
  local json="$1"
  shift
  if ! "${client_cpu[@]}" "$mqbench" "$@" -n "127.0.0.1:$namesrv_port" \
      --broker-pid "$broker_pid" --json >"$json" 2>"${json%.json}.log"; then
    echo "bench.sh: mqbench $* failed; see ${json%.json}.log" >&2
    rm -f "$json"
  fi
}

# Writes the facts around a run that mqbench does not see.
write_meta() {
  local file="$1" idle_kib="$2" load="$3"
  printf '{"idle_rss_anon_kib": %s, "load_1m": %s}\n' "$idle_kib" "$load" >"$file"
}

# Warns when the brokers' stores may not fit: a run writes its whole window to a store of its
# own (~8 GiB for 70 s at 100k msgs/s of 1 KiB), removed after the run. A full disk shows up as
# refused sends, not as a slower broker.
check_disk_space() {
  local dir="${TMPDIR:-/tmp}" need_gib free_gib
  need_gib=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", (d + w) * 120 / 1024 + 2 }')
  free_gib=$(df --output=avail -BG "$dir" | tail -1 | tr -dc '0-9')
  if (( free_gib < need_gib )); then
    echo "bench.sh: warning: $free_gib GiB free in $dir, a run may need $need_gib GiB" >&2
  fi
}

# Runs every selected workload --runs times into $results.
run_all() {
  check_disk_space
  if $build; then
    cargo build --release --locked --bin ferrocket --bin mqbench >&2
  fi
  results="target/bench/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$results"
  printf '{"runs": %s, "duration": %s, "warmup": %s, "backlog": %s, "pin": %s, "broker_threads": %s, "commit": "%s", "date": "%s"}\n' \
    "$runs" "$duration" "$warmup" "$backlog" "$pin" "$broker_threads" "$(git rev-parse --short HEAD)" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" >"$results/params.json"
  for entry in "${workloads[@]}"; do
    IFS='|' read -r name flush size inflight producers <<<"$entry"
    if [[ -n "$only" && ! "$name" =~ $only ]]; then
      continue
    fi
    for run in $(seq "$runs"); do
      tag="$results/$name-$run"
      echo "==> $name run $run/$runs" >&2
      start_broker "$flush" "$tag.broker.log"
      sleep 1
      idle_kib="$(rss_anon_kib)"
      load="$(cut -d' ' -f1 /proc/loadavg)"
      if [[ "$name" == backlog-* ]]; then
        bench "$tag-write.json" produce -s "$size" -c "$inflight" -p "$producers" --batch 16 \
          -w 0 --count "$backlog"
        write_meta "$tag-write.meta" "$idle_kib" "$load"
        # The consumers read what was stored: a send refused under load is not in the backlog.
        stored="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["acked"])' \
          "$tag-write.json" 2>/dev/null || echo "$backlog")"
        for consumer in pull push; do
          bench "$tag-$consumer.json" consume --consumer "$consumer" -g "bench_$consumer" \
            --from first -w 0 --count "$stored" -d 600
          write_meta "$tag-$consumer.meta" "$idle_kib" "$load"
        done
      else
        bench "$tag.json" produce -s "$size" -c "$inflight" -p "$producers" -w "$warmup" \
          -d "$duration"
        write_meta "$tag.meta" "$idle_kib" "$load"
      fi
      stop_broker
    done
  done
}

if [[ -n "$report_only" ]]; then
  results="$report_only"
else
  run_all
fi

table="$(python3 - "$results" "${workloads[@]%%|*}" <<'EOF'
import glob, json, os, re, statistics, sys

results = sys.argv[1]
order = sys.argv[2:]
params = json.load(open(os.path.join(results, "params.json")))
rows = {}
for path in glob.glob(os.path.join(results, "*.json")):
    base = os.path.basename(path)[:-5]
    match = re.match(r"(.+)-(\d+)(?:-(pull|push|write))?$", base)
    if not match:
        continue
    name = match.group(1) + (f"-{match.group(3)}" if match.group(3) else "")
    with open(path) as f:
        summary = json.load(f)
    meta_path = os.path.join(results, base + ".meta")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    rows.setdefault(name, []).append((summary, meta))

def med(values, digits=0, spread=False):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    fmt = lambda v: f"{v:,.{digits}f}"
    text = fmt(statistics.median(values))
    if spread and len(values) > 1:
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    return text

def ms(summary, key, field):
    latency = summary.get(key)
    return latency[field] / 1000 if latency else None

def cpu(summary, key):
    cost = summary.get(key)
    return cost["us_per_msg"] if cost else None

def machine(summary, field):
    split = summary.get("machine_cpu")
    return split[field] if split else None

def threads_text(threads):
    if threads == 0:
        return "one worker thread per core"
    return "one thread" if threads == 1 else f"{threads} worker threads"

model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"ferrocket {params['commit']}, {params['date']}, {os.cpu_count()} CPUs ({model}), "
      f"{'broker on cpu1, mqbench on cpu0' if params['pin'] else 'unpinned'}, "
      f"broker runtime: {threads_text(params.get('broker_threads', 0))}; "
      f"{params['runs']} runs per workload, each on a fresh broker: {params['warmup']} s warm-up + "
      f"{params['duration']} s measured "
      f"(backlog: {params['backlog']:,} messages written 16 per request, then read from the first "
      f"offset by a pull and then a push consumer). "
      f"Medians, (min–max) where shown. Raw summaries: {results}/")
print()
print("| workload | msgs/s | MB/s | send p50 ms | send p99 ms | p99.9 ms | max ms | errors | broker µs/msg | mqbench µs/msg | broker RssAnon MiB idle / after | load 1m | CPUs idle / stolen |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
def rank(name):
    base = re.sub(r"-(pull|push|write)$", "", name)
    part = ["write", "pull", "push"].index(name.rsplit("-", 1)[1]) if base != name else 0
    return (order.index(base) if base in order else len(order), part)

for name, entries in sorted(rows.items(), key=lambda item: rank(item[0])):
    sums = [s for s, _ in entries]
    backlog_row = sums[0]["mode"] == "consume"
    rate = [s["consume_msgs_per_s"] if backlog_row else s["msgs_per_s"] for s in sums]
    mb = [s["consume_mb_per_s"] if backlog_row else s["mb_per_s"] for s in sums]
    errors = [sum((s["consume_errors_by_code"] if backlog_row else s["errors_by_code"]).values()) for s in sums]
    after = [s["broker_memory"]["rss_anon_kib"] / 1024 if s.get("broker_memory") else None for s in sums]
    idle = [m.get("idle_rss_anon_kib", 0) / 1024 for _, m in entries]
    cells = [
        name,
        med(rate, 0, True),
        med(mb, 1),
        "—" if backlog_row else med([ms(s, "send_latency_us", "p50") for s in sums], 3),
        "—" if backlog_row else med([ms(s, "send_latency_us", "p99") for s in sums], 2, True),
        "—" if backlog_row else med([ms(s, "send_latency_us", "p999") for s in sums], 1),
        "—" if backlog_row else med([ms(s, "send_latency_us", "max") for s in sums], 1),
        str(sum(errors)),
        med([cpu(s, "broker_cpu") for s in sums], 1),
        med([cpu(s, "client_cpu") for s in sums], 1),
        f"{med(idle, 0)} / {med(after, 0)}",
        med([m.get("load_1m") for _, m in entries], 1),
        f"{med([machine(s, 'idle_cpus') for s in sums], 2)} / "
        f"{med([machine(s, 'steal_cpus') for s in sums], 2, True)}",
    ]
    print("| " + " | ".join(cells) + " |")
EOF
)"
echo "$table"
if [[ -n "$out" ]]; then
  echo "$table" >"$out"
fi
