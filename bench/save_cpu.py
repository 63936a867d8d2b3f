"""CPU time of one store.save(), by phase: where a save's cost goes.

    python bench/save_cpu.py [--mb 302] [--repeats 4] [--src DIR] [--dir DIR]

Saves `--mb` MB of float32 arrays (18 of them, like the 25M model's weights
and Adam slots) with keep=1 on a thread of its own, as the asynchronous
saver does, and prints per phase (the store's phase hook) the wall time,
the saving thread's CPU time and the whole process's CPU time (the checksum
helper threads included), medians over `--repeats` saves. `os.sync()` runs
before each save. `--src` measures the kerasbackup package in DIR (e.g.
another branch's inst/python), to compare back to back.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=302)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "inst", "python"))
    p.add_argument("--dir", default=None, help="parent of the scratch directory")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.src))
    import numpy as np

    from kerasbackup.store import CheckpointStore, set_phase_hook

    rng = np.random.default_rng(0)
    n = args.mb * 2**20 // 4 // 18
    arrays = {f"v{i:02d}": rng.random(n, dtype=np.float32) for i in range(18)}

    def process_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    marks = []

    def mark(name):
        marks.append((name, time.perf_counter(), time.thread_time(), process_cpu()))

    def hook(name, info):
        if name != "arrays_chunk" or info["written"] == info["total"]:
            mark("arrays written (before fsync)" if name == "arrays_chunk" else name)

    d = tempfile.mkdtemp(prefix="kerasbackup-savecpu-", dir=args.dir)
    rows = {}
    previous = set_phase_hook(hook)
    try:
        with CheckpointStore(os.path.join(d, "b"), keep=1) as st:
            for r in range(args.repeats + 1):  # the first one untimed
                os.sync()
                marks.clear()

                def save():
                    mark("start")
                    st.save(arrays, {"r": r}, epoch=r, batch=0)
                    mark("returned")
                t = threading.Thread(target=save)
                t.start()
                t.join()
                if r == 0:
                    continue
                for (a, *x0), (b, *x1) in zip(marks, marks[1:]):
                    rows.setdefault(f"{a} -> {b}", []).append(
                        [v1 - v0 for v0, v1 in zip(x0, x1)])
    finally:
        set_phase_hook(previous)
        shutil.rmtree(d, ignore_errors=True)
    print(f"store.save() of {args.mb} MB from {args.src}; medians of {args.repeats}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"| phase | wall ms | saving thread CPU ms | process CPU ms |")
    print("|---|---|---|---|")
    total = [0.0, 0.0, 0.0]
    for k, v in rows.items():
        med = [sorted(x[i] for x in v)[len(v) // 2] * 1000 for i in range(3)]
        total = [a + b for a, b in zip(total, med)]
        print(f"| {k} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} |")
    print(f"| sum | {total[0]:.1f} | {total[1]:.1f} | {total[2]:.1f} |")


if __name__ == "__main__":
    main()
