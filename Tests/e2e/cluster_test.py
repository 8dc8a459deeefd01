#!/usr/bin/env python3
"""Multi-process tests of the real binaries: 4 `bft-node` processes on 127.0.0.1.

Each test makes a fresh cluster with `bft-keygen` on free ports, starts, signals and restarts
the replicas through one `bft-cluster up --control` child (the cluster harness the tools share),
drives them with `bft-client` processes, and compares the replicas' deliver logs with
`bft-cluster check-logs`. All traffic stays on
loopback; every wait is bounded. Usage: cluster_test.py --bin .build/debug [-k NAME]
Ends with the line 'N passed, M failed'.
"""
import argparse
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback


def free_base_port(count=4):
    """A base port with `count` consecutive free ports."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        ok = True
        for p in range(base, base + count):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise RuntimeError("no free ports")


class Replica:
    """What a test asks of one replica's process, answered by bft-cluster: poll() is None while it
    runs (also when stopped by SIGSTOP), else its returncode: the exit code, or -N when signal N
    ended it (as subprocess reports it)."""

    def __init__(self, cluster, i):
        self.cluster = cluster
        self.i = i

    def poll(self):
        r = self.cluster.command(f"status {self.i}")
        if r.get("state") == "running":
            return None
        if r.get("state") == "exited":
            return r["exit"]
        if r.get("state") == "signaled":
            return -r["signal"]
        raise RuntimeError(f"replica {self.i}: unexpected process state {r}")

    @property
    def returncode(self):
        return self.poll()


class Cluster:
    """Keys for a fresh cluster on free ports, and its replicas run by one `bft-cluster up
    --control` child (the shared harness starts, signals, waits for and stops the `bft-node`
    processes, and reads their status and log tails); the tests only send it commands. Clients
    are `bft-client` processes of the test's own."""

    def __init__(self, bin_dir, root, n=4, clients=4, app="kv", extra_protocol=None):
        self.bin = bin_dir
        self.root = root
        self.keys = os.path.join(root, "keys")
        self.n = n
        self.app = app
        base = free_base_port(n)
        subprocess.run([self.exe("bft-keygen"), "--replicas", str(n), "--clients", str(clients), "--out", self.keys,
                        "--base-port", str(base)], check=True, capture_output=True)
        self.config = os.path.join(self.keys, "cluster.json")
        if extra_protocol:
            with open(self.config) as f:
                doc = json.load(f)
            doc.setdefault("protocol", {}).update(extra_protocol)
            with open(self.config, "w") as f:
                json.dump(doc, f, indent=2)
        self.procs = {}
        mbase = free_base_port(n)
        self.metrics_ports = {i: mbase + i for i in range(n)}
        # The replicas inherit bft-cluster's environment: the partition injector's file.
        env = dict(os.environ)
        env["BFT_TEST_PARTITION_FILE"] = os.path.join(self.root, "partition")
        self.control_log = os.path.join(root, "bft-cluster.log")
        with open(self.control_log, "ab") as log:
            self.control = subprocess.Popen([self.exe("bft-cluster"), "up", "--keys", self.keys, "--data", root,
                                             "--app", app, "--control"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, bufsize=0)
        self.answers = b""

    def command(self, line, timeout=30):
        """Sends one control command to bft-cluster and returns its one-line JSON answer as a dict."""
        try:
            self.control.stdin.write((line + "\n").encode())
        except (BrokenPipeError, ValueError):
            raise RuntimeError(f"bft-cluster is gone (sending '{line}'): {self.control_tail()}")
        fd = self.control.stdout.fileno()
        deadline = time.time() + timeout
        while b"\n" not in self.answers:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"bft-cluster did not answer '{line}' within {timeout}s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"bft-cluster exited (sending '{line}'): {self.control_tail()}")
                self.answers += chunk
        answer, self.answers = self.answers.split(b"\n", 1)
        return json.loads(answer)

    def ok(self, line, timeout=30):
        """command(), and an AssertionError with bft-cluster's reason when it did not succeed."""
        r = self.command(line, timeout)
        assert r.get("ok"), f"bft-cluster '{line}': {r.get('error')} ({r})"
        return r

    def control_tail(self):
        try:
            with open(self.control_log, errors="replace") as f:
                return f.read()[-2000:] or "(nothing on its standard error)"
        except OSError:
            return "(no log)"

    def scrape(self, i, path="/metrics"):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_ports[i]}{path}", timeout=5) as r:
            return r.read().decode()

    def exe(self, name):
        return os.path.join(self.bin, name)

    def data(self, i):
        return os.path.join(self.root, f"replica-{i}")

    def deliver_log(self, i):
        return os.path.join(self.data(i), "deliver.log")

    def start(self, i, byzantine=None):
        """Starts (or restarts) replica i; its output goes to DATA/replica-i/node.log."""
        self.ok(f"start {i}" + (f" --byzantine {byzantine}" if byzantine else "") +
                f" --log-level info --metrics 127.0.0.1:{self.metrics_ports[i]}")
        self.procs[i] = Replica(self, i)

    def start_all(self, byzantine=None):
        """byzantine: optional (replica, mode)."""
        for i in range(self.n):
            self.start(i, byzantine[1] if byzantine and byzantine[0] == i else None)
        time.sleep(0.5)
        for i, p in self.procs.items():
            assert p.poll() is None, f"replica {i} exited at start: {self.tail(i)}"

    def kill(self, i, sig=signal.SIGKILL):
        """Sends `sig`; for SIGKILL and SIGTERM, returns once the replica has exited (10 s at most)."""
        self.ok(f"kill {i} {signal.Signals(sig).name}")
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.ok(f"wait-exit {i} 10", timeout=40)

    def stop_all(self):
        """SIGCONT and SIGTERM to every replica, SIGKILL after 10 s; then bft-cluster ends."""
        if self.control.poll() is not None:
            return
        try:
            self.command("stop-all 10", timeout=60)
        finally:
            try:
                self.control.stdin.close()
                self.control.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.control.terminate()  # bft-cluster stops its replicas on SIGTERM too
                try:
                    self.control.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.control.kill()
                    self.control.wait()
            self.control.stdout.close()

    def tail(self, i, lines=20):
        try:
            r = self.command(f"tail {i} {lines}")
        except (RuntimeError, TimeoutError) as e:
            return f"(no log tail: {e})"
        return r.get("tail") or "(no log)"

    def status(self, i):
        return self.command(f"status {i}").get("status")

    def client(self, j, commands, timeout=20):
        """Runs bft-client with commands on stdin; returns (exit code, output lines)."""
        p = subprocess.run([self.exe("bft-client"), "--config", self.config, "--key",
                            os.path.join(self.keys, f"client-{j}.pem"), "--timeout", "15"],
                           input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout.splitlines(), p.stderr

    def client_async(self, j, commands):
        path = os.path.join(self.root, f"commands-{j}-{time.time_ns()}.txt")
        with open(path, "w") as f:
            f.write("\n".join(commands) + "\n")
        return subprocess.Popen([self.exe("bft-client"), "--config", self.config, "--key",
                                 os.path.join(self.keys, f"client-{j}.pem"), "--timeout", "20"],
                                stdin=open(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read_log(self, i):
        entries = []
        try:
            with open(self.deliver_log(i)) as f:
                for line in f:
                    entries.append(json.loads(line))
        except OSError:
            pass
        return entries


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_logs_agree(cluster, replicas, expect_equal_length=True):
    """The replicas' deliver logs agree (`bft-cluster check-logs`: total order with `view` left
    out, no request twice, increasing indices, gaps only after a state transfer); returns them."""
    args = [cluster.exe("bft-cluster"), "check-logs"] + (["--equal-length"] if expect_equal_length else [])
    p = subprocess.run(args + [cluster.data(i) for i in replicas], capture_output=True, text=True, timeout=60)
    verdict = (p.stdout + p.stderr).strip()
    assert p.returncode == 0, f"deliver logs: {verdict}"
    return {i: cluster.read_log(i) for i in replicas}


# ---------------------------------------------------------------------------------------------

def test_concurrent_clients_identical_logs(bin_dir, root):
    """Three concurrent clients x 200 requests: all replied, four identical deliver logs."""
    c = Cluster(bin_dir, root)
    try:
        c.start_all()
        procs = [c.client_async(j, [f"SET k{j}-{k} v{k}" for k in range(200)]) for j in range(3)]
        for j, p in enumerate(procs):
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, f"client {j} failed: {err[-500:]}"
            lines = out.splitlines()
            assert len(lines) == 200 and all(l == "OK" for l in lines), f"client {j}: {lines[:3]}... ({len(lines)})"
        rc, out, err = c.client(3, ["GET k1-199"])
        assert rc == 0 and out == ["v199"], (rc, out, err)
        wait_until(lambda: all(len(c.read_log(i)) == 601 for i in range(4)), 20, "all replicas to deliver 601 requests")
        assert_logs_agree(c, range(4))
    finally:
        c.stop_all()


def test_kill_primary_view_change(bin_dir, root):
    """SIGKILL of the primary under load: view change, further commits, agreeing logs."""
    c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 1000})
    try:
        c.start_all()
        rc, out, _ = c.client(0, [f"SET a{k} {k}" for k in range(20)])
        assert rc == 0 and len(out) == 20
        procs = [c.client_async(j, [f"SET b{j}-{k} {k}" for k in range(150)]) for j in range(1, 3)]
        time.sleep(0.5)
        c.kill(0)
        for j, p in enumerate(procs):
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, f"client failed after primary kill: {err[-500:]}"
        wait_until(lambda: all((c.status(i) or {}).get("view", 0) >= 1 and (c.status(i) or {}).get("active") for i in (1, 2, 3)),
                   30, "replicas 1-3 to install a new view")
        rc, out, err = c.client(3, ["SET after kill", "GET after"])
        assert rc == 0 and out == ["OK", "kill"], (rc, out, err)
        wait_until(lambda: len({len(c.read_log(i)) for i in (1, 2, 3)}) == 1, 20, "survivors to converge")
        logs = assert_logs_agree(c, (1, 2, 3))
        assert len(logs[1]) == 20 + 300 + 2
        assert any(e["view"] >= 1 for e in logs[1]), "no request committed in the new view"
    finally:
        c.stop_all()


def test_hostile_frames_do_not_disturb(bin_dir, root):
    """Garbage, truncated, oversized and wrong-cluster frames are refused; the replica keeps serving."""
    c = Cluster(bin_dir, root)
    try:
        c.start_all()
        with open(c.config) as f:
            port = json.load(f)["replicas"][1]["port"]
        header = lambda kind, cluster, length: b"PBFT" + bytes([1, kind]) + b"\x00\x00" + cluster.to_bytes(4, "big") + length.to_bytes(4, "big")
        cluster_id = json.load(open(c.config))["clusterID"]
        attacks = [
            os.urandom(4096),                                   # garbage
            header(4, cluster_id, 120)[:10],                    # truncated header then close
            header(4, cluster_id, 2_000_000_000),               # oversized
            header(4, cluster_id + 1, 10) + b"x" * 10,          # wrong cluster
            header(99, cluster_id, 4) + b"abcd",                # unknown kind
            header(4, cluster_id, 10) + b"0123456789",          # undecodable body, never authenticated
            header(0x40, cluster_id, 32) + os.urandom(32),      # a handshake message 1 and then silence
            header(0x40, cluster_id, 5000) + b"x" * 5000,       # a handshake frame over the 1 KiB limit
            header(0x41, cluster_id, 100) + b"y" * 100,         # a sealed record before any handshake
        ]
        for a in attacks:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(a)
            s.close()
        rc, out, err = c.client(0, [f"SET x{k} {k}" for k in range(30)])
        assert rc == 0 and len(out) == 30, (rc, out, err)
        assert c.procs[1].poll() is None, "replica 1 died: " + c.tail(1)
        wait_until(lambda: all(len(c.read_log(i)) == 30 for i in range(4)), 20, "every replica to deliver")
        assert_logs_agree(c, range(4))
        # Every connection must authenticate before it carries anything but the (small) handshake:
        # none of these frames reached the message decoder, so nothing was decoded or counted there.
        time.sleep(1.2)
        dropped = (c.status(1) or {}).get("dropped") or {}
        assert not any(k.startswith("decode_") for k in dropped), dropped
    finally:
        c.stop_all()


def test_malformed_deliver_log_stops_the_start(bin_dir, root):
    """A deliver log that does not parse stops the replica at start with one line (it used to be
    read as empty, so every recovered delivery would have been appended again)."""
    c = Cluster(bin_dir, root)
    try:
        c.start_all()
        rc, _, err = c.client(0, [f"SET m{k} {k}" for k in range(5)])
        assert rc == 0, err
        wait_until(lambda: len(c.read_log(0)) == 5, 10, "replica 0 to deliver")
        c.kill(0, signal.SIGTERM)
        with open(c.deliver_log(0), "a") as f:
            f.write("this is not a deliver-log line\n")
        c.start(0)
        wait_until(lambda: c.procs[0].poll() is not None, 10, "replica 0 to refuse to start")
        assert c.procs[0].returncode != 0
        assert "cannot start replica 0" in c.tail(0), c.tail(0)
    finally:
        c.stop_all()


# --- durability and recovery (issue 4) ------------------------------------------------------------

def run_clients(c, clients, requests, prefix):
    procs = [c.client_async(j, [f"SET {prefix}{j}-{k} {k}" for k in range(requests)]) for j in clients]
    acked = {}
    for j, p in zip(clients, procs):
        out, err = p.communicate(timeout=240)
        acked[j] = (p.returncode, out.splitlines(), err)
    return acked


def test_kill_primary_restart_catches_up(bin_dir, root):
    """SIGKILL the primary under load; after the view change it restarts from its WAL and catches up."""
    c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 800, "checkpointInterval": 16, "watermarkWindow": 32})
    try:
        c.start_all()
        procs = [c.client_async(j, [f"SET p{j}-{k} {k}" for k in range(150)]) for j in range(2)]
        time.sleep(0.7)
        c.kill(0)
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-300:]
        c.start(0)
        rc, out, err = c.client(2, [f"SET q{k} {k}" for k in range(40)])
        assert rc == 0, err
        wait_until(lambda: len({(c.status(i) or {}).get("delivered") for i in range(4)}) == 1, 60,
                   "the restarted primary to catch up")
        assert_logs_agree(c, range(4), expect_equal_length=False)
        assert "recovered" in c.tail(0, 400), "no recovery line in the restarted replica's log"
    finally:
        c.stop_all()


