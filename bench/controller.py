#!/usr/bin/env python3
"""Helpers for bench/run_controller.sh (standard library only).

Subcommands (each prints one JSON object on stdout):

  wait     wait until GET /api/v1/status shows SOURCE with lastAppliedRevision == REV
  change   regenerate the corpus with gen_corpus.py --git (a 50-object commit), then time from
           the moment that command returns until the status shows the new commit applied;
           with --secret-file, send a signed GitHub push webhook right after the commit
  load     GET /api/v1/status at a fixed rate from a few keep-alive connections, for a bounded
           time and count; latency percentiles overall and split by whether the response showed
           the source Progressing (a sync in flight)
  proc     VmRSS, VmHWM and CPU seconds (user+sys) of a process, from /proc, sampled over a window
  wrk      the figures of a `wrk --latency` output, in the same JSON shape as `load`
  report   the markdown section from the JSON lines the script collected

All traffic goes to the URL given (run_controller.sh only ever passes 127.0.0.1).
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def emit(out, a):
    """Prints one JSON line, with the --tag KEY=VALUE pairs, and appends it to --record."""
    for tag in a.tag or []:
        k, _, v = tag.partition("=")
        out[k] = int(v) if v.isdigit() else v
    line = json.dumps(out)
    print(line)
    if a.record:
        with open(a.record, "a") as f:
            f.write(line + "\n")


# --- HTTP -----------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection that reconnects after an error."""

    def __init__(self, base, timeout=10.0):
        u = urllib.parse.urlsplit(base)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"refusing to send benchmark traffic to {u.hostname}: loopback only")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()


def source_status(data, source):
    for s in json.loads(data).get("sources", []):
        if s.get("name") == source:
            return s
    return None


def wait_applied(client, source, revision, timeout, poll=0.02):
    """Polls the status until `revision` is applied; returns (applied_at, status, polls)."""
    deadline = time.monotonic() + timeout
    polls = 0
    last = None
    while True:
        try:
            code, data = client.request("GET", "/api/v1/status")
            polls += 1
            if code == 200:
                last = source_status(data, source)
                if last and last.get("lastAppliedRevision") == revision:
                    return time.monotonic(), last, polls
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.monotonic() > deadline:
            return None, last, polls
        time.sleep(poll)


# --- wait -----------------------------------------------------------------------------------

def cmd_wait(a):
    client = Client(a.url)
    t0 = time.monotonic()
    applied, status, polls = wait_applied(client, a.source, a.revision, a.timeout)
    now = time.time()
    out = {"revision": a.revision, "ok": applied is not None, "polls": polls,
           "waited_s": round((applied or time.monotonic()) - t0, 3),
           "seconds": round(now - a.since_epoch, 3) if applied and a.since_epoch else None,
           "state": status and status.get("state"), "message": status and status.get("message"),
           "counts": status and status.get("counts")}
    emit(out, a)
    return 0 if applied else 1


# --- change ---------------------------------------------------------------------------------

def epoch(rfc3339):
    """Unix time of an RFC 3339 timestamp such as 2026-11-23T12:34:21.341263123Z."""
    if not rfc3339:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", rfc3339)
    if not m:
        return None
    base, frac, zone = m.groups()
    dt = datetime.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


