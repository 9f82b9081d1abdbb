#!/usr/bin/env python3
"""Benchmarks the Kubernetes source against tests/kube-emulator (standard library only).

  bench/kube.py [--objects N] [--runs N] [--accord BIN] [--out FILE]

Per run, with N Permit objects spread over 10 namespaces, preloaded into a fresh emulator
together with the CRDs (`accord crds --output json`), and a fresh SQLite database:

  first      `accord run` started → every object has its status (N server-side applies of
             /status counted in the emulator's request log)
  noop       a forced sync (POST /api/v1/sources/kubernetes/sync) once everything is
             written: its duration and the status writes it made (target: none)
  edit       one object's spec patched → its status shows the new generation applied
  floor      the same N status writes (same shape: two conditions) made directly by a Python
             client with the same number in flight (16), each over its own keep-alive connection:
             what the emulator itself can take; the ratio first/floor is accord's overhead
             (startup, list, database apply included) over the API server's own cost

Medians over the runs go to a markdown table. All traffic stays on 127.0.0.1.
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR = os.path.join(ROOT, "tests", "kube-emulator", "emulator.py")
CONCURRENCY = 16


def objects(n):
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team-{i}"}} for i in range(10)]
    for i in range(n):
        items.append({
            "apiVersion": "accord.dev/v1alpha1", "kind": "Permit",
            "metadata": {"name": f"p{i:05d}", "namespace": f"team-{i % 10}"},
            "spec": {"permissionId": f"svc{i % 50}:act{i}", "slugs": [f"caller-{i % 300}"]},
        })
    return {"kind": "List", "items": items}


def status_writes(log):
    try:
        with open(log) as f:
            return sum(1 for line in f if '"PATCH"' in line and '/status"' in line)
    except FileNotFoundError:
        return 0


def start_emulator(work, preload):
    args = [sys.executable, EMULATOR, "--port", "0", "--kubeconfig", f"{work}/kubeconfig",
            "--request-log", f"{work}/requests.jsonl"]
    for p in preload:
        args += ["--load", p]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(port, method, path, body=None, ctype="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": ctype} if data else {})
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, out


def wait(cond, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def empty_rss(accord, crds):
    """accord's RSS once started against no objects: what memory per object is measured from."""
    work = tempfile.mkdtemp(prefix="accord-kube-bench.")
    try:
        with open(f"{work}/objects.json", "w") as f:
            json.dump(objects(0), f)
        emulator, _ = start_emulator(work, [crds, f"{work}/objects.json"])
        listen = 20000 + (os.getpid() + 1) % 20000
        write_config(work, listen)
        proc = subprocess.Popen([accord, "run", "--config", f"{work}/accord.yaml"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def up():
                try:
                    return request(listen, "GET", "/api/v1/status")[0] == 200
                except OSError:
                    return False
            assert wait(up, 60), "accord did not start"
            time.sleep(2)
            return rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            emulator.terminate()
            emulator.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_config(work, listen):
    with open(f"{work}/accord.yaml", "w") as f:
        f.write(f"database: sqlite://{work}/accord.db\nlisten: 127.0.0.1:{listen}\n"
                f"sources:\n  - name: kubernetes\n    kubernetes:\n      kubeconfig: {work}/kubeconfig\n"
                f"    interval: 1h\n")


def one_run(accord, n, crds):
    work = tempfile.mkdtemp(prefix="accord-kube-bench.")
    try:
        with open(f"{work}/objects.json", "w") as f:
            json.dump(objects(n), f)
        emulator, port = start_emulator(work, [crds, f"{work}/objects.json"])
        listen = 20000 + os.getpid() % 20000
        write_config(work, listen)
        log = open(f"{work}/accord.log", "w")
        started = time.time()
        proc = subprocess.Popen([accord, "run", "--config", f"{work}/accord.yaml", "--log", "accord=info"],
                                stdout=subprocess.DEVNULL, stderr=log)
        result = {}
        try:
            reqlog = f"{work}/requests.jsonl"
            assert wait(lambda: status_writes(reqlog) >= n, 900), "statuses not written"
            result["first_s"] = time.time() - started
            time.sleep(2)
            result["rss_mb"] = rss_mb(proc.pid)
            before = status_writes(reqlog)
            t = time.time()
            code, body = request(listen, "POST", "/api/v1/sources/kubernetes/sync")
            result["noop_s"] = time.time() - t
            assert code == 200, body
            time.sleep(1)
            result["noop_writes"] = status_writes(reqlog) - before
            path = "/apis/accord.dev/v1alpha1/namespaces/team-0/permits/p00000"
            t = time.time()
            code, _ = request(port, "PATCH", path, {"spec": {"slugs": ["caller-0", "caller-new"]}},
                              "application/merge-patch+json")
            assert code == 200

            def applied():
                _, raw = request(port, "GET", path)
                st = json.loads(raw).get("status", {})
                return st.get("observedGeneration") == 2 and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
            assert wait(applied, 60), "edit not applied"
            result["edit_s"] = time.time() - t
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        # The floor: the same writes straight from Python, CONCURRENCY in flight.
        names = [(f"team-{i % 10}", f"p{i:05d}") for i in range(n)]
        lock = threading.Lock()

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                with lock:
                    if not names:
                        return
                    ns, name = names.pop()
                # The same shape as the status accord writes: two conditions.
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                condition = {"status": "True", "observedGeneration": 1, "lastTransitionTime": now}
                ready = dict(condition, type="Ready", reason="Applied",
                             message="the database holds what this generation declares")
                synced = dict(condition, type="Synced", reason="Accepted",
                              message="this generation is valid and no other owner holds its key")
                body = {"apiVersion": "accord.dev/v1alpha1", "kind": "Permit",
                        "status": {"conditions": [ready, synced], "observedGeneration": 1,
                                   "lastSyncedAt": now, "app": "unnamed", "id": name}}
                conn.request("PATCH",
                             f"/apis/accord.dev/v1alpha1/namespaces/{ns}/permits/{name}/status"
                             "?fieldManager=floor&force=true",
                             body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/apply-patch+yaml"})
                response = conn.getresponse()
                response.read()
                assert response.status == 200, response.status
        t = time.time()
        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        result["floor_s"] = time.time() - t
        emulator.terminate()
        emulator.wait(timeout=30)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--accord")
    ap.add_argument("--out")
    a = ap.parse_args()
    accord = a.accord
    if not accord:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        accord = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "accord")
    work = tempfile.mkdtemp(prefix="accord-kube-crds.")
    crds = f"{work}/crds.json"
    with open(crds, "w") as f:
        f.write(subprocess.run([accord, "crds", "--output", "json"], check=True, capture_output=True, text=True).stdout)
    empty = empty_rss(accord, crds)
    runs = []
    for i in range(a.runs):
        r = one_run(accord, a.objects, crds)
        print(json.dumps(r), file=sys.stderr)
        runs.append(r)
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    def series(key, fmt):
        return ", ".join(format(r[key], fmt) for r in runs)

    lines = [
        f"Kubernetes source, {a.objects} Permit objects in 10 namespaces, tests/kube-emulator, SQLite, "
        f"median of {a.runs} runs ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}):",
        "",
        "| measure | median | runs |",
        "| --- | --- | --- |",
        f"| start → every object's status written | {med['first_s']:.1f} s | {series('first_s', '.1f')} |",
        f"| baseline: the same {a.objects} status writes from Python, {CONCURRENCY} in flight | {med['floor_s']:.1f} s | {series('floor_s', '.1f')} |",
        f"| ratio first / baseline | {med['first_s'] / med['floor_s']:.2f}× | |",
        f"| forced no-op sync | {med['noop_s']:.2f} s, {med['noop_writes']:.0f} API writes | {series('noop_writes', 'd')} writes |",
        f"| RSS after the first sync, and per object over an empty start ({empty:.0f} MB) | "
        f"{med['rss_mb']:.0f} MB, {(med['rss_mb'] - empty) * 1024 * 1024 / a.objects / 1000:.1f} KB | "
        f"{series('rss_mb', '.0f')} MB |",
        f"| one spec edit → its status shows the new generation applied | {med['edit_s']:.2f} s | {series('edit_s', '.2f')} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
