#!/usr/bin/env python3
"""Turns bench/run.sh's measurements into the markdown report (standard library only).

Inputs (written by run.sh):
  --results  TSV lines: KEY RUN WALL_SECONDS PEAK_RSS_KIB CPU_SECONDS EXIT_CODE
  --meta     key=value lines describing the machine, the binary and the corpus
  --anomalies  markdown list of unexpected exit codes (may be empty)
Every figure is the median over the runs; failed runs (unexpected exit code) still count,
and the anomalies section says so, because dropping them would hide the failure.
"""
import argparse
import statistics
import sys

VALIDATE_RSS_LIMIT_MB = 300  # `accord validate` at any size (it streams)
# Every other command: 300 MB up to 100k objects; past that, under 1 GB (a million objects).
RSS_LIMIT_MB, LARGE_RSS_LIMIT_MB, LARGE_OBJECTS = 300, 1000, 100_000
APPLY_FACTOR = 2.0   # first apply <= 2 x (validate + bulk-load baseline), median
PLAN_FACTOR = 1.2    # no-op plan <= 1.2 x validate, in every run
VERIFY_LIMIT_S = 1.0  # accord audit verify of the first apply's history, per 100k objects

STEPS = [  # (key suffix, label)
    ("apply", "first `accord apply` (empty database)"),
    ("plan", "no-op `accord plan` (right after it; must exit 0)"),
    ("apply50", "`accord apply` after `--mutate 50`"),
    ("verify", "`accord audit verify` of the first apply's history (one audit row per object)"),
]
BACKENDS = [  # (key prefix, title, baseline label)
    ("sqlite", "SQLite", "baseline: `sqlite3` `.mode csv` + 3 × `.import` (whole invocation)"),
    ("pg", "PostgreSQL", "baseline: `psql` with 3 × `\\copy` (one invocation)"),
]


def load(path):
    samples = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            key, run, wall, rss, cpu, rc = line.rstrip("\n").split("\t")
            samples.setdefault(key, []).append(
                {"run": int(run), "wall": float(wall), "mb": int(rss) / 1024, "cpu": float(cpu), "rc": int(rc)})
    return samples


def med(samples, key, field):
    values = [s[field] for s in samples.get(key, [])]
    return statistics.median(values) if values else None


def spread(samples, key, field):
    values = [s[field] for s in samples.get(key, [])]
    return f"{min(values):.2f}–{max(values):.2f}" if values else "–"


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def row(samples, key, label):
    return (f"| {label} | {fmt(med(samples, key, 'wall'))} | {spread(samples, key, 'wall')} | "
            f"{fmt(med(samples, key, 'cpu'))} | {fmt(med(samples, key, 'mb'), 1)} |")