def test_kill_backup_state_transfer(bin_dir, root):
    """SIGKILL a backup; the others run several checkpoints past it; on restart it uses state transfer."""
    c = Cluster(bin_dir, root, extra_protocol={"checkpointInterval": 4, "watermarkWindow": 8})
    try:
        c.start_all()
        rc, _, err = c.client(0, [f"SET a{k} {k}" for k in range(10)])
        assert rc == 0, err
        c.kill(3)
        rc, _, err = c.client(1, [f"SET b{k} {k}" for k in range(80)])
        assert rc == 0, err
        c.start(3)
        rc, _, err = c.client(0, [f"SET c{k} {k}" for k in range(10)])
        assert rc == 0, err
        wait_until(lambda: (c.status(3) or {}).get("delivered") == 100, 60, "replica 3 to reach 100 deliveries")
        assert "state transferred" in c.tail(3, 400)
        assert_logs_agree(c, range(4), expect_equal_length=False)
    finally:
        c.stop_all()


def test_kill_all_restart_loses_nothing(bin_dir, root):
    """SIGKILL all four replicas under load and restart them: every acknowledged request survives, once, in order."""
    c = Cluster(bin_dir, root, extra_protocol={"checkpointInterval": 16, "watermarkWindow": 32})
    try:
        c.start_all()
        procs = [c.client_async(j, [f"SET k{j}-{k} {k}" for k in range(400)]) for j in range(2)]
        time.sleep(1.5)
        for i in range(4):
            c.kill(i)
        acked = {}
        for j, p in enumerate(procs):
            out, _ = p.communicate(timeout=60)
            acked[j] = len(out.splitlines())
        assert sum(acked.values()) > 0, "no request was acknowledged before the kill"
        for i in range(4):
            c.start(i)
        rc, out, err = c.client(3, ["SET after restart"])
        assert rc == 0, err
        # Converged: every replica delivered up to the same index. A replica killed a little
        # earlier than the others may come back behind their stable checkpoint and catch up by
        # state transfer, which leaves a gap in its deliver log, so lengths may differ.
        def last_index(i):
            log = c.read_log(i)
            return log[-1]["index"] if log else 0
        wait_until(lambda: len({last_index(i) for i in range(4)}) == 1, 60, "all replicas to converge")
        logs = assert_logs_agree(c, range(4), expect_equal_length=False)
        # Client j's acknowledged requests are its first acked[j] (it sends one at a time); a
        # replica without a gap holds them all.
        full = max(range(4), key=lambda i: len(logs[i]))
        delivered = {}
        for e in logs[full]:
            delivered.setdefault(e["client"], []).append(e["timestamp"])
        for j, n in acked.items():
            got = delivered.get(str(j), [])
            assert len(got) >= n, f"client {j}: {n} acknowledged, only {len(got)} delivered after restart"
            assert got == sorted(got)
    finally:
        c.stop_all()


