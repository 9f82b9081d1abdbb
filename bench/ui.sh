#!/usr/bin/env bash
# Benchmarks the operator's pages over a large database and prints a markdown report.
#
#   bench/ui.sh [--requests N] [--objects N] [--audit-rows N] [--backends LIST]
#               [--accord BIN] [--out FILE] [--keep]
#
#   --requests N     timed requests per page; every figure is the median (default 7)
#   --objects N      managed objects, from bench/gen_corpus.py (default 100000)
#   --audit-rows N   audit rows at least (default 1000000)
#   --backends LIST  comma-separated: sqlite, postgres (default both)
#   --accord BIN     benchmark this binary instead of building one with `cargo build --release`
#   --out FILE       also write the report to FILE
#   --keep           keep the work folder (corpus, SQLite database, logs) and the PostgreSQL
#                    database (on a server of ACCORD_BENCH_POSTGRES_URL: a throwaway one goes)
#
#   ACCORD_BENCH_POSTGRES_URL  use this server instead of starting one (see bench/common.sh)
#
# The history is made by accord itself, so its hash chain is valid and its rows are what a
# sync writes: a first `accord apply` of the corpus (one `create` row per object), then one
# apply of 50 changed permits by the actor `rare@example.com` (the needle the actor, time and
# object filters look for, deep in the history), then applies that alternate between two
# corpora of other seeds (every object changes: one `update` row each, with its diff) until
# there are N audit rows. Then `accord run` serves the database (a folder source named `git`
# holding the corpus last applied), and once it has verified the whole chain, each page is
# requested once untimed and N times timed with curl on loopback: the time to the first byte
# (the page is rendered whole before it is sent, so that is the server's time plus a loopback
# round trip) and the bytes sent.
# Targets (issue 16): the overview under 100 ms; no page over 200 KB.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
die() { echo "bench/ui.sh: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }   # progress goes to stderr; stdout is the report

requests=7 objects=100000 audit_rows=1000000 backends=sqlite,postgres accord="" out="" keep=0
while (($#)); do
  case $1 in
    --requests) requests=${2:?}; shift 2 ;;
    --objects) objects=${2:?}; shift 2 ;;
    --audit-rows) audit_rows=${2:?}; shift 2 ;;
    --backends) backends=${2:?}; shift 2 ;;
    --accord) accord=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
for n in "$requests" "$objects" "$audit_rows"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--requests, --objects and --audit-rows take positive integers"
done

# shellcheck source=bench/common.sh
source "$here/common.sh"
want_backends "$backends"
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
if ((want_pg)); then mapfile -t -O "${#missing[@]}" missing < <(pg_packages); fi
install_missing ${missing[@]+"${missing[@]}"}
command -v python3 >/dev/null || die "python3 is needed (gen_corpus.py and the report)"

if [[ -z $accord ]]; then
  note "cargo build --release"
  (cd "$root" && cargo build --release --quiet) >&2
  accord=${CARGO_TARGET_DIR:-$root/target}/release/accord
fi
[[ -x $accord ]] || die "no accord binary at $accord"
accord=$(cd "$(dirname "$accord")" && pwd)/$(basename "$accord")

work=$(mktemp -d /tmp/accord-ui-bench.XXXXXX)
results=$work/results.tsv meta=$work/meta.txt anomalies=$work/anomalies.md
: >"$results"; : >"$meta"; : >"$anomalies"
accord_pid="" url="" since="" until=""
cleanup() {
  stop_accord
  pg_stop
  if ((keep)); then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT   # make Ctrl-C / kill go through the EXIT trap too
trap 'exit 143' TERM

if ((want_pg)); then pg_start bench/ui.sh 0; fi

# Three corpora of the same objects: the served one (seed 1) and two others whose every
# object differs from it, to write an update row per object; and the seed-1 corpus with 50
# permits changed, for the rare actor.
note "generating corpora of $objects objects"
for seed in 1 2 3; do
  python3 "$here/gen_corpus.py" --objects "$objects" --seed "$seed" --out "$work/corpus-$seed" >/dev/null
done
python3 "$here/gen_corpus.py" --objects "$objects" --out "$work/corpus-rare" --mutate 50 >/dev/null

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "worktree=$(if [[ -n $(git -C "$root" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null) ]]; then echo dirty; else echo clean; fi)"
  echo "binary=$accord"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "objects=$objects"
  echo "audit_rows=$audit_rows"
  echo "requests=$requests"
} >>"$meta"

# apply DB CORPUS ACTOR: one `accord apply` as source `git`; the benchmark stops if it fails.
apply() {
  if ! "$accord" apply --source "$2" --source-name git --database "$1" --actor "$3" \
      --color never >/dev/null 2>"$work/apply.log"; then
    tail -n 5 "$work/apply.log" >&2
    die "accord apply of $(basename "$2") failed"
  fi
}

# history BACKEND DB COUNT_CMD...: fills the database; sets since and until around the
# rare apply.
history() {
  local backend=$1 db=$2 rows i=0
  shift 2
  note "$backend: first apply of $objects objects"
  apply "$db" "$work/corpus-1" bootstrap@example.com
  since=$(date -u '+%Y-%m-%dT%H:%M:%S.%NZ')
  apply "$db" "$work/corpus-rare" rare@example.com
  until=$(date -u '+%Y-%m-%dT%H:%M:%S.%NZ')
  while rows=$("$@"); ((rows < audit_rows)); do
    i=$((i + 1))
    note "$backend: $rows audit rows; apply $i"
    apply "$db" "$work/corpus-$((2 + i % 2))" "ci-$i@example.com"
  done
  # The served corpus last: `accord run` then finds nothing to change.
  apply "$db" "$work/corpus-1" bootstrap@example.com
  note "$backend: $("$@") audit rows"
}

