#!/usr/bin/env bash
# Scale run of BENCHMARKS.md: synthesise N members, import every file into an empty ledger,
# import the same files again, run the checks and compare them with the generator's list,
# verify. Times and peak memory from /usr/bin/time.
#
#   cargo build --release && benches/scale.sh 1000000 [WORKDIR]
#
# DJAUDIT overrides the binary (default: target/release/djaudit of this checkout). WORKDIR
# (default: a new temporary directory) keeps its synthesised files between runs; the ledger
# in it is recreated each time. Needs python3; about 25 GB free for N = 1,000,000.
set -euo pipefail
N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${DJAUDIT:-$ROOT/target/release/djaudit}
D=${2:-$(mktemp -d)}
mkdir -p "$D"
rm -rf "$D/l"
cd "$D"
uptime
[ -d s ] || /usr/bin/time -f "synth: %e s, peak %M KiB" \
    "$B" synth --members "$N" --seed 1 --out s --defects 0.01 --as-of 2026-11-28
"$B" --data l init --origin scale.example/ledger >/dev/null
start=$(date +%s.%N)
for k in orgs members dues meetings transfers users; do
  /usr/bin/time -f "import $k: %e s, peak %M KiB" "$B" --data l import "$k" "s/$k.csv"
done
end=$(date +%s.%N)
echo "rows: $(($(cat s/*.csv | wc -l) - 6))"
echo "first import total: $(python3 -c "print(round($end - $start, 1))") s"
# Re-import under the access policy, as a user of the organisation department.
DEPT=$(grep ',org_dept,' s/users.csv | head -1 | cut -d, -f1)
start=$(date +%s.%N)
for k in orgs members dues meetings transfers; do
  /usr/bin/time -f "re-import $k: %e s, peak %M KiB" "$B" --data l import "$k" "s/$k.csv" --as "$DEPT"
done
end=$(date +%s.%N)
echo "re-import total: $(python3 -c "print(round($end - $start, 1))") s"
/usr/bin/time -f "check: %e s, peak %M KiB" \
    "$B" --data l check --as-of 2026-11-28 --json --no-record > check.json || true
python3 - <<'PY'
import json
e = {(f['rule'], f['subject']) for f in json.load(open('s/expected_findings.json'))['findings']}
g = {(f['rule'], f['subject']) for f in json.load(open('check.json'))['findings']}
print(f"expected {len(e)} found {len(g)} missed {len(e - g)} extra {len(g - e)}")
PY
/usr/bin/time -f "verify: %e s, peak %M KiB" "$B" --data l verify --no-record
uptime