def test_sigstop_longer_than_view_change(bin_dir, root):
    """SIGSTOP the primary past the view-change timeout, then SIGCONT: the cluster moves on and it rejoins."""
    c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 600})
    try:
        c.start_all()
        c.kill(0, signal.SIGSTOP)
        rc, _, err = c.client(0, [f"SET s{k} {k}" for k in range(20)])
        assert rc == 0, err
        time.sleep(1.0)
        c.kill(0, signal.SIGCONT)
        rc, _, err = c.client(1, [f"SET t{k} {k}" for k in range(20)])
        assert rc == 0, err
        wait_until(lambda: len({(c.status(i) or {}).get("delivered") for i in range(4)}) == 1, 60, "the stopped replica to catch up")
        assert_logs_agree(c, range(4), expect_equal_length=False)
        assert all((c.status(i) or {}).get("view", 0) >= 1 for i in range(1, 4))
    finally:
        c.stop_all()


def test_corrupt_wal_recovers_from_peers(bin_dir, root):
    """Bytes flipped in the middle and at the tail of a WAL segment: the node says so and recovers from peers."""
    c = Cluster(bin_dir, root, extra_protocol={"checkpointInterval": 64, "watermarkWindow": 128})
    try:
        c.start_all()
        rc, _, err = c.client(0, [f"SET w{k} {k}" for k in range(30)])
        assert rc == 0, err
        wait_until(lambda: len(c.read_log(2)) == 30, 20, "replica 2 to deliver")
        c.kill(2)
        wal = os.path.join(c.data(2), "wal")
        segs = sorted(f for f in os.listdir(wal) if f.endswith(".log"))
        path = os.path.join(wal, segs[-1])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))
            f.seek(size - 3)
            f.write(b"\xde\xad\xbe")
        c.start(2)
        rc, _, err = c.client(1, [f"SET x{k} {k}" for k in range(10)])
        assert rc == 0, err
        wait_until(lambda: (c.status(2) or {}).get("delivered") == 40 and len(c.read_log(2)) == 40, 60,
                   "replica 2 to recover the lost part from its peers")
        assert_logs_agree(c, range(4))
        log = c.tail(2, 400)
        assert "corrupt" in log, "the node did not say the WAL was corrupt"
        assert c.procs[2].poll() is None
    finally:
        c.stop_all()


