#!/usr/bin/env bash
# Benchmarks the access commands on a synthetic corpus and prints a markdown report.
#
#   bench/access.sh [--runs N] [--objects N] [--assertions N] [--accord BIN] [--out FILE] [--keep]
#
#   --runs N         repetitions; every figure is the median over them (default 3)
#   --objects N      corpus size (default 100000)
#   --assertions N   access-test assertions for `accord test` (default 1000)
#   --accord BIN     benchmark this binary instead of building one with `cargo build --release`
#   --out FILE       also write the report to FILE
#   --keep           keep the work folder
#
# What is measured, per run (wall seconds via /usr/bin/time; the query commands also
# log the time to read, index and answer, at debug level under `accord::timing`):
#   validate   accord validate CORPUS                       (the baseline every ratio uses)
#   index      building the access index of the read state  (target < 0.5 x validate)
#   who-can    one who-can query on the built index         (target < 50 ms)
#   can        one can --explain query on the built index   (target < 50 ms)
#   lint       accord lint CORPUS                           (target < 1 x validate; also
#              the rules' own time after the read, which validate does not have)
#   diff       accord diff of two revisions 50 objects apart (target < 2 x validate)
#   test       accord test of N assertions                  (target < 2 x validate)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
die() { echo "bench/access.sh: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

runs=3 objects=100000 assertions=1000 accord="" out="" keep=0
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --objects) objects=${2:?}; shift 2 ;;
    --assertions) assertions=${2:?}; shift 2 ;;
    --accord) accord=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ -x /usr/bin/time ]] || die "GNU time is needed (apt-get install time)"

if [[ -z $accord ]]; then
  note "cargo build --release"
  (cd "$root" && cargo build --release --quiet) >&2
  accord=${CARGO_TARGET_DIR:-$root/target}/release/accord
fi
[[ -x $accord ]] || die "no accord binary at $accord"

