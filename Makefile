# Two entry points on a fresh machine: `make train` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs: torch first (the local CPU wheel), then the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

VENV_INT ?= .venv-integrations

.PHONY: install train test test-slow test-integration lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train_agent.py train

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

# TorchRL, tianshou, rl-baselines3-zoo and RLlib (the 'integrations' extra) in a venv of their own:
# RLlib pins its own gymnasium, which the main venv should not inherit.
$(VENV_INT)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_INT)
	$(VENV_INT)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_INT)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(VENV_INT)/bin/python -m pip install --quiet -e ".[all,dev,integrations]"
	touch $@

test-integration: $(VENV_INT)/.installed
	EDGEGEN_INTEGRATIONS=required $(VENV_INT)/bin/python -m pytest -q -m integration

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) benchmarks/report.py --check

bench: install
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/fed_oracle_speed.py
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) $(VENV_INT) runs .pytest_cache .ruff_cache *.egg-info