def test_partition_one_replica_and_heal(bin_dir, root):
    """Replica 3 is cut off from the other replicas (test-only injector), then the partition heals."""
    c = Cluster(bin_dir, root, extra_protocol={"checkpointInterval": 8, "watermarkWindow": 16})
    try:
        c.start_all()
        with open(os.path.join(root, "partition"), "w") as f:
            f.write("3")
        time.sleep(0.2)
        rc, _, err = c.client(0, [f"SET n{k} {k}" for k in range(40)])
        assert rc == 0, err
        time.sleep(1.5)  # status files are written once a second
        assert (c.status(3) or {}).get("delivered", 0) == 0, "replica 3 was not cut off"
        assert (c.status(0) or {}).get("delivered", 0) == 40
        with open(os.path.join(root, "partition"), "w") as f:
            f.write("")
        rc, _, err = c.client(1, [f"SET m{k} {k}" for k in range(5)])
        assert rc == 0, err
        wait_until(lambda: (c.status(3) or {}).get("delivered") == 45, 60, "replica 3 to catch up after the heal")
        assert_logs_agree(c, range(4), expect_equal_length=False)
    finally:
        c.stop_all()


DURABILITY = [test_partition_one_replica_and_heal, test_kill_primary_restart_catches_up, test_kill_backup_state_transfer, test_kill_all_restart_loses_nothing,
              test_sigstop_longer_than_view_change, test_corrupt_wal_recovers_from_peers]


