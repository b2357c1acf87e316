"""Every benchmark script under benchmarks/ parses --help: its imports of glassgen still resolve after a
refactoring (the scripts are run by hand, not by the test suite, so a broken one would otherwise go unseen)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import contextlib, io, runpy, sys
sys.path.insert(0, "benchmarks")
bad = []
for f in sys.argv[1:]:
    sys.argv = [f, "--help"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(f, run_name="__main__")
        bad.append(f + ": ran without parsing --help")
    except SystemExit as e:
        if e.code not in (0, None):
            bad.append(f"{f}: exit {e.code}")
    except Exception as e:
        bad.append(f"{f}: {type(e).__name__}: {e}")
print("\\n".join(bad))
"""


def test_every_benchmark_script_parses_help():
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 20
    r = subprocess.run([sys.executable, "-c", CHECK, *scripts], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "", r.stdout
