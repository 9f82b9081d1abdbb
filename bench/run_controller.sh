#!/usr/bin/env bash
# Benchmarks `accord run` (the controller) following a local Git repository of the synthetic
# corpus, and prints a markdown report.
#
#   bench/run_controller.sh [--runs N] [--objects N] [--backends sqlite,pg] [--rate R]
#                           [--transport file|daemon] [--env VAR=VALUE]... [--out FILE]
#                           [--accord BIN] [--gen PATH] [--pg-no-fsync] [--keep]
#
#   --runs N        commit → applied runs per mode and backend; medians are reported (default 5)
#   --objects N     corpus size (default 100000)
#   --backends L    comma-separated: sqlite, pg (default sqlite,pg)
#   --rate R        target rate of the status load, requests/s (default 500)
#   --transport T   how accord fetches the repository: file (a file:// URL, default; libgit2
#                   then builds the pack itself, in accord's process) or daemon (`git daemon`
#                   on 127.0.0.1, git:// URL; the pack is built by git in another process,
#                   as a Git server would)
#   --env VAR=VAL   set this in accord's environment (repeatable), e.g. MALLOC_ARENA_MAX=2
#   --out FILE      also write the report to FILE
#   --accord BIN    benchmark this binary instead of building one with `cargo build --release`
#                   (the build honours CARGO_TARGET_DIR)
#   --gen PATH      corpus generator to use (default: bench/gen_corpus.py)
#   --pg-no-fsync   start the throwaway PostgreSQL with fsync/synchronous_commit/full_page_writes off
#   --keep          keep the work folder (repository, databases, accord logs, raw JSON)
#
#   ACCORD_BENCH_POSTGRES_URL  use this server instead of starting one (its user must be able
#                              to CREATE DATABASE)
#
# Per backend (fresh SQLite file / fresh PostgreSQL database), with the corpus committed in a
# local Git repository that accord fetches over file://:
#   A. `accord run` with the source at `interval: 1h` and a webhook secret:
#      - first sync of the whole corpus, timed from process start, while bench/controller.py
#        loads GET /api/v1/status at --rate requests/s (latency during a big sync);
#      - VmRSS/VmHWM/CPU sampled for 10 s once idle;
#      - N × (commit a 50-object change, POST a signed GitHub webhook, time until the status
#        shows the commit applied); changes alternate `--mutate 50` and its reverse;
#      - one more such change while the status load runs (latency during a small sync);
#   B. `accord run` restarted on the same database with `interval: 1s` and no webhook:
#      - VmRSS and CPU sampled over 8 s of drift checks with no new commit;
#      - if `wrk` is installed: 10 s of closed-loop `wrk -t1 -c4` on GET /api/v1/status (the
#        most the endpoint serves while drift checks run; not part of the targets);
#      - N × (commit a 50-object change, time until applied by polling alone).
# Targets (issue 3): commit → applied with the webhook < 2 s; idle memory < 300 MB.
# All HTTP traffic goes to 127.0.0.1, bounded in count and time.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

