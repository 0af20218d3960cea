"""Loaded by pytest before any test module: selects tf-keras before anything imports TensorFlow,
and keeps the suite's time budget: a run longer than CTR_TF_SUITE_BUDGET_S (14 minutes unless
set) fails, after the tests, with the time it took and its slowest tests' names (make test prints
the ten slowest; CI runs it on two cores)."""
import os
import time

import pytest

import ctr_tf  # noqa: F401

BUDGET_ENV = "CTR_TF_SUITE_BUDGET_S"
_started = time.monotonic()
_over_budget: list[str] = []


def _budget_s() -> float:
    return float(os.environ.get(BUDGET_ENV, 14 * 60))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: the controller judges the whole run
    elapsed, budget = time.monotonic() - _started, _budget_s()
    if elapsed > budget:
        _over_budget.append(f"the suite took {elapsed / 60:.1f} min, past its budget of {budget / 60:.1f} min "
                            f"({BUDGET_ENV}): make the slowest tests above smaller, or share their fixtures")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def planted_records(tmp_path_factory):
    """6,000 planted rows (seed 11) converted with --min_count=2: the records several test files
    train on, converted once a worker. Read-only for the tests."""
    from ctr_tf.data import synthetic
    from tests import helpers
    d = tmp_path_factory.mktemp("planted")
    synthetic.write(str(d / "s.tsv"), 6000, seed=11, scale=0.0005)
    helpers.convert(str(d / "s.tsv"), d / "tfr", block_rows=256, min_count=2)
    return str(d / "tfr")


def pytest_terminal_summary(terminalreporter):
    for line in _over_budget:
        terminalreporter.section("suite time budget", sep="=", red=True, bold=True)
        terminalreporter.line(line, red=True, bold=True)
