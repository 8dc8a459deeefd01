#!/usr/bin/env python3
"""Planted-bug score: does the simulator (and do the core's rule tests) catch a weakened protocol?

For each mutation in MUTATIONS (a planted bug: file, exact original text, replacement), this
script applies it to a copy of the package, builds `bft-sim`, runs a seed range and reports
whether the simulator caught it as a SAFETY violation (agreement, total order, integrity, checkpoint
digests, a client completing on a result no correct replica produced), as an INVARIANT violation
(a correct replica's own state broke one of `Replica.invariantViolations()`, e.g. a prepared
certificate with too few prepares; reported per seed, not trapped), as a BOUNDS violation (a
correct replica's slots, batch bodies or pending requests outgrew the bounds the budget allows),
only as a LIVENESS failure, or not at all (SURVIVED); and whether `swift test --filter
BFTCoreTests` fails on it.

The package is copied once to a work directory (without `.build*` and `.git`); each mutation is
applied there, built incrementally (the build directory is reused) and reverted afterwards.
An original text that does not occur exactly once stops the script: the list has to follow the
code.

Not part of CI (it takes minutes per mutation). Usage:

    scripts/mutation_score.py                      # every mutation, 2000 seeds, rule tests too
    scripts/mutation_score.py --seeds 500 --only prepared-2f-1,inwindow-always
    scripts/mutation_score.py --no-tests --out score.md
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPLICA = "Sources/BFTCore/Replica.swift"
AUTH = "Sources/BFTCore/Authentication.swift"

# name, class, description, [(file, original, replacement), ...]
MUTATIONS = [
    ("prepared-2f-1", "quorum", "prepared with 2f-1 matching prepares from backups",
     [(REPLICA, "guard matching.count >= 2 * f else { return }",
       "guard matching.count >= 2 * f - 1 else { return }")]),
    ("committed-quorum-1", "quorum", "committed-local with 2f commits",
     [(REPLICA, "let matching = slot.commits.values.filter { $0.view == pp.view && $0.digest == d }.sorted { $0.replica < $1.replica }\n"
                "        guard matching.count >= config.quorum else { return }",
       "let matching = slot.commits.values.filter { $0.view == pp.view && $0.digest == d }.sorted { $0.replica < $1.replica }\n"
       "        guard matching.count >= config.quorum - 1 else { return }")]),
    ("stable-checkpoint-quorum-1", "quorum", "a checkpoint stable with 2f matching CHECKPOINTs",
     [(REPLICA, "byDigest.first(where: { $0.value.count >= config.quorum })",
       "byDigest.first(where: { $0.value.count >= config.quorum - 1 })")]),
    # The three above change one site of a quorum rule: the replica decides with one vote too few,
    # but every replica still checks the certificates it receives (VIEW-CHANGE, CATCH-UP, checkpoint
    # proofs) with the right quorum, so the short certificate is refused where it would matter.
    # The "-everywhere" variants change the rule itself, as a wrong shared formula would.
    ("prepared-2f-1-everywhere", "quorum", "prepared certificates of 2f-1 prepares, made and accepted",
     [(REPLICA, "guard matching.count >= 2 * f else { return }",
       "guard matching.count >= 2 * f - 1 else { return }"),
      (REPLICA, "guard backups.count >= 2 * f else { return false }",
       "guard backups.count >= 2 * f - 1 else { return false }")]),
    ("committed-quorum-1-everywhere", "quorum", "committed certificates of 2f commits, made and accepted",
     [(REPLICA, "let matching = slot.commits.values.filter { $0.view == pp.view && $0.digest == d }.sorted { $0.replica < $1.replica }\n"
                "        guard matching.count >= config.quorum else { return }",
       "let matching = slot.commits.values.filter { $0.view == pp.view && $0.digest == d }.sorted { $0.replica < $1.replica }\n"
       "        guard matching.count >= config.quorum - 1 else { return }"),
      (REPLICA, "seen.insert(c.replica)\n        }\n        return seen.count >= config.quorum",
       "seen.insert(c.replica)\n        }\n        return seen.count >= config.quorum - 1")]),
    ("stable-checkpoint-quorum-1-everywhere", "quorum", "checkpoint proofs of 2f CHECKPOINTs, made and accepted",
     [(REPLICA, "byDigest.first(where: { $0.value.count >= config.quorum })",
       "byDigest.first(where: { $0.value.count >= config.quorum - 1 })"),
      (REPLICA, "seen.insert(cp.replica)\n        }\n        return seen.count >= config.quorum",
       "seen.insert(cp.replica)\n        }\n        return seen.count >= config.quorum - 1")]),
    ("new-view-quorum-1", "quorum", "a NEW-VIEW accepted with 2f view changes",
     [(REPLICA, "guard senders.count >= config.quorum else {",
       "guard senders.count >= config.quorum - 1 else {")]),
    ("new-view-two-vcs", "quorum", "a NEW-VIEW accepted with at least 2 view changes",
     [(REPLICA, "guard senders.count >= config.quorum else {",
       "guard senders.count >= 2 else {")]),
    ("skip-checkpoint-proof", "validation", "validCheckpointProof accepts anything",
     [(REPLICA, "func validCheckpointProof(seq: SeqNum, digest: Digest, proof: [Checkpoint]) -> Bool {\n",
       "func validCheckpointProof(seq: SeqNum, digest: Digest, proof: [Checkpoint]) -> Bool {\n        if true { return true }\n")]),
    ("skip-vc-prepare-count", "validation", "validViewChange does not count a prepared certificate's prepares",
     [(REPLICA, "guard backups.count >= 2 * f else { return false }", "_ = backups")]),
    ("skip-catchup-certificate", "validation", "CATCH-UP entries taken without checking the committed certificate",
     [(REPLICA, "guard validCommittedCertificate(cert), entry.requests.count",
       "guard entry.requests.count")]),
    ("reproposal-lowest-view", "view-change", "NEW-VIEW re-proposes the prepared certificate of the lowest view",
     [(REPLICA, "if let cur = best[pp.seq], cur.view >= pp.view { continue }",
       "if let cur = best[pp.seq], cur.view <= pp.view { continue }")]),
    ("duplicate-execution", "execution", "execute without the r.timestamp > lastTimestamp guard",
     [(REPLICA, "guard r.timestamp > record.lastTimestamp else { continue }", "")]),
    ("duplicate-execution-any-order", "execution", "execute every request of a batch: no timestamp guard, no next-in-order guard",
     [(REPLICA, "guard r.timestamp > record.lastTimestamp else { continue }", ""),
      (REPLICA, "guard nextExecutable(r, after: record.lastTimestamp) else {",
       "guard true || nextExecutable(r, after: record.lastTimestamp) else {")]),
    ("skip-nested-signatures", "validation", "MessageVerifier skips nested signature checks",
     [(AUTH, "guard nestedValid(message) else", "guard true || nestedValid(message) else")]),
    ("inwindow-always", "watermarks", "inWindow always true (no watermark check)",
     [(REPLICA, "func inWindow(_ seq: SeqNum) -> Bool { seq > stableSeq && seq <= highWatermark }",
       "func inWindow(_ seq: SeqNum) -> Bool { true }")]),
    ("no-watermarks-everywhere", "watermarks", "no watermark check, neither on messages nor on VIEW-CHANGE certificates",
     [(REPLICA, "func inWindow(_ seq: SeqNum) -> Bool { seq > stableSeq && seq <= highWatermark }",
       "func inWindow(_ seq: SeqNum) -> Bool { true }"),
      (REPLICA, "pp.seq > vc.stableSeq, pp.seq <= vc.stableSeq + config.watermarkWindow,",
       "pp.seq > vc.stableSeq,")]),
    ("skip-chunk-digest", "state-transfer", "a state-transfer chunk is not compared with the manifest digest",
     [(REPLICA, "SHA256.hash(st.chunk) == manifest.chunkDigests[index] else {", "true else {")]),
    ("no-equivocation-detection", "validation", "a backup accepts a second, conflicting pre-prepare for the same view and sequence",
     [(REPLICA, "if let existing = log.slots[pp.seq]?.prePrepare {",
       "if let existing = log.slots[pp.seq]?.prePrepare, existing.digest == pp.digest {")]),
]

SAFETY_MARKERS = ("total order violated", "integrity:", "causal order:", "checkpoint digests differ",
                  "completed timestamp", "re-executed index", "does not decode",
                  # correct replicas' results or states disagree (state machine replication broken)
                  "replied differently", "the model does not produce", "sequential model does not produce",
                  "accepted a forged or divergent result", "differs from the stable digest",
                  "does not match its digest")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def copy_package(src, dst):
    def ignore(_dir, names):
        return [n for n in names if n.startswith(".build") or n in (".git", ".swiftpm")]
    shutil.copytree(src, dst, ignore=ignore, symlinks=True)


def apply(work, edits):
    """Applies every edit; returns the original contents to restore. Fails loudly on a mismatch."""
    saved = {}
    for path, original, replacement in edits:
        full = os.path.join(work, path)
        current = open(full).read()
        if path not in saved:
            saved[path] = current
        count = current.count(original)
        if count != 1:
            for p, t in saved.items():
                open(os.path.join(work, p), "w").write(t)
            sys.exit(f"mutation text found {count} times (expected exactly 1) in {path}:\n{original}")
        open(full, "w").write(current.replace(original, replacement))
    return saved


def restore(work, saved):
    for path, text in saved.items():
        open(os.path.join(work, path), "w").write(text)


def run(cmd, cwd, timeout):
    t = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, time.time() - t
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, time.time() - t


def classify(output):
    """Per failed seed: safety / liveness / other, from the failure lines bft-sim prints."""
    seeds = {}
    current = None
    for line in output.splitlines():
        m = re.match(r"seed (\d+): FAILED", line)
        if m:
            current = m.group(1)
            seeds[current] = []
            continue
        if current and line.startswith("  "):
            seeds[current].append(line.strip())
    safety = [s for s, ls in seeds.items() if any(any(k in l for k in SAFETY_MARKERS) for l in ls)]
    invariant = [s for s, ls in seeds.items() if s not in safety and any(l.startswith("invariant violated") for l in ls)]
    bounds = [s for s, ls in seeds.items() if s not in safety and s not in invariant and any(l.startswith("bounded state") for l in ls)]
    liveness = [s for s, ls in seeds.items() if s not in safety and s not in invariant and s not in bounds
                and any(l.startswith("liveness:") for l in ls)]
    other = [s for s in seeds if s not in safety and s not in invariant and s not in bounds and s not in liveness]
    first = next((l for s in safety for l in seeds[s] if any(k in l for k in SAFETY_MARKERS)), "") or \
        next((l for s in invariant for l in seeds[s] if l.startswith("invariant violated")), "") or \
        next((l for s in bounds for l in seeds[s] if l.startswith("bounded state")), "")
    return safety, invariant, bounds, liveness, other, first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2000)
    ap.add_argument("--start", type=int, default=3_000_000)
    ap.add_argument("--only", default="", help="comma-separated mutation names")
    ap.add_argument("--no-tests", action="store_true", help="skip the BFTCoreTests column")
    ap.add_argument("--config", default="release", choices=["release", "debug"], help="bft-sim build configuration")
    ap.add_argument("--workdir", default="", help="reuse this copy (keeps its build directory between runs)")
    ap.add_argument("--out", default="", help="also write the markdown table here")
    ap.add_argument("--chunk", type=int, default=50, help="seeds per bft-sim run")
    ap.add_argument("--max-liveness", type=int, default=0,
                    help="stop a mutation's seeds after this many liveness failures (0 = run them all); "
                         "each one costs the whole liveness phase")
    ap.add_argument("--all-seeds", action="store_true", help="do not stop at the first safety violation")
    ap.add_argument("--sim-args", default="", help="extra bft-sim arguments, e.g. --coalition (an adversary in every seed)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    muts = MUTATIONS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m[0] for m in MUTATIONS}
        if unknown:
            sys.exit(f"unknown mutations: {sorted(unknown)}")
        muts = [m for m in MUTATIONS if m[0] in wanted]
    if args.list:
        for name, cls, desc, _ in muts:
            print(f"{name:32} {cls:14} {desc}")
        return

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = args.workdir or os.path.join(tempfile.gettempdir(), "swift-pbft-mutants")
    if not os.path.exists(os.path.join(work, "Package.swift")):
        log(f"copying the package to {work}")
        copy_package(root, work)
    # Every mutation is checked against the copy first, so a stale list fails before any build.
    for name, _, _, edits in muts:
        restore(work, apply(work, edits))

    sim = os.path.join(work, ".build", args.config, "bft-sim")
    build_sim = ["swift", "build", "-c", args.config, "--product", "bft-sim"]

    def score(label):
        t0 = time.time()
        rc, out, bt = run(build_sim, work, 3600)
        if rc != 0:
            log(out[-3000:])
            return {"build": "FAILED"}
        # Seeds in chunks: stop at the first safety violation (the verdict cannot get stronger)
        # or after --max-liveness liveness failures.
        out, st, ran, crashed = "", 0.0, 0, False
        while ran < args.seeds:
            n = min(args.chunk, args.seeds - ran)
            rc, o, t = run([sim, "--seeds", str(n), "--start", str(args.start + ran)] + args.sim_args.split(), work, 7200)
            out += o
            st += t
            ran += n
            last = o.strip().splitlines()[-1] if o.strip() else ""
            if rc not in (0, 1) or not re.match(r"\d+ passed, \d+ failed", last):
                crashed = True
                break
            s_, _, _, l_, _, _ = classify(out)
            if (s_ and not args.all_seeds) or (args.max_liveness and len(l_) >= args.max_liveness):
                break
        safety, invariant, bounds, liveness, other, example = classify(out)
        summary = f"{ran} seeds run"
        if crashed:
            verdict = "CRASH"
        elif safety:
            verdict = "SAFETY"
        elif invariant:
            verdict = "INVARIANT"
        elif bounds:
            verdict = "BOUNDS"
        elif liveness or other:
            verdict = "LIVENESS"
        else:
            verdict = "SURVIVED"
        tests = ""
        tt = 0.0
        if not args.no_tests:
            rc1, o1, t1 = run(["swift", "build", "--build-tests"], work, 3600)
            if rc1 != 0:
                tests = "build failed"
                log(o1[-3000:])
            else:
                rc2, o2, t2 = run(["swift", "test", "--skip-build", "--filter", "BFTCoreTests"], work, 1800)
                names = set(re.findall(r'✘ Test "([^"]+)" (?:with \d+ test cases? )?failed', o2))
                tests = "caught" if rc2 != 0 else "missed"
                if rc2 != 0:
                    tests += f" ({len(names)} tests)"
                t1 += t2
            tt = t1
        if label.startswith("baseline"):
            # Unmutated code: every seed and every rule test must pass, or the score means nothing.
            verdict = "clean" if verdict == "SURVIVED" else f"BASELINE FAILS ({verdict})"
            tests = {"missed": "pass", "": ""}.get(tests, f"BASELINE FAILS ({tests})")
        r = {"verdict": verdict, "safety": len(safety), "invariant": len(invariant), "bounds": len(bounds), "liveness": len(liveness), "other": len(other),
             "example": example, "tests": tests, "build_s": bt, "seeds_s": st, "tests_s": tt,
             "total_s": time.time() - t0, "summary": summary, "first_seed": (safety or invariant or bounds or liveness or other or [""])[0]}
        log(f"{label}: {verdict} safety={len(safety)} invariant={len(invariant)} bounds={len(bounds)} liveness={len(liveness)} other={len(other)} tests={tests} "
            f"(build {bt:.0f}s, seeds {st:.0f}s, tests {tt:.0f}s) {summary}")
        if example:
            log(f"    e.g. {example[:160]}")
        return r

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    rows = []
    base = score("baseline (no mutation)")
    rows.append(("baseline", "-", "unmodified code", base))
    for name, cls, desc, edits in muts:
        saved = apply(work, edits)
        try:
            rows.append((name, cls, desc, score(name)))
        finally:
            restore(work, saved)

    lines = [f"seeds {args.start}..{args.start + args.seeds - 1} ({args.seeds}), bft-sim built {args.config}"
             + (f", bft-sim {args.sim_args}" if args.sim_args else ""),
             "",
             "| mutation | class | planted bug | simulator | failed seeds (safety / invariant / bounds / liveness / other) of seeds run | first failing seed | BFTCoreTests | time (build + seeds + tests) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, cls, desc, r in rows:
        if "build" in r:
            lines.append(f"| `{name}` | {cls} | {desc} | build failed | | | | |")
            continue
        lines.append(f"| `{name}` | {cls} | {desc} | {r['verdict']} | {r['safety']} / {r['invariant']} / {r['bounds']} / {r['liveness']} / {r['other']} of {r['summary'].split()[0]} | "
                     f"{r['first_seed']} | {r['tests'] or 'not run'} | {r['build_s']:.0f} + {r['seeds_s']:.0f} + {r['tests_s']:.0f} s |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        open(args.out, "w").write(table + "\n")


if __name__ == "__main__":
    main()
