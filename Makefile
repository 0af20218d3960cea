# The two commands of the README. Both create .venv and install the package (pinned deps) first.
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
	$(PY) -m pytest -q tests