# --- observability (issue 8) --------------------------------------------------------------------

import re

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$')


def parse_prometheus(text):
    """Strict enough parse of the text exposition format: returns {name or name{labels}: value}."""
    samples, typed = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            typed[name] = kind
            continue
        assert not line.startswith("#"), f"unexpected comment: {line}"
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    for name, kind in typed.items():
        if kind == "counter":
            assert name.endswith("_total"), f"counter {name} lacks _total"
    return samples


def test_metrics_scraped_and_consistent(bin_dir, root):
    """/metrics parses on every replica, executed counters match the deliver logs, view metrics move on a primary kill."""
    c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 800})
    try:
        c.start_all()
        rc, _, err = c.client(0, [f"SET m{k} {k}" for k in range(25)])
        assert rc == 0, err
        wait_until(lambda: all(len(c.read_log(i)) == 25 for i in range(4)), 20, "deliveries")
        for i in range(4):
            m = parse_prometheus(c.scrape(i))
            assert m["bft_requests_executed_total"] == len(c.read_log(i)), (i, m["bft_requests_executed_total"])
            assert m["bft_view"] == 0
            st = json.loads(c.scrape(i, "/status"))
            assert st["replica"] == i
        # Malformed HTTP and unknown paths do not affect the replica.
        s = socket.create_connection(("127.0.0.1", c.metrics_ports[1]), timeout=5)
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        s.close()
        import urllib.error, urllib.request
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_ports[1]}/nope", timeout=5)
            raise AssertionError("unknown path answered 200")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        slow = socket.create_connection(("127.0.0.1", c.metrics_ports[1]), timeout=5)
        slow.sendall(b"GET /met")  # and never finishes
        c.kill(0)
        rc, _, err = c.client(1, [f"SET n{k} {k}" for k in range(5)])
        assert rc == 0, err
        def moved():
            m = parse_prometheus(c.scrape(1))
            return m["bft_view"] >= 1 and m["bft_view_changes_started_total"] >= 1 and m["bft_view_changes_completed_total"] >= 1
        wait_until(moved, 20, "the view metrics to move on replica 1")
        slow.close()
        m = parse_prometheus(c.scrape(1))
        assert m["bft_requests_executed_total"] == len(c.read_log(1)) == 30
    finally:
        c.stop_all()