def git_head(repo):
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def cmd_change(a):
    client = Client(a.url)
    args = [sys.executable, a.gen, "--objects", str(a.objects), "--out", a.repo, "--git",
            "--seed", str(a.seed)]
    if a.mutate:
        args += ["--mutate", str(a.mutate)]
    g0 = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    t0 = time.monotonic()                      # the commit exists from here on
    t0_epoch = time.time()
    gen_s = t0 - g0
    revision = git_head(a.repo)
    if a.revision_file:
        with open(a.revision_file + ".tmp", "w") as f:
            f.write(revision)
        os.replace(a.revision_file + ".tmp", a.revision_file)
    hook = None
    if a.secret_file:
        with open(a.secret_file, "rb") as f:
            secret = f.read().strip()
        body = json.dumps({"ref": "refs/heads/main", "after": revision,
                           "repository": {"full_name": "bench/corpus"}}).encode()
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        h0 = time.monotonic()
        code, _ = client.request("POST", f"/hooks/{a.source}", body=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": sig})
        hook = {"status": code, "ms": round((time.monotonic() - h0) * 1000, 2)}
    applied, status, polls = wait_applied(client, a.source, revision, a.timeout)
    out = {"revision": revision, "ok": applied is not None,
           "seconds": round(applied - t0, 3) if applied else None,
           "gen_s": round(gen_s, 3), "hook": hook, "polls": polls,
           "state": status and status.get("state"), "message": status and status.get("message"),
           "counts": status and status.get("counts"),
           "loadavg": open("/proc/loadavg").read().split()[0]}
    if applied:
        # The sync that applied the commit started at lastAttemptAt and ended at lastSuccessAt:
        # split the time into waiting for a sync to start and the sync itself.
        started, ended = epoch(status.get("lastAttemptAt")), epoch(status.get("lastSuccessAt"))
        if started and ended:
            out["wait_s"] = round(started - t0_epoch, 3)
            out["sync_s"] = round(ended - started, 3)
    if a.pid:
        out["VmRSS"] = proc_sample(a.pid)["VmRSS"]
    emit(out, a)
    return 0 if applied else 1


# --- load -----------------------------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summarize(lat_ms):
    if not lat_ms:
        return {"n": 0}
    return {"n": len(lat_ms), "p50_ms": round(pct(lat_ms, 50), 2), "p90_ms": round(pct(lat_ms, 90), 2),
            "p99_ms": round(pct(lat_ms, 99), 2), "max_ms": round(max(lat_ms), 2),
            "mean_ms": round(statistics.fmean(lat_ms), 2)}


def cmd_load(a):
    """Open-loop-ish load: request i is due at start + i/rate; a free connection takes the next
    due request. `lat` is send→response; `sched` is due→response (includes any wait for a free
    connection, i.e. it does not hide stalls behind a slow request: no coordinated omission)."""
    max_requests = min(a.max_requests, int(a.rate * a.duration))
    lock = threading.Lock()
    nxt = [0]
    stop = threading.Event()
    stop_at = [None]          # monotonic time to stop at, set once the revision is applied
    until = [a.until_revision]
    samples = []              # (due offset s, lat ms, sched ms, state or None, ok)
    errors = [0]
    seen_progressing = [None, None]   # first and last due offset with a Progressing response
    start = time.monotonic() + 0.05
    start_epoch = time.time() + (start - time.monotonic())
    deadline = start + a.duration

    def worker():
        client = Client(a.url, timeout=a.request_timeout)
        while not stop.is_set():
            with lock:
                i = nxt[0]
                if i >= max_requests:
                    return
                nxt[0] += 1
            due = start + i / a.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            if stop.is_set() or time.monotonic() > deadline:
                stop.set()
                return
            if stop_at[0] is not None and time.monotonic() > stop_at[0]:
                stop.set()
                return
            t = time.monotonic()
            state, ok = None, False
            try:
                code, data = client.request("GET", "/api/v1/status")
                done = time.monotonic()
                ok = code == 200
                if ok:
                    st = source_status(data, a.source)
                    state = st and st.get("state")
                    target = until[0]
                    if target is None and a.until_revision_file and os.path.exists(a.until_revision_file):
                        with open(a.until_revision_file) as f:
                            target = until[0] = f.read().strip() or None
                    if (target and st and st.get("lastAppliedRevision") == target
                            and stop_at[0] is None):
                        with lock:
                            if stop_at[0] is None:
                                stop_at[0] = done + a.tail
            except (OSError, http.client.HTTPException, ValueError):
                done = time.monotonic()
            if not ok:
                with lock:
                    errors[0] += 1
            with lock:
                samples.append((due - start, (done - t) * 1000, (done - due) * 1000, state, ok))
        client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()
    ok = [s for s in samples if s[4]]
    prog = [s for s in ok if s[3] == "Progressing"]
    other = [s for s in ok if s[3] != "Progressing"]
    if prog:
        seen_progressing = [min(s[0] for s in prog), max(s[0] for s in prog)]
    window = max(1e-9, end - start)
    out = {
        "target_rate": a.rate, "connections": a.connections, "window_s": round(window, 2),
        "requests": len(samples), "ok": len(ok), "errors": errors[0],
        "achieved_rate": round(len(ok) / window, 1),
        "all": summarize([s[1] for s in ok]), "all_sched": summarize([s[2] for s in ok]),
        "progressing": summarize([s[1] for s in prog]), "progressing_sched": summarize([s[2] for s in prog]),
        "other": summarize([s[1] for s in other]),
        "progressing_span_s": [round(x, 2) for x in seen_progressing] if prog else None,
        "progressing_rate": round(len(prog) / (seen_progressing[1] - seen_progressing[0]), 1)
        if prog and seen_progressing[1] > seen_progressing[0] else None,
        # the slowest requests, with the Unix time they were due, to line up with accord's log
        "slowest": [{"due_epoch": round(start_epoch + s[0], 3), "ms": round(s[1], 1), "state": s[3]}
                    for s in sorted(ok, key=lambda s: -s[1])[:5]],
        "stopped_by": "revision applied" if stop_at[0] else ("count" if len(samples) >= max_requests else "duration"),
    }
    emit(out, a)
    return 0


# --- wrk ----------------------------------------------------------------------------------

def ms(text):
    """wrk's durations (850.00us, 1.81ms, 2.03s) in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]


def cmd_wrk(a):
    """Reads `wrk --latency` output into the same JSON shape as `load`."""
    text = open(a.file).read()
    out = {"tool": "wrk", "raw": text.strip().splitlines()[:2]}
    pcts = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    mx = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    n = int(m.group(1)) if m else 0
    out["all"] = {"n": n, "p50_ms": ms(pcts.get("50", "")), "p90_ms": ms(pcts.get("90", "")),
                  "p99_ms": ms(pcts.get("99", "")), "max_ms": ms(mx.group(1)) if mx else None}
    out["achieved_rate"] = float(rate.group(1)) if rate else None
    out["errors"] = (sum(int(x) for x in errors.groups()) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)
    emit(out, a)
    return 0


# --- proc -----------------------------------------------------------------------------------

def proc_sample(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime
    return out


def cmd_proc(a):
    """Samples every --every seconds for --window seconds: the last sample's VmRSS/VmHWM, every
    VmRSS sample, and the process's CPU use over the window as a share of one core."""
    first = proc_sample(a.pid)
    t0 = time.monotonic()
    samples = [first]
    while time.monotonic() - t0 < a.window - 1e-3:
        time.sleep(min(a.every, a.window - (time.monotonic() - t0)))
        samples.append(proc_sample(a.pid))
    window = time.monotonic() - t0
    out = dict(samples[-1])
    out["rss_samples"] = [s["VmRSS"] for s in samples]
    out["cpu_window_s"] = round(window, 2)
    out["cpu_share"] = round((samples[-1]["cpu_s"] - first["cpu_s"]) / window, 3) if window > 0 else None
    emit(out, a)
    return 0


# --- report ---------------------------------------------------------------------------------

WEBHOOK_TARGET_S = 2.0
IDLE_RSS_TARGET_MB = 300
# Issue 17: past 100,000 objects, idle memory is judged against 800 MB (a million objects).
IDLE_RSS_TARGET_LARGE_MB = 800
# Issue 17: `GET /api/v1/status` during the first sync, p99 < 10 ms at 500 requests/s.
STATUS_P99_TARGET_MS = 10.0
STATUS_RATE_TARGET = 500
TITLES = {"sqlite": "SQLite", "pg": "PostgreSQL"}


def fmt(x, d=2):
    return "–" if x is None else f"{x:.{d}f}"


def mb(kib):
    return None if kib is None else kib / 1024


def report(rows, meta):
    m = meta.get
    out = []
    w = out.append
    by = {}
    for r in rows:
        by.setdefault((r["backend"], r["what"]), []).append(r)
    backends = [b for b in ("sqlite", "pg") if any(k[0] == b for k in by)]

    w("### Environment\n")
    w(f"- date: {m('date')}")
    w(f"- machine: {m('nproc')} CPUs ({m('cpu')}), {m('mem_gb')} GB RAM, {m('kernel')}; "
      f"load average (1/5/15 min) {m('load_start')} at start, {m('load_end')} at end")
    w(f"- accord: commit `{m('commit')}` ({m('commit_subject')}), work tree {m('worktree')}; "
      f"binary `{m('binary')}` built {m('binary_mtime')}")
    if "pg" in backends:
        w(f"- PostgreSQL server {m('pg_version')} (fsync={m('pg_fsync')}, "
          f"synchronous_commit={m('pg_synchronous_commit')}), {m('pg_server')}")
    w(f"- corpus: {int(m('objects')):,} objects in a local Git repository ({m('gen_summary')}), "
      f"{int(m('corpus_files')):,} YAML files, {int(m('corpus_bytes')) / 1e6:.1f} MB; "
      + ("fetched by accord over `git://` from `git daemon` on 127.0.0.1 (the pack is built by git, "
         "in another process)" if m("transport") == "daemon" else
         "fetched by accord over `file://` (libgit2 builds the pack itself, in accord's process)")
      + (f"; accord's environment: `{m('accord_env')}`" if m("accord_env") else ""))
    w(f"- a change = `gen_corpus.py --mutate 50 --git` (50 permits gain a role), then the reverse "
      f"(`gen_corpus.py --git` without `--mutate`), alternately, so every run commits a real "
      f"50-object change; timed from the moment that command returns (the commit exists) until "
      f"`GET /api/v1/status` (polled every 20 ms) shows `lastAppliedRevision` equal to the new "
      f"commit id; {m('runs')} runs per mode, median (min–max)")
    w(f"- load generator: `bench/controller.py load`, Python threads on the same machine, "
      f"{m('load_connections')} keep-alive connections, target {m('load_rate')} requests/s; latency = "
      f"send → full response; requests whose response shows the source `Progressing` ran while "
      f"a sync was in flight")
    w("")

    results = []
    for b in backends:
        title = TITLES[b]
        w(f"### {title}\n")
        first = (by.get((b, "first_sync")) or [None])[0]
        hooks = [r for r in by.get((b, "webhook"), [])]
        polls = [r for r in by.get((b, "poll"), [])]
        w("| measurement | median s | min–max s | of which waiting for a sync to start, median s | "
          "of which the sync, median s | runs | per run: s (VmRSS MB after it) |")
        w("|---|---:|---:|---:|---:|---:|---|")
        if first:
            w(f"| first sync after start (fetch + parse + apply of all {int(m('objects')):,} objects, "
              f"status load running) | {fmt(first.get('seconds'))} | – | – | – | 1 | "
              f"{first.get('state')}: {first.get('counts', {}).get('created')} created |")
        restart = (by.get((b, "restart_sync")) or [None])[0]
        if restart:
            w(f"| sync after a restart, nothing to apply (fetch + parse + no-op plan) | "
              f"{fmt(restart.get('seconds'))} | – | – | – | 1 | {restart.get('state')} |")

        def medof(rs, key):
            xs = [r[key] for r in rs if r.get("ok") and r.get(key) is not None]
            return statistics.median(xs) if xs else None

        for label, rs in (("commit → applied, webhook (`interval: 1h`)", hooks),
                          ("commit → applied, polling (`interval: 1s`, no webhook)", polls),
                          ("commit → applied, webhook, with the status load running",
                           by.get((b, "webhook_under_load"), []))):
            if not rs:
                continue
            secs = [r["seconds"] for r in rs if r.get("ok")]
            failed = [r for r in rs if not r.get("ok")]
            note = ", ".join(f"{r['seconds']:.2f}" + (f" ({mb(r['VmRSS']):.0f})" if r.get("VmRSS") else "")
                             for r in rs if r.get("ok"))
            if failed:
                note += f"; {len(failed)} run(s) not applied within the timeout"
            bad_hook = [r for r in rs if r.get("hook") and r["hook"]["status"] != 202]
            if bad_hook:
                note += f"; webhook answered {sorted({r['hook']['status'] for r in bad_hook})}"
            loads = [float(r["loadavg"]) for r in rs if r.get("loadavg")]
            if loads:
                note += f"; load average {min(loads):.2f}–{max(loads):.2f}"
            w(f"| {label} | {fmt(statistics.median(secs) if secs else None)} | "
              f"{fmt(min(secs)) if secs else '–'}–{fmt(max(secs)) if secs else '–'} | "
              f"{fmt(medof(rs, 'wait_s'))} | {fmt(medof(rs, 'sync_s'))} | {len(rs)} | {note or '–'} |")
        w("")

        w("| memory / CPU of `accord run` | VmRSS MB | VmHWM (peak) MB | CPU |\n|---|---:|---:|---|")
        for what, label in (("idle_webhook", "idle after the first sync (`interval: 1h`, nothing to do)"),
                            ("after_runs", "idle after the webhook runs"),
                            ("idle_poll", "between drift checks at `interval: 1s` (no new commits)")):
            for r in by.get((b, what), []):
                cpu = r.get("cpu_share")
                samples = r.get("rss_samples") or []
                rss = fmt(mb(r.get("VmRSS")), 1)
                if len(samples) > 1:
                    rss += " (samples " + ", ".join(f"{mb(x):.0f}" for x in samples) + ")"
                cpu_text = "–" if cpu is None else f"{cpu * 100:.0f} % of one core over {r.get('cpu_window_s', 0):.0f} s"
                w(f"| {label} | {rss} | {fmt(mb(r.get('VmHWM')), 1)} | {cpu_text} |")
        w("")

        w("| `GET /api/v1/status` under load | requests | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | "
          "p99 from due time ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for what, label in (("load_first_sync", "during the first full sync"),
                            ("load_webhook", "during a 50-object webhook sync")):
            for r in by.get((b, what), []):
                for part, plabel in (("all", "whole window"), ("progressing", "only requests that saw `Progressing`")):
                    s = r.get(part) or {}
                    sched = r.get(part + "_sched") or {}
                    if not s.get("n"):
                        w(f"| {label}, {plabel} | 0 | – | – | – | – | – | – | – |")
                        continue
                    rate = r.get("achieved_rate") if part == "all" else r.get("progressing_rate")
                    w(f"| {label}, {plabel} | {s['n']} | {fmt(rate, 0)} | {fmt(s['p50_ms'])} | {fmt(s['p90_ms'])} | "
                      f"{fmt(s['p99_ms'])} | {fmt(s['max_ms'])} | {fmt(sched.get('p99_ms'))} | "
                      f"{r.get('errors') if part == 'all' else ''} |")
        for r in by.get((b, "wrk_poll"), []):
            s = r.get("all") or {}
            w(f"| `wrk -t1 -c4 -d10s` closed loop (as fast as it goes), while drift checks run every second "
              f"| {s.get('n')} | {fmt(r.get('achieved_rate'), 0)} | {fmt(s.get('p50_ms'))} | {fmt(s.get('p90_ms'))} | "
              f"{fmt(s.get('p99_ms'))} | {fmt(s.get('max_ms'))} | – | {r.get('errors')} |")
        w("")

        # targets
        idle_target = IDLE_RSS_TARGET_MB if int(m('objects')) <= 100_000 else IDLE_RSS_TARGET_LARGE_MB
        loaded = [r for r in by.get((b, "load_first_sync"), []) if (r.get("all") or {}).get("n")]
        p99 = max((r["all"]["p99_ms"] for r in loaded), default=None)
        rate_ok = int(m('load_rate')) >= STATUS_RATE_TARGET
        results.append((f"{title}: `GET /api/v1/status` p99 during the first sync < {STATUS_P99_TARGET_MS:g} ms "
                        f"at {STATUS_RATE_TARGET} req/s" + ("" if rate_ok else f" (load was {m('load_rate')} req/s)"),
                        p99, STATUS_P99_TARGET_MS,
                        p99 is not None and rate_ok and p99 < STATUS_P99_TARGET_MS))
        secs = [r["seconds"] for r in hooks if r.get("ok")]
        med = statistics.median(secs) if secs and len(secs) == len(hooks) else None
        # Issue 3's target is for 100,000 objects; a million has none.
        if int(m('objects')) <= 100_000:
            results.append((f"{title}: commit → applied with the webhook < {WEBHOOK_TARGET_S:g} s (median)", med,
                            WEBHOOK_TARGET_S, med is not None and med < WEBHOOK_TARGET_S))
        # The measurement: resident memory while idle after the first sync.
        first_idle = [x for r in by.get((b, "idle_webhook"), []) for x in r.get("rss_samples") or [r.get("VmRSS")]]
        worst_first = mb(max(first_idle)) if first_idle else None
        results.append((f"{title}: VmRSS idle after the first sync < {idle_target} MB (worst of the samples)",
                        worst_first, idle_target, worst_first is not None and worst_first < idle_target))
        # Stricter: every sample taken between later syncs (idle after the webhook runs, between
        # drift checks at 1 s, right after each timed change).
        later = [x for k in ("after_runs", "idle_poll") for r in by.get((b, k), [])
                 for x in r.get("rss_samples") or [r.get("VmRSS")]]
        later += [r.get("VmRSS") for k in ("webhook", "poll", "webhook_under_load") for r in by.get((b, k), [])]
        later = [x for x in later if x is not None]
        worst_later = mb(max(later)) if later else None
        results.append((f"{title}: VmRSS between later syncs < {idle_target} MB (stricter reading; worst sample)",
                        worst_later, idle_target, worst_later is not None and worst_later < idle_target))

    w("### Targets\n")
    w("| target | measured | limit | ratio | result |\n|---|---:|---:|---:|---|")
    for name, val, lim, ok in results:
        ratio = f"{val / lim:.2f} × limit" if val is not None else "–"
        w(f"| {name} | {fmt(val)} | {fmt(lim)} | {ratio} | {'PASS' if ok else '**FAIL**'} |")
    w("")
    w(f"Overall: {sum(1 for r in results if r[3])}/{len(results)} targets pass.")
    w("")
    return "\n".join(out) + "\n"


def cmd_report(a):
    rows = []
    with open(a.results) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    meta = {}
    with open(a.meta) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    text = report(rows, meta)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tag", action="append", help="KEY=VALUE added to the JSON output")
    common.add_argument("--record", help="also append the JSON line to this file")

    p = sub.add_parser("wait", parents=[common])
    p.add_argument("--since-epoch", type=float, help="report seconds from this Unix time to applied")
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(fn=cmd_wait)

    p = sub.add_parser("change", parents=[common])
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--gen", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--objects", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mutate", type=int, default=0)
    p.add_argument("--secret-file")
    p.add_argument("--revision-file", help="write the new commit id here as soon as it is known")
    p.add_argument("--pid", type=int, help="also record this process's VmRSS once applied")
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(fn=cmd_change)

    p = sub.add_parser("load", parents=[common])
    p.add_argument("--url", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--rate", type=float, default=300)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", type=float, default=60, help="hard cap on the window, seconds")
    p.add_argument("--max-requests", type=int, default=100000)
    p.add_argument("--request-timeout", type=float, default=10)
    p.add_argument("--until-revision", help="stop TAIL seconds after a response shows this revision applied")
    p.add_argument("--until-revision-file", help="like --until-revision, the id read from this file once it exists")
    p.add_argument("--tail", type=float, default=1.0)
    p.set_defaults(fn=cmd_load)

    p = sub.add_parser("proc", parents=[common])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--window", type=float, default=0)
    p.add_argument("--every", type=float, default=1)
    p.set_defaults(fn=cmd_proc)

    p = sub.add_parser("wrk", parents=[common])
    p.add_argument("--file", required=True)
    p.set_defaults(fn=cmd_wrk)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out")
    p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    sys.exit(a.fn(a))


if __name__ == "__main__":
    main()
