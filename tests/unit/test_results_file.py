"""qrerank.eval.meta.write_results: the one results writer of benchmarks/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qrerank.eval.meta import write_results

ROOT = Path(__file__).resolve().parents[2]


def test_writes_json_with_the_environment_and_keeps_a_given_one(tmp_path: Path) -> None:
    out = write_results(tmp_path / "deep" / "r.json", {"rows": [1.5]})
    data = json.loads(out.read_text())
    assert data["rows"] == [1.5]
    assert {"python", "versions", "git_commit", "cpu_count"} <= set(data["environment"])
    write_results(out, {"rows": [], "environment": {"own": True}})
    assert json.loads(out.read_text())["environment"] == {"own": True}
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    out = write_results(tmp_path / "r.json", {"rows": [1]})
    try:
        write_results(out, {"rows": [object()]})  # not JSON: fails before anything is replaced
    except TypeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("an unserialisable payload must raise")
    assert json.loads(out.read_text())["rows"] == [1]


def test_benchmark_scripts_compile_and_use_it() -> None:
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    subprocess.run([sys.executable, "-m", "py_compile", *map(str, scripts)], check=True)
    users = [p.name for p in scripts if "write_results(" in p.read_text()]
    assert {"perf.py", "prf.py", "index_storage.py", "search_fusion.py"} <= set(users)