# serve BACKEND DB: starts `accord run` on a free port; waits until the chain is verified.
serve() {
  local log=$work/run-$1.log
  : >"$log"
  "$accord" run --directory "$work/corpus-1" --source-name git --interval 1h --database "$2" \
    --listen 127.0.0.1:0 --color never >"$log" 2>&1 &
  accord_pid=$!
  url=""
  for _ in {1..600}; do
    kill -0 "$accord_pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "$1: accord run stopped"; }
    url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n 1 | sed 's/^listening on //' || true)
    if [[ -n $url ]] && curl -fsS "$url/api/v1/status" 2>/dev/null | python3 -c '
import json, sys
status = json.load(sys.stdin)
sys.exit(0 if status["auditChain"].get("ok") and all(s["state"] == "Synced" for s in status["sources"]) else 1)
'; then
      return
    fi
    sleep 0.5
  done
  die "$1: accord run did not verify the history and sync within 300 s"
}

# measure BACKEND NAME PATH: one untimed request, then N timed ones.
measure() {
  local backend=$1 name=$2 path=$3 line code
  curl -s -o /dev/null "$url$path" || true
  for _ in $(seq 1 "$requests"); do
    line=$(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer} %{size_download}' "$url$path" || true)
    read -r code ttfb size <<<"$line"
    if [[ $code != 200 ]]; then
      echo "- $backend \`$path\`: HTTP $code" >>"$anomalies"
      return
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$backend" "$name" "$path" "$ttfb" "$size" >>"$results"
  done
}

pages() {
  local backend=$1
  measure "$backend" overview "/"
  measure "$backend" source "/sources/git"
  measure "$backend" audit "/audit"
  measure "$backend" "audit, older page" "/audit?before=500000"
  measure "$backend" "audit, rare actor" "/audit?actor=rare@example.com"
  measure "$backend" "audit, rare action" "/audit?action=delete"
  measure "$backend" "audit, time range of the rare apply" "/audit?since=$since&until=$until"
  measure "$backend" "object history" "/audit?kind=Permit&app=app-0000.example.com&id=permit-0000000"
  measure "$backend" organizations "/organizations"
  measure "$backend" organization "/organizations/org-000001"
}

if ((want_sqlite)); then
  db="sqlite://$work/accord.db"
  history sqlite "$db" sqlite3 "$work/accord.db" 'SELECT COALESCE(MAX(seq), 0) FROM audit_log'
  note "sqlite: serving"
  serve sqlite "$db"
  pages sqlite
  stop_accord
  echo "sqlite_bytes=$(du -b "$work/accord.db" | cut -f1)" >>"$meta"
  [[ $keep == 1 ]] || rm -f "$work"/accord.db*
fi
if ((want_pg)); then
  name="accord_ui_bench_$$"
  psql_q "$pg_url" -c "CREATE DATABASE $name"
  db=$(pg_db_url "$pg_url" "$name")
  history postgres "$db" psql_q "$db" -c 'SELECT COALESCE(MAX(seq), 0) FROM audit_log'
  note "postgres: serving"
  serve postgres "$db"
  pages postgres
  stop_accord
  echo "pg_bytes=$(psql_q "$db" -c "SELECT pg_database_size('$name')")" >>"$meta"
  if ((keep)); then note "kept the database $db"; else psql_q "$pg_url" -c "DROP DATABASE $name"; fi
fi
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"

python3 - "$results" "$meta" "$anomalies" >"$work/report.md" <<'EOF'
import statistics, sys
results, meta, anomalies = sys.argv[1:]
facts = dict(line.rstrip("\n").split("=", 1) for line in open(meta) if "=" in line)
series, order = {}, []
for line in open(results):
    backend, name, path, ttfb, size = line.rstrip("\n").split("\t")
    key = (backend, name)
    if key not in series:
        order.append((key, path))
    series.setdefault(key, []).append((float(ttfb), int(size)))
TIME_TARGET = {"overview": 0.100}
SIZE_LIMIT = 200 * 1024
print(f"## Pages: {int(facts['objects']):,} objects, {int(facts['audit_rows']):,}+ audit rows, "
      f"{facts['requests']} requests each, medians\n")
print(f"{facts['date']}, {facts['nproc']} cores ({facts['cpu']}), commit {facts['commit']} "
      f"({facts['worktree']}), load average {facts['load_start']} at the start, {facts['load_end']} at the end.\n")
print("| backend | page | path | server time (median) | range | size | target | met |")
print("| --- | --- | --- | ---: | --- | ---: | --- | --- |")
for (backend, name), path in order:
    values = series[(backend, name)]
    times = [t for t, _ in values]
    size = max(s for _, s in values)
    median = statistics.median(times)
    limit = TIME_TARGET.get(name)
    target = (f"< {limit * 1000:.0f} ms, " if limit else "") + "≤ 200 KB"
    met = size <= SIZE_LIMIT and (limit is None or median < limit)
    print(f"| {backend} | {name} | `{path.replace('|', '%7C')}` | {median * 1000:.1f} ms | "
          f"{min(times) * 1000:.1f}–{max(times) * 1000:.1f} | {size / 1024:.1f} KB | {target} | "
          f"{'yes' if met else '**no**'} |")
sizes = [f"{k[:-6]} {int(v) / 2**20:.0f} MB" for k, v in facts.items() if k.endswith("_bytes")]
if sizes:
    print(f"\nDatabase size: {', '.join(sizes)}.")
problems = open(anomalies).read().strip()
print()
print(problems if problems else "None: every command and request succeeded")
EOF
cat "$work/report.md"
if [[ -n $out ]]; then cp "$work/report.md" "$out"; fi