def report(samples, meta, anomalies):
    m = meta.get
    out = []
    w = out.append
    w("## Environment\n")
    w(f"- date: {m('date')}")
    w(f"- machine: {m('nproc')} CPUs ({m('cpu')}), {m('mem_gb')} GB RAM, {m('kernel')}; "
      f"load average (1/5/15 min) {m('load_start')} at start, {m('load_end')} at end")
    w(f"- accord: commit `{m('commit')}` ({m('commit_subject')}), work tree {m('worktree')}; "
      f"binary `{m('binary')}` built {m('binary_mtime')}")
    w(f"- SQLite {m('sqlite_version')}; PostgreSQL server {m('pg_version')} "
      f"(fsync={m('pg_fsync')}, synchronous_commit={m('pg_synchronous_commit')}), {m('pg_server')}")
    w(f"- corpus: {int(m('objects')):,} objects — {m('gen_summary')}; "
      f"{int(m('corpus_files')):,} YAML files, {int(m('corpus_bytes')):,} bytes "
      f"({int(m('corpus_bytes')) / 1e6:.1f} MB); CSV for the baselines: {int(m('csv_rows')):,} rows, "
      f"{int(m('csv_bytes')):,} bytes")
    w(f"- {m('runs')} runs; every figure is the median (range = min–max over the runs). "
      "Wall and CPU (user+sys of the measured process only, not of the PostgreSQL server) in seconds, "
      "peak RSS in MB (MiB), all from `/usr/bin/time -f '%e %M %U %S'`.")
    w("")

    header = "| step | wall s | range | CPU s | peak RSS MB |\n|---|---:|---:|---:|---:|"
    w("## accord validate\n")
    w(header)
    w(row(samples, "validate", "`accord validate CORPUS`"))
    w("")
    for prefix, title, base_label in BACKENDS:
        w(f"## {title}\n")
        w(header)
        for suffix, label in STEPS:
            w(row(samples, f"{prefix}.{suffix}", label))
        w(row(samples, f"{prefix}.baseline", base_label))
        w("")

    # --- targets ---
    results = []
    validate = med(samples, "validate", "wall")
    w("## Targets\n")
    w("| target | measured | limit | ratio | result |\n|---|---:|---:|---:|---|")

    def target(name, measured, limit, ratio_text, keys=()):
        # A step that exited with an unexpected code fails its target whatever its time
        # (e.g. a "no-op" plan that found changes, or an apply that errored).
        failed = [k for k in keys for s in samples.get(k, []) if s["rc"] != 0]
        ok = measured is not None and limit is not None and measured <= limit and not failed
        results.append(ok)
        verdict = "PASS" if ok else "**FAIL**" + (" (unexpected exit code, see Anomalies)" if failed else "")
        w(f"| {name} | {fmt(measured)} | {fmt(limit)} | {ratio_text} | {verdict} |")

    for prefix, title, _ in BACKENDS:
        apply = med(samples, f"{prefix}.apply", "wall")
        base = med(samples, f"{prefix}.baseline", "wall")
        limit = APPLY_FACTOR * (validate + base) if validate is not None and base is not None else None
        ratio = (f"{apply / (validate + base):.2f} × (validate + baseline)"
                 if None not in (apply, validate, base) and validate + base > 0 else "–")
        target(f"{title}: first apply ≤ {APPLY_FACTOR:g} × (validate + baseline) s", apply, limit, ratio,
               ["validate", f"{prefix}.apply", f"{prefix}.baseline"])
    for prefix, title, _ in BACKENDS:
        # In every run: the worst run's plan against that run's validate.
        pairs = [(p["wall"], v["wall"]) for p, v in zip(samples.get(f"{prefix}.plan", []),
                                                         samples.get("validate", []))]
        plan, base = max(pairs, key=lambda pv: pv[0] / pv[1] if pv[1] > 0 else float("inf"),
                         default=(None, None))
        limit = PLAN_FACTOR * base if base is not None else None
        ratio = (f"{plan / base:.2f} × that run's validate (worst of {len(pairs)})"
                 if None not in (plan, base) and base > 0 else "–")
        target(f"{title}: no-op plan ≤ {PLAN_FACTOR:g} × validate s, every run", plan, limit, ratio,
               ["validate", f"{prefix}.plan"])
    objects = int(m("objects"))
    verify_limit = VERIFY_LIMIT_S * max(1, objects / 100_000)
    for prefix, title, _ in BACKENDS:
        verify = med(samples, f"{prefix}.verify", "wall")
        target(f"{title}: audit verify of the first apply's history < {verify_limit:g} s", verify,
               verify_limit, "–", [f"{prefix}.verify"])
    # The RSS targets are about every run, so take the worst run, not the median.
    worst = max(s["mb"] for s in samples.get("validate", [{"mb": 0}]))
    target(f"`validate` peak RSS < {VALIDATE_RSS_LIMIT_MB} MB, every run", worst, VALIDATE_RSS_LIMIT_MB,
           f"{worst / VALIDATE_RSS_LIMIT_MB:.2f} × limit")
    limit_mb = RSS_LIMIT_MB if objects <= LARGE_OBJECTS else LARGE_RSS_LIMIT_MB
    accord_keys = [f"{p}.{s}" for p, _, _ in BACKENDS for s, _ in STEPS]
    worst = max((s["mb"], k) for k in accord_keys for s in samples.get(k, []))
    target(f"peak RSS < {limit_mb} MB, every other accord command and run (worst: `{worst[1]}`)",
           worst[0], limit_mb, f"{worst[0] / limit_mb:.2f} × limit")
    w("")
    w(f"Overall: {sum(results)}/{len(results)} targets pass.")
    w("")

    w("## Anomalies\n")
    failed = [(k, s) for k, ss in samples.items() for s in ss if s["rc"] != 0]
    if anomalies.strip():
        w("Commands that exited with an unexpected code (their times still count in the medians):\n")
        w(anomalies.rstrip())
    elif failed:
        w("\n".join(f"- run {s['run']} `{k}` exited {s['rc']}" for k, s in failed))
    else:
        w("None: every command exited as expected (apply 0, no-op plan 0, baselines 0).")
    w("")

    w("## Raw samples\n")
    w("| step | " + " | ".join(f"run {r}" for r in sorted({s['run'] for ss in samples.values() for s in ss}))
      + " |")
    w("|---|" + "---:|" * len({s['run'] for ss in samples.values() for s in ss}))
    for key in ["validate"] + [f"{p}.{s}" for p, _, _ in BACKENDS for s in ("apply", "plan", "verify", "apply50", "baseline")]:
        cells = [f"{s['wall']:.2f} s / {s['mb']:.0f} MB" + ("" if s["rc"] == 0 else f" (exit {s['rc']})")
                 for s in sorted(samples.get(key, []), key=lambda s: s["run"])]
        w(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--anomalies", required=True)
    ap.add_argument("--out")
    a = ap.parse_args()
    meta = {}
    with open(a.meta) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    with open(a.anomalies) as f:
        anomalies = f.read()
    text = report(load(a.results), meta, anomalies)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
