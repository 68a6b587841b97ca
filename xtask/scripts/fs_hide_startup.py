"""Start-up with and without the hidden root (fs-hide), the two variants alternating run by run.

Usage: MCPW_BIN=/path/to/release/mcp-warden python3 fs_hide_startup.py [PREFIX...]
(PREFIX, e.g. `runuser -u mcpw-test --`, runs the launcher as another user; the binary must be
readable by that user). Prints medians, quartiles and minimums of 300 runs after 20 warm-up rounds.
"""
import os, subprocess, time, statistics as st, sys
W = os.environ.get("MCPW_BIN", "target/release/mcp-warden")
pre = sys.argv[1:]  # e.g. runuser -u mcpw-test --
base = pre + [W, "run", "--profile", "strict", "--require", "monitor=off"]
variants = {"hide on (default)": base + ["--", "/bin/true"], "fs-hide=off": base + ["--require", "fs-hide=off", "--", "/bin/true"]}
times = {k: [] for k in variants}
names = list(variants)
for i in range(320):
    order = names if i % 2 == 0 else names[::-1]
    for n in order:
        t = time.perf_counter(); r = subprocess.run(variants[n], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); d = time.perf_counter() - t
        assert r.returncode == 0, (n, r.returncode)
        if i >= 20: times[n].append(d * 1000)
for n in names:
    t = sorted(times[n]); print(f"{n}: median {st.median(t):.2f} ms, p25 {t[len(t)//4]:.2f}, p75 {t[3*len(t)//4]:.2f}, min {t[0]:.2f} (n={len(t)})")
print(f"ratio of medians: {st.median(times[names[0]]) / st.median(times[names[1]]):.3f}; difference {st.median(times[names[0]]) - st.median(times[names[1]]):.2f} ms")