def byzantine_primary_test(mode, requests, expect_view_change):
    def test(bin_dir, root):
        """One Byzantine primary in `mode`; two honest clients; the correct replicas agree and serve everyone."""
        c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 800})
        try:
            c.start_all(byzantine=(0, mode))
            procs = [c.client_async(j, [f"SET {mode}{j}-{k} {k}" for k in range(requests)]) for j in range(2)]
            for j, p in enumerate(procs):
                out, err = p.communicate(timeout=240)
                assert p.returncode == 0, f"honest client {j} failed with a {mode} primary: {err[-300:]}"
                assert len(out.splitlines()) == requests
            wait_until(lambda: all(len(c.read_log(i)) >= 2 * requests for i in (1, 2, 3)), 30,
                       "correct replicas to deliver every honest request")
            logs = assert_logs_agree(c, (1, 2, 3), expect_equal_length=False)
            keys = {(e["client"], e["timestamp"]) for e in logs[1]}
            assert len(keys) == 2 * requests
            if expect_view_change:
                wait_until(lambda: all((c.status(i) or {}).get("view", 0) >= 1 for i in (1, 2, 3)), 10,
                           f"a view change away from the {mode} primary")
            assert c.procs[0].poll() is None, "the Byzantine replica crashed itself"
        finally:
            c.stop_all()
    test.__name__ = f"test_byzantine_primary_{mode.replace('-', '_')}"
    return test


