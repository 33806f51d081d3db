#!/usr/bin/env python3
"""Mixed-workload load test (issue #10), standard library only.

Starts a release `countersign demo` server (SQLite, or PostgreSQL with --database-url),
measures the maximum rate of a mixed workload for --probe seconds with closed-loop
clients, then drives it at --fraction (default 80 %) of that rate for --duration seconds:
reads of pages and API, change creation, sign-offs, executions (each of distinct targets),
comments. Prints p50/p99 per request type, errors, RSS over time, and checks the audit chain
at the end.

  scripts/load.py [--duration 600] [--database-url postgres://…] [--skip-build]
"""
import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Client:
    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = None
        self.cookies = {}

    def request(self, method, path, body=None, form=None, headers=None):
        h = dict(headers or {})
        data = None
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                payload = r.read()
                for k, v in r.getheaders():
                    if k.lower() == "set-cookie":
                        name, _, rest = v.partition("=")
                        value = rest.split(";", 1)[0]
                        if value:
                            self.cookies[name] = value
                        else:
                            self.cookies.pop(name, None)
                return r.status, payload
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}
        self.errors = {}

    def add(self, kind, secs, ok, detail=""):
        with self.lock:
            self.lat.setdefault(kind, []).append(secs)
            if not ok:
                self.errors.setdefault(kind, []).append(detail[:300])

    def total(self):
        with self.lock:
            return sum(len(v) for v in self.lat.values())


class Workload:
    def __init__(self, port, tokens, installs):
        self.port = port
        self.tokens = tokens
        self.installs = installs
        self.lock = threading.Lock()
        self.changes = []  # ids readable by everyone
        self.stats = Stats()

    def take_targets(self, n):
        with self.lock:
            if len(self.installs) < n:
                return None
            out, self.installs = self.installs[:n], self.installs[n:]
            return out

    def timed(self, kind, fn, expect):
        t0 = time.perf_counter()
        try:
            status, body = fn()
        except Exception as e:  # noqa: BLE001 — a transport error is an error
            self.stats.add(kind, time.perf_counter() - t0, False, repr(e))
            return None, None
        ok = status in expect
        self.stats.add(kind, time.perf_counter() - t0, ok, f"{status} {body[:300]!r}")
        return status, body

    def flow(self, c):
        """One change from creation to execution: create, submit, two sign-offs, execute."""
        targets = self.take_targets(1)
        if targets is None:
            return
        ana, carla = c["ana"], c["carla"]
        s, b = self.timed("create", lambda: ana.request("POST", "/api/v1/changes", body={
            "title": "load: uninstall an app", "rationale": "load test",
            "requesting_team": "app-owners", "operation": "uninstall_app",
            "targets": {"ids": targets}}), {201})
        if s != 201:
            return
        ch = json.loads(b)
        cid, fp = ch["id"], ch["fingerprint"]
        with self.lock:
            self.changes.append(cid)
        s, _ = self.timed("submit", lambda: ana.request("POST", f"/api/v1/changes/{cid}/submit", body={}), {200})
        if s != 200:
            return
        s, _ = self.timed("signoff", lambda: c["ben"].request("POST", f"/api/v1/changes/{cid}/signoffs", body={"side": "requester", "fingerprint": fp}), {200, 201})
        s, _ = self.timed("signoff", lambda: carla.request("POST", f"/api/v1/changes/{cid}/signoffs", body={"side": "implementer", "fingerprint": fp}), {200, 201})
        if s not in (200, 201):
            return
        self.timed("execute", lambda: carla.request("POST", f"/api/v1/changes/{cid}/execute", body={"fingerprint": fp}), {202})

    def one(self, c, rnd):
        x = rnd.random()
        with self.lock:
            some = rnd.choice(self.changes) if self.changes else None
        if some is None:
            self.flow(c)
        elif x < 0.25:
            self.timed("api read change list", lambda: c["ben"].request("GET", "/api/v1/changes?limit=50"), {200})
        elif x < 0.45:
            self.timed("api read change", lambda: c["dev"].request("GET", f"/api/v1/changes/{some}"), {200})
        elif x < 0.55:
            self.timed("api queue", lambda: c["carla"].request("GET", "/api/v1/queue"), {200})
        elif x < 0.70:
            page = rnd.choice(["/", "/queue", "/changes", f"/changes/{some}"])
            self.timed("page", lambda: c["web"].request("GET", page), {200})
        elif x < 0.85:
            self.timed("comment", lambda: c["ben"].request("POST", f"/api/v1/changes/{some}/comments", body={"body": "load comment"}), {201})
        else:
            self.flow(c)


def sign_in(port, email, password):
    c = Client(port)
    s, page = c.request("GET", "/login")
    csrf = re.search(rb'name="csrf" value="([0-9a-f]+)"', page).group(1).decode()
    s, _ = c.request("POST", "/login", form={"email": email, "password": password, "csrf": csrf, "next": "/"})
    assert s == 303, f"sign-in of {email}: {s}"
    return c


