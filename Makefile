# The two quick-start commands (`make train`, `make test`) install what they need into .venv.
# torch: the CPU wheel `torch==$(TORCH_SPEC)` is installed first when the venv has no torch,
# so pip never pulls a multi-GB CUDA build to satisfy `torch>=2.3`.
PY ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
MW_VENV := .venv-mw
PYTEST_ARGS ?=

.PHONY: install train test test-metaworld lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The tests also run the Ray sampler back-end, so `make test` adds the optional `ray` extra
# (one wheel and a few small dependencies; `make train` does not need it).
$(VENV)/.installed-ray: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	touch $@

## Train the default agent (a short meta-RL run), then evaluate it on held-out tasks.
train: $(VENV)/.installed
	$(BIN)/metarl train $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check metarl envs scripts tests
	$(BIN)/mypy metarl envs

## Lint, type-check, the test suite (slow tests in their short form), then the env tests again
## in the Meta-World venv (Meta-World + MuJoCo 3.3) with a short Meta-World training run.
# --dist loadgroup keeps the Ray tests (xdist_group "ray") on one worker: one Ray runtime.
test: lint $(VENV)/.installed-ray
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not metaworld" $(PYTEST_ARGS)
	$(MAKE) test-metaworld

# Meta-World pins its own MuJoCo (3.3), so its tests run in a separate venv; the other env tests
# run there too, which checks the batched engine's MuJoCo 3 path (no mujoco.batch).
$(MW_VENV)/.installed: pyproject.toml
	test -x $(MW_VENV)/bin/python || $(PY) -m venv $(MW_VENV)
	$(MW_VENV)/bin/python -m pip install -q --upgrade pip
	$(MW_VENV)/bin/python -c "import torch" 2>/dev/null || $(MW_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(MW_VENV)/bin/python -m pip install -q -e ".[dev,metaworld]"
	touch $@

test-metaworld: $(MW_VENV)/.installed
	$(MW_VENV)/bin/python -m pytest -n 2 -p no:cacheprovider tests/envs tests/rl/test_metaworld_train.py

clean:
	rm -rf $(VENV) $(MW_VENV) build *.egg-info
