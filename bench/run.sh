#!/usr/bin/env bash
# Benchmarks accord on a synthetic corpus and prints a markdown report.
#
#   bench/run.sh [--runs N] [--objects N] [--out FILE] [--accord BIN] [--gen PATH]
#                [--pg-no-fsync] [--keep]
#
#   --runs N        repetitions; every figure is the median over them (default 3)
#   --objects N     corpus size, organizations + permits + enrollments (default 100000)
#   --out FILE      also write the report to FILE
#   --accord BIN    benchmark this binary instead of building one with `cargo build --release`
#                   (the build honours CARGO_TARGET_DIR)
#   --gen PATH      corpus generator to use (default: bench/gen_corpus.py)
#   --pg-no-fsync   start the throwaway PostgreSQL with fsync/synchronous_commit/full_page_writes
#                   off (default: server defaults, i.e. fsync on, like a real deployment)
#   --keep          keep the work folder (corpus, CSV, logs) for inspection
#
#   ACCORD_BENCH_POSTGRES_URL  use this server instead of starting one; its user must be able
#                              to CREATE DATABASE (each run gets a fresh database, dropped after)
#
# What is measured, per run (wall seconds and peak RSS via /usr/bin/time):
#   validate    accord validate CORPUS
#   per backend (SQLite: fresh db file; PostgreSQL: fresh database):
#     apply     first accord apply into the empty database
#     plan      accord plan right after it (nothing to do: must exit 0)
#     verify    accord audit verify of the history the first apply wrote
#     apply50   accord apply after regenerating the corpus with --mutate 50
#                (the corpus is restored afterwards, untimed)
#     baseline  bulk load of the same rows from CSV: sqlite3 .import / psql \copy
# Targets: apply <= 2 x (validate + baseline), plan <= 1.2 x validate in every run, verify
# < 1 s per 100k objects, validate peak RSS < 300 MB, every other command < 300 MB up to
# 100k objects and < 1 GB past that (--objects 1000000 measures the million-object rows).
# Medians, ratios and the report are computed by bench/bench.py (standard library only).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

die() { echo "bench/run.sh: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }   # progress goes to stderr; stdout is the report

runs=3 objects=100000 out="" accord="" gen="" pg_no_fsync=0 keep=0
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --objects) objects=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --accord) accord=${2:?}; shift 2 ;;
    --gen) gen=${2:?}; shift 2 ;;
    --pg-no-fsync) pg_no_fsync=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $objects =~ ^[1-9][0-9]*$ ]] || die "--objects must be a positive integer"

# --- tools -------------------------------------------------------------------
# shellcheck source=bench/common.sh
source "$here/common.sh"
# GNU time gives peak RSS (%M, KiB) of exactly the command; bash's `time` can't.
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
mapfile -t -O "${#missing[@]}" missing < <(pg_packages)
install_missing ${missing[@]+"${missing[@]}"}
command -v python3 >/dev/null || die "python3 is needed (gen_corpus.py and bench/bench.py)"

if [[ -z $gen ]]; then
  gen=$here/gen_corpus.py
fi
[[ -f $gen ]] || die "gen_corpus.py not found at $gen (use --gen PATH)"

built=0
if [[ -z $accord ]]; then
  built=1
  note "cargo build --release"
  (cd "$root" && cargo build --release --quiet) >&2
  accord=${CARGO_TARGET_DIR:-$root/target}/release/accord
fi
[[ -x $accord ]] || die "no accord binary at $accord"
accord=$(cd "$(dirname "$accord")" && pwd)/$(basename "$accord")

# --- work folder and cleanup --------------------------------------------------
work=$(mktemp -d /tmp/accord-bench.XXXXXX)
corpus=$work/corpus csvdir=$work/csv
results=$work/results.tsv      # one line per measurement, read by bench.py
meta=$work/meta.txt            # key=value facts for the report header
anomalies=$work/anomalies.md   # unexpected exit codes, with stderr
: >"$results"; : >"$meta"; : >"$anomalies"