die() { echo "bench/run_controller.sh: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

runs=5 objects=100000 backends=sqlite,pg rate=500 out="" accord="" gen="" pg_no_fsync=0 keep=0
connections=8 transport=file accord_env=()
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --objects) objects=${2:?}; shift 2 ;;
    --backends) backends=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --transport) transport=${2:?}; shift 2 ;;
    --env) [[ $2 == *=* ]] || die "--env wants VAR=VALUE"; accord_env+=("$2"); shift 2 ;;
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
[[ $rate =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer"
[[ $transport == file || $transport == daemon ]] || die "--transport must be file or daemon"

# --- tools -------------------------------------------------------------------
# shellcheck source=bench/common.sh
source "$here/common.sh"
want_backends "$backends"
missing=()
command -v git >/dev/null || missing+=(git)
if ((want_pg)); then mapfile -t -O "${#missing[@]}" missing < <(pg_packages); fi
install_missing ${missing[@]+"${missing[@]}"}
command -v python3 >/dev/null || die "python3 is needed (gen_corpus.py and bench/controller.py)"

if [[ -z $gen ]]; then
  gen=$here/gen_corpus.py
fi
[[ -f $gen ]] || die "gen_corpus.py not found at $gen (use --gen PATH)"
gen=$(cd "$(dirname "$gen")" && pwd)/$(basename "$gen")

built=0
if [[ -z $accord ]]; then
  built=1
  note "cargo build --release"
  (cd "$root" && cargo build --release --quiet) >&2
  accord=${CARGO_TARGET_DIR:-$root/target}/release/accord
fi
[[ -x $accord ]] || die "no accord binary at $accord"
accord=$(cd "$(dirname "$accord")" && pwd)/$(basename "$accord")
helper=(python3 "$here/controller.py")

# --- work folder and cleanup --------------------------------------------------
work=$(mktemp -d /tmp/accord-ctl-bench.XXXXXX)
repo=$work/repo
results=$work/results.jsonl
meta=$work/meta.txt
: >"$results"; : >"$meta"

accord_pid="" load_pid="" daemon_pid=""
cleanup() {
  [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null || true
  stop_accord
  if [[ -n $daemon_pid ]]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  pg_stop
  if ((keep)); then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  local port
  for _ in {1..100}; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  die "no free port"
}

# --- PostgreSQL server (bench/common.sh) ------------------------------------------
if ((want_pg)); then pg_start bench/run_controller.sh "$pg_no_fsync"; fi

# --- corpus in a Git repository --------------------------------------------------
note "generating $objects objects into the Git repository $repo"
gen_out=$(python3 "$gen" --objects "$objects" --out "$repo" --git)
note "$gen_out"
mutated=0   # whether HEAD carries --mutate 50

repo_url=file://$repo
if [[ $transport == daemon ]]; then
  # git daemon serves $work/repo as git://127.0.0.1:PORT/repo (loopback only).
  daemon_port=$(free_port)
  git daemon --reuseaddr --export-all --base-path="$work" --listen=127.0.0.1 --port="$daemon_port" \
    --informative-errors "$work" 2>"$work/git-daemon.log" &
  daemon_pid=$!
  for _ in {1..100}; do (exec 3<>"/dev/tcp/127.0.0.1/$daemon_port") 2>/dev/null && break; sleep 0.05; done
  repo_url=git://127.0.0.1:$daemon_port/repo
fi

secret_file=$work/hook-secret
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "mem_gb=$(awk '/^MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "commit_subject=$(git -C "$root" log -1 --format='%s, %cd' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null || true)"
  echo "worktree=$(if [[ -n $(git -C "$root" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null) ]]; then echo 'dirty (uncommitted changes in src/, migrations/ or Cargo.*)'; else echo clean; fi) at benchmark start$( ((built)) || echo ', binary given with --accord')"
  echo "binary=$accord"
  echo "binary_mtime=$(date -u -r "$accord" '+%Y-%m-%d %H:%M UTC')"
  if ((want_pg)); then
    echo "pg_version=$(psql_q "$pg_url" -c 'SHOW server_version')"
    echo "pg_fsync=$(psql_q "$pg_url" -c 'SHOW fsync')"
    echo "pg_synchronous_commit=$(psql_q "$pg_url" -c 'SHOW synchronous_commit')"
  fi
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "runs=$runs"
  echo "objects=$objects"
  echo "load_rate=$rate"
  echo "load_connections=$connections"
  echo "transport=$transport"
  echo "repo_url=$repo_url"
  echo "accord_env=${accord_env[*]:-}"
  echo "gen_summary=${gen_out% under *}"
  echo "corpus_files=$(find "$repo" -path "$repo/.git" -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print | wc -l)"
  echo "corpus_bytes=$(find "$repo" -path "$repo/.git" -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
} >>"$meta"

# --- the controller ----------------------------------------------------------------
source_name=corpus
# write_config FILE DATABASE_URL PORT INTERVAL WITH_WEBHOOK
write_config() {
  {
    echo "database: $2"
    echo "listen: 127.0.0.1:$3"
    echo "cacheDir: $work/cache"
    echo "sources:"
    echo "  - name: $source_name"
    echo "    git:"
    echo "      url: $repo_url"
    echo "      ref: main"
    (($5)) && echo "      webhookSecretFile: $secret_file"
    echo "    interval: $4"
    echo "    drift: correct"
  } >"$1"
}

# start_accord CONFIG LOG: starts `accord run`, waits until it listens; sets accord_pid, url,
# start_epoch. A port taken meanwhile (the machine is shared) is replaced by another, up to 5 times.
start_accord() {
  local port attempt
  for attempt in 1 2 3 4 5; do
    port=$(sed -n 's/^listen: 127.0.0.1://p' "$1")
    url="http://127.0.0.1:$port"
    start_epoch=$(date +%s.%N)
    env ${accord_env[@]+"${accord_env[@]}"} "$accord" run --config "$1" --log accord=debug --color never >>"$2" 2>&1 &
    accord_pid=$!
    for _ in {1..300}; do
      if ! kill -0 "$accord_pid" 2>/dev/null; then
        wait "$accord_pid" 2>/dev/null || true
        accord_pid=""
        if tail -n 3 "$2" | grep -q "Address already in use"; then
          note "port $port taken, trying another"
          sed -i "s/^listen: .*/listen: 127.0.0.1:$(free_port)/" "$1"
          continue 2
        fi
        tail -n 20 "$2" >&2
        die "accord run exited at start (log above)"
      fi
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
      sleep 0.05
    done
    die "accord run did not listen on $url within 15 s"
  done
  die "accord run found no free port"
}

# change BACKEND WHAT RUN [--secret-file F]: commits the next 50-object change and times it.
change() {
  local backend=$1 what=$2 n=$3 m
  shift 3
  if ((mutated)); then m=0; else m=50; fi
  "${helper[@]}" change --url "$url" --source "$source_name" --gen "$gen" --repo "$repo" \
    --objects "$objects" --mutate "$m" "$@" --timeout 120 --pid "$accord_pid" \
    --tag "backend=$backend" --tag "what=$what" --tag "run=$n" --record "$results" >&2 || true
  mutated=$((1 - mutated))
}

proc() { # proc BACKEND WHAT WINDOW_S
  "${helper[@]}" proc --pid "$accord_pid" --window "$3" --every 1 \
    --tag "backend=$1" --tag "what=$2" --record "$results" >&2
}

bench_backend() {
  local backend=$1 db_url cfg log head port
  case $backend in
    sqlite) db_url="sqlite://$work/accord.db"; rm -f "$work"/accord.db* ;;
    pg)
      local db="accord_ctl_bench_$$"
      psql_q "$pg_url" -c "CREATE DATABASE $db"
      db_url=$(pg_db_url "$pg_url" "$db") ;;
  esac
  rm -rf "$work/cache"
  log=$work/accord-$backend.log
  # Every backend starts from the unmutated corpus, committed (untimed) if needed.
  if ((mutated)); then python3 "$gen" --objects "$objects" --out "$repo" --git >/dev/null; mutated=0; fi
  head=$(git -C "$repo" rev-parse HEAD)

  # A. webhook, long interval
  cfg=$work/accord-$backend-webhook.yaml
  port=$(free_port)
  write_config "$cfg" "$db_url" "$port" 1h 1
  note "$backend: starting accord run (interval 1h, webhook), first sync of $objects objects under load"
  start_accord "$cfg" "$log"
  "${helper[@]}" load --url "$url" --source "$source_name" --rate "$rate" --connections "$connections" \
    --duration 180 --until-revision "$head" --tail 1 \
    --tag "backend=$backend" --tag "what=load_first_sync" --record "$results" >/dev/null &
  load_pid=$!
  "${helper[@]}" wait --url "$url" --source "$source_name" --revision "$head" --timeout 300 \
    --since-epoch "$start_epoch" --tag "backend=$backend" --tag "what=first_sync" --record "$results" >&2 \
    || note "$backend: first sync did not finish (see the report)"
  wait "$load_pid" || true
  load_pid=""
  sleep 5
  note "$backend: idle memory"
  proc "$backend" idle_webhook 10
  for ((i = 1; i <= runs; i++)); do
    change "$backend" webhook "$i" --secret-file "$secret_file"
    sleep 1
  done
  note "$backend: one webhook change under load"
  load_under_change "$backend"
  sleep 3
  proc "$backend" after_runs 5
  stop_accord

  # B. polling every second, no webhook, same database
  cfg=$work/accord-$backend-poll.yaml
  port=$(free_port)
  write_config "$cfg" "$db_url" "$port" 1s 0
  note "$backend: restarting accord run (interval 1s, no webhook)"
  head=$(git -C "$repo" rev-parse HEAD)
  start_accord "$cfg" "$log"
  "${helper[@]}" wait --url "$url" --source "$source_name" --revision "$head" --timeout 300 \
    --since-epoch "$start_epoch" --tag "backend=$backend" --tag "what=restart_sync" --record "$results" >&2 \
    || note "$backend: sync after restart did not finish"
  sleep 3
  proc "$backend" idle_poll 8
  if command -v wrk >/dev/null; then
    note "$backend: wrk, 10 s closed loop on /api/v1/status"
    wrk -t1 -c4 -d10s --timeout 5s --latency "$url/api/v1/status" >"$work/wrk-$backend.txt" 2>&1 || true
    python3 "$here/controller.py" wrk --file "$work/wrk-$backend.txt" \
      --tag "backend=$backend" --tag "what=wrk_poll" --record "$results" >&2 || true
    sleep 2
  fi
  for ((i = 1; i <= runs; i++)); do
    change "$backend" poll "$i"
    sleep 0.5
  done
  stop_accord
  if [[ $backend == pg ]]; then psql_q "$pg_url" -c "DROP DATABASE accord_ctl_bench_$$"; fi
}

