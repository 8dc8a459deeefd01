#!/usr/bin/env python3
"""Multi-process tests of the size budget: 4 real `bft-node` processes driven to their limits.

Each test reproduces a way ordinary load used to make replicas lose their state or stop for
good, and checks that now nothing is lost: a checkpoint far larger than one log record survives
a restart of every replica, a state of more than 128 MiB reaches a restarted replica by chunked
state transfer, and a view change completes while batches of 60 KiB requests are in flight.
Usage: budget_test.py --bin .build/debug [-k NAME]. Ends with the line 'N passed, M failed'.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test  # noqa: E402
from cluster_test import Cluster, assert_logs_agree, wait_until  # noqa: E402


def log_text(c, i):
    try:
        with open(os.path.join(c.data(i), "node.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_clients(c, commands_per_client, timeout):
    """Runs one bft-client process per entry concurrently; returns their output lines."""
    procs = [c.client_async(j, cmds) for j, cmds in commands_per_client.items()]
    outputs = {}
    for (j, _), p in zip(commands_per_client.items(), procs):
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"client {j} failed: {err[-400:]}"
        outputs[j] = out.splitlines()
    return outputs


def test_reply_cache_checkpoint_survives_restart_of_every_replica(bin_dir, root):
    """18 clients x 64 GETs of a 60 KiB value: the reply caches make a checkpoint of ~70 MB
    (more than the old 64 MiB log-record limit). No replica stops at that checkpoint, and after
    all four are killed and restarted the data and the client table are still there."""
    c = Cluster(bin_dir, root, clients=18, extra_protocol={"checkpointInterval": 16, "watermarkWindow": 32})
    try:
        c.start_all()
        big = "x" * (60 * 1024)
        rc, out, err = c.client(0, [f"SET big {big}"])
        assert rc == 0 and out == ["OK"], (rc, err)
        outputs = run_clients(c, {j: ["GET big"] * 64 for j in range(18)}, timeout=600)
        for j, lines in outputs.items():
            assert len(lines) == 64 and all(len(l) == len(big) for l in lines), f"client {j}: {len(lines)} replies"
        # One more round of small requests carries every replica past the next checkpoint.
        rc, _, err = c.client(0, [f"SET after{k} {k}" for k in range(40)], timeout=120)
        assert rc == 0, err
        for i in range(4):
            assert c.procs[i].poll() is None, f"replica {i} stopped: {c.tail(i)}"
        wait_until(lambda: all((c.status(i) or {}).get("stableCheckpoint", 0) >= 64 for i in range(4)), 60,
                   "a stable checkpoint after the reply caches filled")
        before = {i: c.status(i) for i in range(4)}
        sizes = [os.path.getsize(os.path.join(c.data(0), "wal", f)) for f in os.listdir(os.path.join(c.data(0), "wal"))
                 if f.startswith("checkpoint-") and f.endswith(".state")]
        assert sizes and max(sizes) > 64 * 1024 * 1024, f"checkpoint files {sizes}: not larger than the old record limit"
        for i in range(4):
            c.kill(i)
        c.start_all()
        for i in range(4):
            wait_until(lambda i=i: (c.status(i) or {}).get("lastExecuted", 0) >= before[i]["stableCheckpoint"], 60,
                       f"replica {i} to recover at least its stable checkpoint")
            assert "corrupt" not in log_text(c, i), c.tail(i)
        rc, out, err = c.client(1, ["GET big", "GET after39"], timeout=60)
        assert rc == 0 and out == [big, "39"], (rc, [len(l) for l in out], err)
        wait_until(lambda: all(len(c.read_log(i)) == len(c.read_log(0)) for i in range(4)), 30, "equal deliver logs")
        assert_logs_agree(c, range(4))
    finally:
        c.stop_all()


def test_state_larger_than_128_mib_reaches_a_restarted_replica_in_chunks(bin_dir, root):
    """A kv state of 140 MiB (1 MiB values) built while replica 3 is down, its log long compacted
    past what replica 3 has: replica 3 catches up by chunked state transfer, checked chunk by
    chunk, and then agrees with the others on the next checkpoint."""
    mib = 1024 * 1024
    proto = {"checkpointInterval": 16, "watermarkWindow": 32, "maxOperationBytes": mib + 64,
             "maxResultBytes": mib + 64, "maxBatchBytes": 4 * mib, "maxApplicationStateBytes": 512 * mib}
    c = Cluster(bin_dir, root, extra_protocol=proto)
    try:
        for i in range(3):
            c.start(i)
        time.sleep(0.5)
        value = "v" * mib
        outputs = run_clients(c, {j: [f"SET c{j}-{k} {value}" for k in range(35)] for j in range(4)}, timeout=900)
        assert all(lines == ["OK"] * 35 for lines in outputs.values())
        rc, _, err = c.client(0, [f"SET pad{k} {k}" for k in range(40)], timeout=120)
        assert rc == 0, err
        stable = min((c.status(i) or {}).get("stableCheckpoint", 0) for i in range(3))
        assert stable > 32, f"stable checkpoint {stable}: the log was not compacted far enough"
        c.start(3)
        wait_until(lambda: (c.status(3) or {}).get("lastExecuted", 0) >= stable, 300,
                   "replica 3 to catch up past the stable checkpoint")
        assert "state transferred" in log_text(c, 3), c.tail(3)
        # New load: the next checkpoint must be stable at replica 3 with its own, equal digest.
        rc, _, err = c.client(1, [f"SET more{k} {k}" for k in range(40)], timeout=120)
        assert rc == 0, err
        target = max((c.status(i) or {}).get("stableCheckpoint", 0) for i in range(3))
        wait_until(lambda: (c.status(3) or {}).get("stableCheckpoint", 0) >= target, 60,
                   "replica 3 to reach the newest stable checkpoint")
        assert "own checkpoint digest differs" not in log_text(c, 3), c.tail(3)
        sizes = [os.path.getsize(os.path.join(c.data(3), "wal", f)) for f in os.listdir(os.path.join(c.data(3), "wal"))
                 if f.startswith("checkpoint-") and f.endswith(".state")]
        assert sizes and max(sizes) > 128 * mib, f"replica 3's checkpoint files {sizes}: state not above 128 MiB"
        for i in range(4):
            assert c.procs[i].poll() is None, f"replica {i} stopped: {c.tail(i)}"
    finally:
        c.stop_all()


def test_view_change_completes_with_large_requests_in_flight(bin_dir, root):
    """Four clients keep 60 KiB requests in flight; the primary is SIGKILLed mid-load. The
    NEW-VIEW names the re-proposed batches by digest, so it fits a frame: the survivors install
    it and every request completes."""
    # A wide window and rare checkpoints keep many batches above the stable checkpoint, so the
    # view changes would carry tens of MB if they carried batches.
    c = Cluster(bin_dir, root, extra_protocol={"viewChangeTimeoutMs": 1000, "checkpointInterval": 256, "watermarkWindow": 512})
    try:
        c.start_all()
        value = "y" * (60 * 1024)
        procs = [c.client_async(j, [f"SET c{j}-{k} {value}" for k in range(60)]) for j in range(4)]
        wait_until(lambda: len(c.read_log(1)) >= 160, 120, "load to be under way")
        c.kill(0)
        for j, p in enumerate(procs):
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, f"client {j} failed after the primary was killed: {err[-400:]}"
            assert out.splitlines() == ["OK"] * 60
        wait_until(lambda: all((c.status(i) or {}).get("view", 0) >= 1 and (c.status(i) or {}).get("active") for i in (1, 2, 3)),
                   30, "the survivors to be active in a later view")
        wait_until(lambda: all(len(c.read_log(i)) == 240 for i in (1, 2, 3)), 30, "all 240 requests delivered")
        assert_logs_agree(c, (1, 2, 3))
        for i in (1, 2, 3):
            assert "over-limit" not in log_text(c, i), c.tail(i)
    finally:
        c.stop_all()


TESTS = [test_reply_cache_checkpoint_survives_restart_of_every_replica,
         test_state_larger_than_128_mib_reaches_a_restarted_replica_in_chunks,
         test_view_change_completes_with_large_requests_in_flight]


if __name__ == "__main__":
    cluster_test.main(TESTS, prefix="bft-budget-")
