#!/usr/bin/env python3
"""bench/report.py - the comparison table and plots for `make bench`.

Reads google-benchmark's JSON (written by bench/spbench_run through the C shim),
prints each syncpool figure beside the anchors measured in the same run, writes
the table as Markdown and one PNG per group (ns/op against threads, one line per
implementation, drawn by gnuplot).

Run names are "<group>/<impl>[/<arg>]/threads:<n>" (see bench/spbench.h); the
impl "syncpool" is ours, every other impl of the same group is an anchor.
ratio = anchor ns/op / syncpool ns/op: above 1 means syncpool is faster.
ns/op is the wall-clock span of all threads' timed loops divided by all their
operations (the shim's wall_ns_per_op counter) where the benchmark used
SPB_LOOP, else google-benchmark's real time.

    report.py RESULTS.json --out DIR        table to stdout, DIR/table.md, DIR/<group>.png
    report.py RESULTS.json --verify NAME... [--counter NAME=COUNTER ...]
                                            exit 1 unless every run (and counter) is there
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

OURS = "syncpool"
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
STD_KEYS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type",
    "repetitions", "repetition_index", "threads", "iterations", "real_time",
    "cpu_time", "time_unit", "label", "error_occurred", "error_message",
    "items_per_second", "bytes_per_second", "aggregate_name", "aggregate_unit",
}


def normalize(name):
    """Drops google-benchmark's decorations that are not part of our naming."""
    parts = [p for p in name.split("/")
             if p != "real_time" and not p.startswith(("min_time:", "iterations:", "repeats:"))]
    return "/".join(parts)


def parse(path):
    with open(path) as f:
        data = json.load(f)
    runs = []
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = normalize(b["name"])
        m = re.match(r"^(.*)/threads:(\d+)$", name)
        base, threads = (m.group(1), int(m.group(2))) if m else (name, 1)
        parts = base.split("/")
        if len(parts) < 2:
            continue
        group, impl, rest = parts[0], parts[1], parts[2:]
        if rest:
            group = group + "/" + "/".join(rest)
        ns = b["real_time"] * UNIT_NS.get(b.get("time_unit", "ns"), 1.0)
        # The shim's wall-span figure (see spbench.cc) is the aggregate
        # throughput over all threads; prefer it to google-benchmark's mean
        # of per-thread loop times.
        if isinstance(b.get("wall_ns_per_op"), (int, float)) and b["wall_ns_per_op"] > 0:
            ns = b["wall_ns_per_op"]
        counters = {k: v for k, v in b.items() if k not in STD_KEYS and isinstance(v, (int, float))}
        runs.append({
            "name": name, "group": group, "impl": impl, "threads": threads, "ns": ns,
            "error": b.get("error_occurred", False), "msg": b.get("error_message", ""),
            "counters": counters,
        })
    return data, median_of_repetitions(runs)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def median_of_repetitions(runs):
    """One run per name: the median ns/op (and counters) of its repetitions."""
    by_name = {}
    order = []
    for r in runs:
        if r["name"] not in by_name:
            by_name[r["name"]] = []
            order.append(r["name"])
        by_name[r["name"]].append(r)
    out = []
    for name in order:
        reps = by_name[name]
        ok = [r for r in reps if not r["error"]] or reps
        merged = dict(ok[0])
        merged["ns"] = median([r["ns"] for r in ok])
        merged["reps"] = len(ok)
        keys = set().union(*(r["counters"].keys() for r in ok))
        merged["counters"] = {k: median([r["counters"][k] for r in ok if k in r["counters"]]) for k in keys}
        out.append(merged)
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return "%.3g ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.3g us" % (ns / 1e3)
    return "%.3g ns" % ns


def fmt_counter(v):
    a = abs(v)
    if a >= 1e9:
        return "%.3gG" % (v / 1e9)
    if a >= 1e6:
        return "%.3gM" % (v / 1e6)
    if a >= 1e3:
        return "%.3gk" % (v / 1e3)
    return "%.3g" % v


def table(runs):
    """Rows: (group, threads, impl, ns, anchors [(impl, ns, ratio)], counters)."""
    by = {}
    for r in runs:
        by.setdefault((r["group"], r["threads"]), {})[r["impl"]] = r
    rows = []
    for (group, threads) in sorted(by, key=lambda k: (k[0], k[1])):
        impls = by[(group, threads)]
        ours = impls.get(OURS)
        anchors = [impls[i] for i in sorted(impls) if i != OURS]
        rows.append((group, threads, ours, anchors))
    return rows


def render(rows):
    out = ["| benchmark | threads | syncpool ns/op | anchor | anchor ns/op | ratio (anchor/syncpool) | syncpool counters |",
           "|---|---:|---:|---|---:|---:|---|"]
    for group, threads, ours, anchors in rows:
        ours_s = ("error: " + ours["msg"]) if ours and ours["error"] else (fmt_ns(ours["ns"]) if ours else "-")
        counters = ", ".join("%s=%s" % (k, fmt_counter(v)) for k, v in sorted(ours["counters"].items())
                             if k != "wall_ns_per_op") if ours else ""
        if not anchors:
            out.append("| %s | %d | %s | - | - | - | %s |" % (group, threads, ours_s, counters))
            continue
        for i, a in enumerate(anchors):
            a_s = ("error: " + a["msg"]) if a["error"] else fmt_ns(a["ns"])
            ratio = "-"
            if ours and not ours["error"] and not a["error"] and ours["ns"] > 0:
                ratio = "%.2fx" % (a["ns"] / ours["ns"])
            if i == 0:
                out.append("| %s | %d | %s | %s | %s | %s | %s |" % (group, threads, ours_s, a["impl"], a_s, ratio, counters))
            else:
                out.append("| | | | %s | %s | %s | |" % (a["impl"], a_s, ratio))
    return "\n".join(out)