def clients(w):
    c = {k: Client(w.port, t) for k, t in w.tokens.items()}
    # One sign-in, its session shared: parallel sign-ins of one address are throttled.
    with w.lock:
        if not getattr(w, "web_cookies", None):
            w.web_cookies = sign_in(w.port, "dev@platform-ops.example", "countersign-demo").cookies
    c["web"] = Client(w.port)
    c["web"].cookies = dict(w.web_cookies)
    return c


def run(w, seconds, threads, rate=None):
    stop = time.time() + seconds
    per_thread = None if rate is None else rate / threads

    def worker(i):
        rnd = random.Random(i)
        c = clients(w)
        next_at = time.perf_counter()
        while time.time() < stop:
            if per_thread:
                next_at += rnd.expovariate(per_thread)
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            w.one(c, rnd)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    return ts


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


def start_demo(port, database_url=None, skip_build=False):
    """A release `countersign demo` server on 127.0.0.1:port (SQLite in a temporary
    directory, or the PostgreSQL database_url): (process, tokens by person, the IDs of up
    to 200,000 active app installations). The caller terminates the process."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not skip_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(target, "release", "countersign")
    work = tempfile.mkdtemp()
    args = [binary, "demo", "--bind", f"127.0.0.1:{port}", "--db", os.path.join(work, "demo.db")]
    if database_url:
        args += ["--database-url", database_url]
    env = dict(os.environ, COUNTERSIGN_MAILER="false", RUST_LOG="warn",
               COUNTERSIGN_MAIL_DIR=os.path.join(work, "mail"), COUNTERSIGN_POOL_SIZE="8")
    out = open(os.path.join(work, "out"), "w+")
    server = subprocess.Popen(args, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        return server, *_demo_data(port, out)
    except BaseException:
        server.terminate()
        raise


def _demo_data(port, out):
    for _ in range(240):
        try:
            if Client(port).request("GET", "/healthz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    out.seek(0)
    tokens = {}
    for line in out.read().splitlines():
        m = re.match(r"\s+(\w+)@\S+\s+\S+\s+(cs_[0-9a-f]+)$", line)
        if m:
            tokens[m.group(1)] = m.group(2)
    admin = Client(port, tokens["admin"])
    installs = []
    cursor = None
    while len(installs) < 200_000:
        q = "/api/v1/inventory?kind=app_install&state=active&limit=1000" + (f"&after={cursor}" if cursor else "")
        s, b = admin.request("GET", q)
        v = json.loads(b)
        rows = [e["id"] for e in v.get("entities", []) if e.get("state") == "active"]
        installs += rows
        cursor = v.get("next_after")
        if not cursor or not v.get("entities"):
            break
    return tokens, installs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--probe", type=int, default=30)
    ap.add_argument("--fraction", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--port", type=int, default=18282)
    ap.add_argument("--database-url")
    ap.add_argument("--skip-build", action="store_true")
    a = ap.parse_args()
    server, tokens, installs = start_demo(a.port, a.database_url, a.skip_build)
    try:
        admin = Client(a.port, tokens["admin"])
        random.Random(7).shuffle(installs)
        w = Workload(a.port, {k: tokens[k] for k in ("ana", "ben", "carla", "dev")}, installs)
        backend = "PostgreSQL" if a.database_url else "SQLite"
        print(f"{backend}: server pid {server.pid}, {len(installs)} active app installs to draw targets from")

        # 1. Maximum (closed loop).
        before = w.stats.total()
        for t in run(w, a.probe, a.threads):
            t.join()
        peak = (w.stats.total() - before) / a.probe
        errors_probe = sum(len(v) for v in w.stats.errors.values())
        print(f"maximum (closed loop, {a.threads} clients, {a.probe}s): {peak:.0f} requests/s, {errors_probe} errors")
        w.stats = Stats()

        # 2. Paced at a fraction of it.
        rate = peak * a.fraction
        print(f"running {a.duration}s at {rate:.0f} requests/s ({a.fraction:.0%})")
        ts = run(w, a.duration, a.threads, rate)
        t0 = time.time()
        rss = []
        while any(t.is_alive() for t in ts):
            time.sleep(min(10, max(1, a.duration / 30)))
            rss.append((int(time.time() - t0), rss_kb(server.pid)))
        for t in ts:
            t.join()
        print("RSS over time (s: MB): " + ", ".join(f"{s}: {kb / 1024:.0f}" for s, kb in rss))
        print(f"{'request':<24}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for kind, v in sorted(w.stats.lat.items()):
            print(f"{kind:<24}{len(v):>8}{pct(v, 0.5):>10.1f}{pct(v, 0.99):>10.1f}{len(w.stats.errors.get(kind, [])):>8}")
        total_err = sum(len(v) for v in w.stats.errors.values())
        for kind, v in w.stats.errors.items():
            print(f"  first {kind} error: {v[0]}")
        # 3. Executions finished and the audit chain.
        time.sleep(5)
        s, b = admin.request("GET", "/api/v1/audit/verify")
        print(f"audit verify: {s} {b.decode()[:200]}")
        print(f"total: {w.stats.total()} requests, {total_err} errors")
        intact = s == 200 and json.loads(b).get("intact") is True
        return 0 if total_err == 0 and intact else 1
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
