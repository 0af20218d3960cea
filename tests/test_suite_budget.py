"""The suite's time budget (tests/conftest.py): a run past it fails loudly, one inside it passes."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pytest(tmp_path, budget, *extra):
    (tmp_path / "test_probe.py").write_text("def test_probe():\n    assert True\n")
    env = {**os.environ, "CTR_TF_SUITE_BUDGET_S": str(budget)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           f"--rootdir={tmp_path}", *extra, str(tmp_path / "test_probe.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_run_past_the_budget_fails_naming_its_time_and_one_inside_passes(tmp_path):
    over = _pytest(tmp_path, 0)
    assert over.returncode == 1, over.stdout + over.stderr
    assert "suite time budget" in over.stdout and "past its budget of 0.0 min (CTR_TF_SUITE_BUDGET_S)" in over.stdout
    assert "1 passed" in over.stdout  # the tests themselves passed: only the time failed the run
    inside = _pytest(tmp_path, 3600)
    assert inside.returncode == 0 and "suite time budget" not in inside.stdout, inside.stdout


def test_under_xdist_the_controller_judges_the_whole_run(tmp_path):
    over = _pytest(tmp_path, 0, "-n", "2")
    assert over.returncode == 1, over.stdout + over.stderr
    assert over.stdout.count("past its budget") == 1, over.stdout
