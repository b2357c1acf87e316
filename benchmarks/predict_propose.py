"""Predict-then-propose benchmark (issue 8): runs the experiment and stores its table as a benchmark result.

Run: ``.venv/bin/python benchmarks/predict_propose.py`` (quick mode: about 25 CPU minutes, most of it in the
two lowest-temperature cases) or ``--full`` (hours). Same code as ``glassgen experiment predict-propose --config
configs/experiments/predict_propose.toml``; the report goes to reports/predict_propose/ and a compact copy
of the table (without F_s curves and score values) to benchmarks/results/predict_propose[_full].json.
"""

from __future__ import annotations

import argparse

from _common import save

from glassgen.api_experiment import predict_propose_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="Full budget (hours).")
    ap.add_argument("--config", default="configs/experiments/predict_propose.toml")
    args = ap.parse_args()
    res = predict_propose_experiment(config=args.config, quick=not args.full)
    for c in res["cases"]:
        for r in c["methods"].values():
            r.pop("fs_curve", None)
        for v in c.get("scores", {}).values():
            v.pop("values", None)
    path = save("predict_propose_full" if args.full else "predict_propose", res)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