work=$(mktemp -d /tmp/accord-access-bench.XXXXXX)
cleanup() { if ((keep)); then note "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
results=$work/results.tsv anomalies=$work/anomalies.txt
: >"$results"; : >"$anomalies"

# Two revisions 50 objects apart, in one repository; the corpus folder is its
# working copy at the first.
repo=$work/repo
note "corpus: $objects objects, two revisions 50 objects apart"
python3 "$here/gen_corpus.py" --objects "$objects" --out "$repo" --git >/dev/null
base=$(git -C "$repo" rev-parse HEAD)
python3 "$here/gen_corpus.py" --objects "$objects" --out "$repo" --mutate 50 --git >/dev/null
head=$(git -C "$repo" rev-parse HEAD)
git -C "$repo" checkout -q "$base"
python3 "$here/gen_access_tests.py" --objects "$objects" --assertions "$assertions" --out "$work/tests" >/dev/null

# A permission the corpus grants, with its app, and a user enrolled in one of
# its roles there (so `can` is allowed and walks a real path).
read -r app permission user < <(python3 - "$repo" <<'PY'
import os, re, sys
root = sys.argv[1]
def fields(text):
    return dict(re.findall(r'^\s*-?\s*(\w+): *"?([^"\n]*)"?', text, re.M))
permits, users = [], {}
for folder, _, files in sorted(os.walk(os.path.join(root, "apps"))):
    for name in sorted(files):
        for item in open(os.path.join(folder, name)).read().split("\n- "):
            f = fields(item)
            if "permissionId" in f and "roles:" in item:
                line = item.split("roles:", 1)[1].split("\n")[0]
                permits.append((f.get("app"), f["permissionId"], re.findall(r'"([^"]+)"', line)))
            elif "userId" in f and "role" in f:
                users.setdefault((f.get("app"), f["role"]), f["userId"])
for app, permission, roles in permits:
    for role in roles:
        if (app, role) in users:
            print(app, permission, users[(app, role)])
            sys.exit(0)
sys.exit("no permit with an enrolled user")
PY
)
[[ -n ${user:-} ]] || die "the corpus has no permit with an enrolled user"

# Runs a command; records its wall time (and, for queries, the logged timings).
measure() {
  local run=$1 name=$2 expect=$3; shift 3
  local log=$work/$name.$run.log code=0
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" --log accord::timing=debug --log-format json \
    >/dev/null 2>"$log" || code=$?
  if [[ ! $code =~ ^($expect)$ ]]; then
    { echo "$name exited $code, expected $expect:"; tail -n 5 "$log"; } >>"$anomalies"
    return 0   # a failed command has no time worth reporting: its row shows "missing"
  fi
  # GNU time puts "Command exited with non-zero status N" first when it did.
  read -r wall rss < <(tail -n 1 "$work/time")
  printf '%s\t%s\t%s\t%s\n' "$run" "$name" "$wall" "$rss" >>"$results"
  python3 - "$log" "$run" "$name" >>"$results" <<'EOF'
import json, sys
log, run, name = sys.argv[1:]
for line in open(log):
    try:
        fields = json.loads(line)["fields"]
    except (ValueError, KeyError):
        continue
    for key in ("index_s", "query_s", "rules_s"):
        if key in fields:
            print(f"{run}\t{name}.{key[:-2]}\t{fields[key]:.6f}\t0")
EOF
}

for run in $(seq 1 "$runs"); do
  note "run $run of $runs"
  measure "$run" validate 0 "$accord" validate "$repo"
  measure "$run" who-can 0 "$accord" who-can "$permission" --source "$repo"
  measure "$run" can 0 "$accord" can "user:$user" "$permission" --explain --source "$repo" --app "$app"
  # Findings are expected in a synthetic corpus: exit 1 is a finished lint.
  measure "$run" lint '0|1' "$accord" lint "$repo"
  measure "$run" diff 0 "$accord" diff --repo "$repo" --base "$base" --head "$head"
  measure "$run" test 0 "$accord" test "$work/tests" --source "$repo"
done

python3 - "$results" "$anomalies" "$objects" "$assertions" "$runs" >"$work/report.md" <<'EOF'
import statistics, sys
results, anomalies, objects, assertions, runs = sys.argv[1:]
series = {}
for line in open(results):
    run, name, value, rss = line.split("\t")
    series.setdefault(name, []).append((float(value), int(rss)))
med = {name: statistics.median(v for v, _ in values) for name, values in series.items()}
rss = {name: max(r for _, r in values) for name, values in series.items()}
validate = med["validate"]
def row(what, name, target, limit, ratio=True):
    value = med.get(name)
    if value is None:
        return f"| {what} | — | {target} | missing |"
    shown = f"{value:.3f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"
    measure = value / validate if ratio else value
    ok = "yes" if measure <= limit else "**no**"
    extra = f" ({measure:.2f} ×)" if ratio else ""
    return f"| {what} | {shown}{extra} | {target} | {ok} |"
print(f"## Access commands: {int(objects):,} objects, {runs} run(s), medians\n")
print(f"`accord validate` (baseline): {validate:.3f} s, peak {rss['validate'] // 1024} MB\n")
print("| measure | median | target | met |")
print("| --- | ---: | --- | --- |")
print(row("index build (of the read state)", "can.index", "< 0.5 × validate", 0.5))
print(row("`who-can` query, index built", "who-can.query", "< 50 ms", 0.05, ratio=False))
print(row("`can --explain` query, index built", "can.query", "< 50 ms", 0.05, ratio=False))
print(row("`lint` (wall)", "lint", "< 1 × validate", 1.0))
print(row("`lint` rules alone (after the read validate also does)", "lint.rules", "—", float("inf")))
print(row("`diff`, two revisions 50 objects apart (wall)", "diff", "< 2 × validate", 2.0))
print(row(f"`test`, {int(assertions):,} assertions (wall)", "test", "< 2 × validate", 2.0))
print(row("`who-can` whole command (wall)", "who-can", "—", float("inf")))
problems = open(anomalies).read().strip()
print()
print(problems if problems else "None: every command exited as expected")
EOF
cat "$work/report.md"
if [[ -n $out ]]; then cp "$work/report.md" "$out"; fi
