#!/usr/bin/env bash
# Durable appends through the daemon, measured with `wrk` (Debian package `wrk`): 64
# connections over loopback, each sending `POST /v1/entries` one after another, against the
# release binary; then, as the baseline of the same run, `GET /metrics` (no token, no
# storage). Both share the machine's cores with wrk.
#
#   cargo build --release && benches/wrk.sh [SECONDS] [WORKDIR]
#
# The binary is target/release/djaudit, or $DJAUDIT. The server's log goes to
# WORKDIR/serve.log, at the level RUST_LOG sets (default info: refusals and failures;
# RUST_LOG=info,djaudit::daemon::api=debug logs every request). PERF=1 records a profile
# of the server during the append run into WORKDIR/perf.data.
set -euo pipefail

secs=${1:-8}
work=${2:-$(mktemp -d)}
bin=${DJAUDIT:-$(dirname "$0")/../target/release/djaudit}
port=${PORT:-8700}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release" >&2; exit 2; }

rm -rf "$work/data"
mkdir -p "$work"
export DJAUDIT_DATA=$work/data
"$bin" init --origin bench.example/ledger >/dev/null
token=$("$bin" token create --user bench)
cat >"$work/serve.toml" <<TOML
listen = "127.0.0.1:$port"
[schedule.verify]
every = "off"
[schedule.checkpoint]
every = "off"
TOML
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"kind":"bench.append","subject":"client/1","data":{"i":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

"$bin" serve --config "$work/serve.toml" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${PERF:-0}" = 1 ]; then
    perf record -g -p "$server" -o "$work/perf.data" -- sleep "$secs" >/dev/null 2>&1 &
    perf_pid=$!
fi
echo "== POST /v1/entries (durable appends), 64 connections, ${secs}s"
wrk -t1 -c64 -d"${secs}s" -s "$work/post.lua" --latency "http://127.0.0.1:$port/v1/entries"
if [ -n "${perf_pid:-}" ]; then wait "$perf_pid"; fi
echo "== baseline: GET /metrics, 64 connections, ${secs}s"
wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$port/metrics"
kill -TERM $server
wait $server || true
trap - EXIT
echo "== after shutdown"
"$bin" verify --no-record | tail -1
echo "log lines: $(wc -l <"$work/serve.log")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
