# The two front-door commands: `make demo` and `make test`. Both set themselves up from nothing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench graphs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch in the same command as everything that needs it, so pip keeps the local CPU wheel.
	$(BIN)/pip install -q -r requirements-lock.txt -e '.[all,dev]'
	# geffnet (MobileNetV3 / EfficientNet) declares torchvision, which does not import beside this torch.
	$(BIN)/pip install -q --no-deps geffnet==1.0.2
	touch $(STAMP)

# an earlier runs/demo is kept as runs/demo.<time>, never overwritten
demo: venv
	@if [ -e runs/demo ]; then d=runs/demo.$$(date +%Y%m%d-%H%M%S); mv runs/demo $$d; echo "kept the earlier demo run as $$d"; fi
	$(BIN)/sparoa demo --out runs/demo

test: venv
	$(BIN)/python -m pytest -q -m "not slow" tests
	$(BIN)/python -m pytest -q -m slow tests/test_smoke_slow.py

test-all: venv
	$(BIN)/python -m pytest -q tests

bench: venv
	$(BIN)/python benchmarks/run_all.py

graphs: venv
	$(BIN)/sparoa graphs regenerate

clean:
	rm -rf $(VENV) runs