def scaling(runs, lo=1, hi=2):
    """Aggregate throughput at `hi` threads over that at `lo`, per group and impl.

    ns/op is the aggregate figure (all threads' operations over the wall span),
    so the ratio is ns(lo) / ns(hi): 2.0 means two threads did twice the work of
    one.  A share-nothing loop (the pool's tls_freelist_inline anchor) shows
    what the machine itself allows in the same run.
    """
    by = {}
    for r in runs:
        if not r["error"] and r["ns"] > 0:
            by.setdefault(r["group"], {}).setdefault(r["impl"], {})[r["threads"]] = r["ns"]
    out = ["| benchmark | %d->%d threads: syncpool | anchors |" % (lo, hi), "|---|---:|---|"]
    n = 0
    for group in sorted(by):
        cells = {}
        for impl, t in by[group].items():
            if lo in t and hi in t:
                cells[impl] = t[lo] / t[hi]
        if OURS not in cells:
            continue
        others = ", ".join("%s %.2fx" % (i, cells[i]) for i in sorted(cells) if i != OURS)
        out.append("| %s | %.2fx | %s |" % (group, cells[OURS], others or "-"))
        n += 1
    return "\n".join(out) if n else ""


def plot(runs, outdir):
    gp = shutil.which("gnuplot")
    if not gp:
        print("report: gnuplot not found; no plots written", file=sys.stderr)
        return []
    groups = {}
    for r in runs:
        if not r["error"]:
            groups.setdefault(r["group"], {}).setdefault(r["impl"], []).append((r["threads"], r["ns"]))
    written = []
    for group, impls in sorted(groups.items()):
        if max(len(v) for v in impls.values()) < 2 and len(impls) < 2:
            continue
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", group)
        png = os.path.join(outdir, safe + ".png")
        datfiles = []
        plots = []
        for impl, pts in sorted(impls.items()):
            dat = os.path.join(outdir, "%s.%s.dat" % (safe, re.sub(r"[^A-Za-z0-9_.-]", "_", impl)))
            with open(dat, "w") as f:
                for t, ns in sorted(pts):
                    f.write("%d %g\n" % (t, ns))
            datfiles.append(dat)
            lw = 3 if impl == OURS else 1.5
            plots.append("'%s' using 1:2 with linespoints lw %g title '%s'" % (dat, lw, impl))
        script = "\n".join([
            "set terminal pngcairo size 800,500 noenhanced" if has_pngcairo(gp) else "set terminal png size 800,500 noenhanced",
            "set output '%s'" % png,
            "set title '%s: aggregate ns/op (lower is better)'" % group,
            "set xlabel 'threads'", "set ylabel 'ns/op'", "set logscale x 2", "set grid",
            "set key outside right", "set xrange [0.8:*]", "set yrange [0:*]",
            "plot " + ", ".join(plots), ""])
        subprocess.run([gp], input=script.encode(), check=False)
        for d in datfiles:
            os.unlink(d)
        if os.path.exists(png):
            written.append(png)
    return written


_pngcairo = None


def has_pngcairo(gp):
    global _pngcairo
    if _pngcairo is None:
        r = subprocess.run([gp, "-e", "set terminal"], capture_output=True, text=True)
        _pngcairo = "pngcairo" in (r.stdout + r.stderr)
    return _pngcairo


def verify(runs, names, counters):
    have = {r["name"]: r for r in runs}
    ok = True
    for n in names:
        if n not in have:
            print("verify: missing run %s (have: %s)" % (n, ", ".join(sorted(have))), file=sys.stderr)
            ok = False
        elif have[n]["error"]:
            print("verify: run %s failed: %s" % (n, have[n]["msg"]), file=sys.stderr)
            ok = False
    for spec in counters:
        n, _, c = spec.partition("=")
        if n in have and c not in have[n]["counters"]:
            print("verify: run %s lacks counter %s" % (n, c), file=sys.stderr)
            ok = False
    if ok:
        print("verify: %d runs, %d counters present" % (len(names), len(counters)))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--out", help="directory for table.md and the PNG plots")
    ap.add_argument("--verify", nargs="*", metavar="NAME")
    ap.add_argument("--counter", action="append", default=[], metavar="NAME=COUNTER")
    a = ap.parse_args()
    data, runs = parse(a.json)
    if a.verify is not None:
        return 0 if verify(runs, a.verify, a.counter) else 1
    if not runs:
        print("report: no benchmark runs in %s" % a.json, file=sys.stderr)
        return 1
    ctx = data.get("context", {})
    reps = max(r.get("reps", 1) for r in runs)
    head = "Run %s on %s CPUs at %s MHz; every ratio compares figures from this one run%s." % (
        ctx.get("date", "?"), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
        " (each figure the median of %d repetitions)" % reps if reps > 1 else "")
    text = render(table(runs))
    sc = scaling(runs)
    if sc:
        text += ("\n\nScaling (same run): aggregate throughput with 2 threads over 1 thread; "
                 "2.00x is perfect.  tls_freelist_inline shares nothing, so its figure is "
                 "the ceiling this machine allowed in this run.\n\n" + sc)
    print()
    print(head)
    print()
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "table.md"), "w") as f:
            f.write(head + "\n\n" + text + "\n")
        pngs = plot(runs, a.out)
        print()
        print("report: wrote %s and %d plot(s) in %s" % (os.path.join(a.out, "table.md"), len(pngs), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