# A 50-object change while the status load runs: the load starts, one second later the change
# is committed and the webhook sent; the load stops one second after the status shows it applied.
load_under_change() {
  local backend=$1 m
  if ((mutated)); then m=0; else m=50; fi
  # The new commit's id is not known before gen_corpus.py runs: `change` writes it to a file,
  # which the load generator watches.
  rm -f "$work/next-rev"
  "${helper[@]}" load --url "$url" --source "$source_name" --rate "$rate" --connections "$connections" \
    --duration 60 --until-revision-file "$work/next-rev" --tail 1 \
    --tag "backend=$backend" --tag "what=load_webhook" --record "$results" >/dev/null &
  load_pid=$!
  sleep 1
  "${helper[@]}" change --url "$url" --source "$source_name" --gen "$gen" --repo "$repo" \
    --objects "$objects" --mutate "$m" --secret-file "$secret_file" --timeout 120 --pid "$accord_pid" \
    --revision-file "$work/next-rev" \
    --tag "backend=$backend" --tag "what=webhook_under_load" --tag run=1 --record "$results" >&2 || true
  mutated=$((1 - mutated))
  wait "$load_pid" || true
  load_pid=""
  rm -f "$work/next-rev"
}

((want_sqlite)) && bench_backend sqlite
((want_pg)) && bench_backend pg

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"
"${helper[@]}" report --results "$results" --meta "$meta" ${out:+--out "$out"}