BYZANTINE = [
    byzantine_primary_test("silent", 20, True),
    byzantine_primary_test("equivocate", 20, True),
    byzantine_primary_test("selective", 20, False),
    byzantine_primary_test("slow", 20, True),  # the pre-prepare deadline replaces it
    byzantine_primary_test("bad-signatures", 20, True),
    byzantine_primary_test("replay", 20, False),
    byzantine_primary_test("bogus-view-change", 20, False),
    byzantine_primary_test("out-of-window", 20, False),
]

def test_exec_app_child_dies_stops_replicas(bin_dir, root):
    """An exec: application whose child exits after 3 requests: every replica stops with exit code 4
    and the reason on one log line, instead of answering an error marker; no checkpoint with a
    failure marker becomes stable."""
    script = os.path.join(root, "dies.sh")
    with open(script, "w") as f:
        f.write('n=0\nwhile read line; do case "$line" in\n'
                '*\\"snapshot\\"*) echo \'{"state":"AAAA"}\' ;;\n'
                '*\\"restore\\"*) echo \'{"ok":true}\' ;;\n'
                '*) n=$((n+1)); [ $n -gt 3 ] && exit 7; echo ok ;;\n'
                'esac; done\n')
    c = Cluster(bin_dir, root, app=f"exec:sh {script}", extra_protocol={"checkpointInterval": 2})
    client = None
    try:
        c.start_all()
        client = c.client_async(0, [f"op{k}" for k in range(6)])
        wait_until(lambda: all(p.poll() is not None for p in c.procs.values()), 25, "every replica to stop")
        for i, p in c.procs.items():
            assert p.returncode == 4, f"replica {i} exited with {p.returncode}: {c.tail(i)}"
            log = open(os.path.join(c.data(i), "node.log"), errors="replace").read()
            lines = [l for l in log.splitlines() if "application failed; stopping this replica" in l]
            assert len(lines) == 1 and "exited with status 7" in lines[0], f"replica {i}: {lines or c.tail(i)}"
            assert "ERR application process failed" not in log
            st = c.status(i) or {}
            # Requests 1-2 make checkpoint 2 (healthy state); the failing 4th request must not
            # let checkpoint 4 (snapshot of a failed child) become stable.
            assert st.get("stableCheckpoint", 0) <= 2, f"replica {i}: {st}"
            entries = c.read_log(i)
            assert len(entries) <= 3, f"replica {i} delivered past the failure: {len(entries)}"
    finally:
        if client and client.poll() is None:
            client.kill()
        c.stop_all()


TESTS = [test_concurrent_clients_identical_logs, test_kill_primary_view_change, test_hostile_frames_do_not_disturb,
         test_malformed_deliver_log_stops_the_start,
         test_metrics_scraped_and_consistent, test_exec_app_child_dies_stops_replicas] + DURABILITY + BYZANTINE


def main(tests=None, prefix="bft-e2e-"):
    """Runs `tests` (default: this file's TESTS) and ends with 'N passed, M failed'; other suites
    (budget_test.py) call it with their own list."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory with bft-node, bft-client, bft-keygen, bft-cluster")
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    passed = failed = 0
    for t in (TESTS if tests is None else tests):
        if args.k and args.k not in t.__name__:
            continue
        root = tempfile.mkdtemp(prefix=prefix)
        started = time.time()
        try:
            t(os.path.abspath(args.bin), root)
            passed += 1
            print(f"PASS {t.__name__} ({time.time() - started:.1f}s)", flush=True)
            shutil.rmtree(root, ignore_errors=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__} ({time.time() - started:.1f}s); files kept in {root}", flush=True)
            traceback.print_exc()
            control_log = os.path.join(root, "bft-cluster.log")
            if os.path.exists(control_log) and os.path.getsize(control_log) > 0:
                with open(control_log, errors="replace") as f:
                    print("--- bft-cluster standard error ---\n" + f.read()[-2000:])
            for i in range(4):
                log = os.path.join(root, f"replica-{i}", "node.log")
                if os.path.exists(log):
                    with open(log, errors="replace") as f:
                        print(f"--- replica {i} log tail ---\n" + "".join(f.readlines()[-15:]))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