cleanup() {
  pg_stop
  if ((keep)); then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT   # make Ctrl-C / kill go through the EXIT trap too
trap 'exit 143' TERM

# --- PostgreSQL server --------------------------------------------------------
# Same recipe as scripts/test, except that durability stays on unless --pg-no-fsync:
# a benchmark should see the commit cost a real server has.
pg_start bench/run.sh "$pg_no_fsync"

# --- corpus -------------------------------------------------------------------
note "generating $objects objects into $corpus"
gen_out=$(python3 "$gen" --objects "$objects" --out "$corpus" --csv "$csvdir")
note "$gen_out"
regen() { python3 "$gen" --objects "$objects" --out "$corpus" "$@" >/dev/null; }

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "mem_gb=$(awk '/^MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "commit_subject=$(git -C "$root" log -1 --format='%s, %cd' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null || true)"
  # A dirty tree means a binary built by this script contains uncommitted changes; a binary
  # given with --accord was built whenever it was built, so compare its time with the commit's.
  echo "worktree=$(if [[ -n $(git -C "$root" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null) ]]; then echo 'dirty (uncommitted changes in src/, migrations/ or Cargo.*)'; else echo clean; fi) at benchmark start$( ((built)) || echo ', binary given with --accord')"
  echo "binary=$accord"
  echo "binary_mtime=$(date -u -r "$accord" '+%Y-%m-%d %H:%M UTC')"
  echo "accord_version=$("$accord" --version 2>/dev/null || echo unknown)"
  echo "sqlite_version=$(sqlite3 --version | cut -d' ' -f1)"
  echo "psql_version=$(psql --version)"
  echo "pg_version=$(psql_q "$pg_url" -c 'SHOW server_version')"
  echo "pg_fsync=$(psql_q "$pg_url" -c 'SHOW fsync')"
  echo "pg_synchronous_commit=$(psql_q "$pg_url" -c 'SHOW synchronous_commit')"
  # The machine may be shared: the load average says how much to trust the figures.
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "runs=$runs"
  echo "objects=$objects"
  echo "gen_summary=${gen_out% under *}"
  echo "corpus_files=$(find "$corpus" -type f \( -name '*.yaml' -o -name '*.yml' \) | wc -l)"
  echo "corpus_bytes=$(find "$corpus" -type f \( -name '*.yaml' -o -name '*.yml' \) -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  echo "csv_bytes=$(find "$csvdir" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  echo "csv_rows=$(cat "$csvdir"/*.csv | wc -l)"
} >>"$meta"

# --- measuring ------------------------------------------------------------------
# measure KEY EXPECTED_EXIT CMD...: runs CMD under GNU time (stdout discarded: plan prints
# a diff per object) and appends "KEY RUN WALL_S RSS_KIB CPU_S EXIT" to $results.
# An unexpected exit code is recorded with the command's stderr, and the run goes on.
measure() {
  local key=$1 want=$2 rc=0 wall rss user sys
  shift 2
  /usr/bin/time -f '%e %M %U %S' -o "$work/time.out" "$@" >/dev/null 2>"$work/stderr.log" || rc=$?
  # GNU time prefixes "Command exited with non-zero status N" on failure: take the last line.
  read -r wall rss user sys < <(tail -n 1 "$work/time.out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$run" "$wall" "$rss" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" "$rc" >>"$results"
  note "run $run $key: ${wall}s $((rss / 1024))MB exit $rc"
  if [[ $rc != "$want" ]]; then
    {
      echo "- run $run, \`$key\`: exit $rc (expected $want): \`${*/#$accord/accord}\`"
      echo '  ```'
      head -n 20 "$work/stderr.log" | sed 's/^/  /'
      echo '  ```'
    } >>"$anomalies"
    return 1
  fi
}

# After a no-op plan that found changes, show (untimed) what it wanted to change.
explain_plan() {
  {
    echo "  first lines of that plan's output:"
    echo '  ```'
    # `|| true`: this plan is expected to fail (exit 2), and set -e must not end the benchmark.
    "$accord" plan --source "$corpus" --database "$1" --color never 2>&1 | head -n 20 | sed 's/^/  /' || true
    echo '  ```'
  } >>"$anomalies"
}

# The baselines load the same rows as the corpus, from gen_corpus --csv, into tables with
# the CSV's columns and the same primary keys as accord's schema (lists and members as
# JSON text, as accord stores them). No audit log, no managed_objects: a floor, not a rival.
baseline_ddl="
CREATE TABLE organizations (app TEXT NOT NULL, slug TEXT NOT NULL, name TEXT, monthly_tokens BIGINT,
  allowed_models TEXT NOT NULL, members TEXT NOT NULL, PRIMARY KEY (app, slug));
CREATE TABLE permits (app TEXT NOT NULL, id TEXT NOT NULL, permission_id TEXT NOT NULL,
  slugs TEXT NOT NULL, roles TEXT NOT NULL, PRIMARY KEY (app, id));
CREATE TABLE enrollments (app TEXT NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL,
  user_id TEXT, contact_id TEXT, PRIMARY KEY (app, id));"

run_sqlite() {
  local db=$work/accord.db url="sqlite://$work/accord.db"
  rm -f "$db" "$db"-wal "$db"-shm "$db"-journal
  measure sqlite.apply 0 "$accord" apply --source "$corpus" --database "$url" --color never || true
  measure sqlite.plan 0 "$accord" plan --source "$corpus" --database "$url" --color never || explain_plan "$url"
  measure sqlite.verify 0 "$accord" audit verify --database "$url" || true
  regen --mutate 50
  measure sqlite.apply50 0 "$accord" apply --source "$corpus" --database "$url" --color never || true
  regen   # restore the unmutated corpus for the next step
  rm -f "$db" "$db"-wal "$db"-shm "$db"-journal

  # Baseline: the whole sqlite3 invocation (create tables + three .import) on a fresh file.
  local bdb=$work/baseline.db
  rm -f "$bdb"
  measure sqlite.baseline 0 sqlite3 -bail "$bdb" "$baseline_ddl" ".mode csv" \
    ".import $csvdir/organizations.csv organizations" \
    ".import $csvdir/permits.csv permits" \
    ".import $csvdir/enrollments.csv enrollments" || true
  rm -f "$bdb"
}

run_postgres() {
  local db="accord_bench_$$_$run" url
  url=$(pg_db_url "$pg_url" "$db")
  psql_q "$pg_url" -c "CREATE DATABASE $db"
  measure pg.apply 0 "$accord" apply --source "$corpus" --database "$url" --color never || true
  measure pg.plan 0 "$accord" plan --source "$corpus" --database "$url" --color never || explain_plan "$url"
  measure pg.verify 0 "$accord" audit verify --database "$url" || true
  regen --mutate 50
  measure pg.apply50 0 "$accord" apply --source "$corpus" --database "$url" --color never || true
  regen
  psql_q "$pg_url" -c "DROP DATABASE $db"

  # Baseline: tables created untimed in a fresh database, then one timed psql with three \copy.
  db="accord_bench_base_$$_$run"
  url=$(pg_db_url "$pg_url" "$db")
  psql_q "$pg_url" -c "CREATE DATABASE $db"
  psql_q "$url" -c "$baseline_ddl"
  measure pg.baseline 0 psql "$url" -X -q -v ON_ERROR_STOP=1 \
    -c "\\copy organizations FROM '$csvdir/organizations.csv' WITH (FORMAT csv)" \
    -c "\\copy permits FROM '$csvdir/permits.csv' WITH (FORMAT csv)" \
    -c "\\copy enrollments FROM '$csvdir/enrollments.csv' WITH (FORMAT csv)" || true
  psql_q "$pg_url" -c "DROP DATABASE $db"
}

# One untimed validate first, so every timed run reads the corpus from a warm page cache.
run=0
"$accord" validate "$corpus" >/dev/null 2>&1 || note "warm-up validate failed (see report)"

for ((run = 1; run <= runs; run++)); do
  measure validate 0 "$accord" validate "$corpus" --color never || true
  run_sqlite
  run_postgres
done

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"
python3 "$here/bench.py" --results "$results" --meta "$meta" --anomalies "$anomalies" ${out:+--out "$out"}
