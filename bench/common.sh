# What the benchmark scripts share (sourced, not run; they define `die` and `note` first):
# the packages they need, and PostgreSQL: a throwaway cluster on a free loopback port, or
# the server ACCORD_BENCH_POSTGRES_URL names (its user must be able to CREATE DATABASE).
#
#   stop_accord              stops the `accord run` whose pid is in accord_pid (TERM, then KILL)
#   want_backends LIST       sets want_sqlite and want_pg from "sqlite,postgres" (or "pg")
#   install_missing PKG...   installs the Debian packages named (as root), if any
#   pg_packages              prints the packages PostgreSQL still needs, one a line
#   pg_bin_dir               the newest PostgreSQL's bin folder, if installed
#   pg_start NAME NO_FSYNC   sets pg_url and appends pg_server=… to $meta; NAME says which
#                            script started the cluster; NO_FSYNC=1 turns durability off
#   pg_stop                  stops a throwaway cluster and removes it (for the EXIT trap)
#   psql_q URL ARGS...       psql, quiet, stopping at the first error, unaligned output
#   pg_db_url URL DB         the URL of database DB on the server of URL (keeps any ?query)
#
# The throwaway cluster keeps PostgreSQL's default durability (fsync on, synchronous_commit
# on) unless asked: a benchmark should see the commit cost a real server has.

stop_accord() {
  [[ -n $accord_pid ]] || return 0
  kill -TERM "$accord_pid" 2>/dev/null || true
  for _ in {1..100}; do kill -0 "$accord_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$accord_pid" 2>/dev/null || true
  wait "$accord_pid" 2>/dev/null || true
  accord_pid=""
}

want_backends() {
  local backend
  want_sqlite=0 want_pg=0
  IFS=, read -ra _backends <<<"$1"
  for backend in "${_backends[@]}"; do
    case $backend in sqlite) want_sqlite=1 ;; pg|postgres) want_pg=1 ;; *) die "unknown backend: $backend" ;; esac
  done
}

install_missing() {
  (($#)) || return 0
  [[ $EUID -eq 0 ]] || die "missing packages: $* (install them, or run as root)"
  note "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_packages() {
  command -v psql >/dev/null || echo postgresql-client
  if [[ -z "${ACCORD_BENCH_POSTGRES_URL:-}" && -z "$(pg_bin_dir)" ]]; then echo postgresql; fi
}

pgdir="" pgbin="" pg_url=""
as_pg() { "$@"; }

pg_start() {
  local name=$1 no_fsync=$2 port opts
  if [[ -n "${ACCORD_BENCH_POSTGRES_URL:-}" ]]; then
    pg_url=$ACCORD_BENCH_POSTGRES_URL
    echo "pg_server=external (ACCORD_BENCH_POSTGRES_URL)" >>"$meta"
    return
  fi
  pgbin=$(pg_bin_dir)
  [[ -n $pgbin ]] || die "no PostgreSQL under /usr/lib/postgresql"
  pgdir=$(mktemp -d /tmp/accord-bench-pg.XXXXXX)
  # initdb/postgres refuse to run as root: the cluster then belongs to the `postgres`
  # user; `cd /` because that user may not be able to read our working directory.
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$pgdir"
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
  fi
  # --locale=C: a LANG naming an ungenerated locale would make initdb fail.
  as_pg "$pgbin/initdb" -D "$pgdir" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
  # Free loopback port: random, skipping any that already accepts connections.
  for _ in {1..100}; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  opts="-h 127.0.0.1 -p $port -k $pgdir"
  if ((no_fsync)); then opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  if ! as_pg "$pgbin/pg_ctl" -w -D "$pgdir" -l "$pgdir/log" start -o "$opts" >/dev/null; then
    cat "$pgdir/log" >&2 || true
    die "PostgreSQL failed to start"
  fi
  pg_url="postgres://postgres@127.0.0.1:$port/postgres"
  echo "pg_server=throwaway cluster started by $name (initdb, default settings$( ((no_fsync)) && echo ' + fsync/synchronous_commit/full_page_writes off'))" >>"$meta"
}

pg_stop() {
  if [[ -n $pgdir ]]; then
    as_pg "$pgbin/pg_ctl" -D "$pgdir" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pgdir"
    pgdir=""
  fi
}

psql_q() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At "${@:2}"; }

pg_db_url() {
  local url=$1 db=$2 query=""
  [[ $url == *\?* ]] && query="?${url#*\?}" && url=${url%%\?*}
  echo "${url%/*}/$db$query"
}
