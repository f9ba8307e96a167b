import json, math, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_step_smoke(tmp_path):
    out = tmp_path / "ts.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_train_step.py"), "--smoke",
                    "--device", "cpu", "--out", str(out)], check=True, cwd=ROOT, timeout=300)
    res = json.loads(out.read_text())["results"]
    for model, arms in res.items():
        for arm in ("learned", "fixed", "fixed_pruned"):
            assert arm in arms, (model, arm)
            if "error" not in arms[arm]:
                assert math.isfinite(arms[arm]["speedup_vs_learned"]), (model, arm)
        assert "error" not in arms["learned"] and "error" not in arms["fixed"]
