# The two commands of the README. Both create .venv and install the package (pinned deps) first.
# test: two pytest-xdist workers (CI has two cores), the ten slowest tests printed; tests/conftest.py
# fails the run when it takes longer than its budget (CTR_TF_SUITE_BUDGET_S, 14 minutes).
PY := .venv/bin/python

.venv/installed: setup.cfg pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,beam]'
	touch .venv/installed

.PHONY: demo test
demo: .venv/installed
	$(PY) -m pipelines.demo

test: .venv/installed
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=10 tests
