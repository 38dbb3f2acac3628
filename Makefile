# `make demo` and `make test` each work from a fresh clone: they create .venv if it is missing, install
# torch (pinned, CPU) first and then the package with its test extras, and run. CI runs
# `make test EXTRAS=test,ray,highway,metaworld,mo` so that the tests of every optional extra run.
# highway-env needs no special step: from 1.12 on it depends on pygame-ce, the same `pygame` module that
# gymnasium[box2d] installs (earlier releases pulled in `pygame`, whose files overwrite pygame-ce's).
# mo-gymnasium (1.3.2) still requires `pygame`: with `mo` in EXTRAS it is installed without its dependencies,
# which are gymnasium, numpy and scipy (already here) and the `pygame` module (pygame-ce provides it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= test
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
DEMO_OUT ?= runs/demo-cartpole

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo 'venv: ensurepip failed; creating the venv without pip and installing pip into it' >&2; \
	  rm -rf $(VENV) && $(PYTHON) -m venv --without-pip $(VENV) && $(PYTHON) -m pip --python $(BIN)/python install -q pip; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	case ",$(EXTRAS)," in *,mo,*) $(BIN)/python -m pip install -q --no-deps "mo-gymnasium>=1.3,<2" ;; esac
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/policygradex run cartpole --out $(DEMO_OUT) --preset demo --k 3
	$(BIN)/policygradex show $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

bench: $(STAMP)
	$(BIN)/python bench/bench_stages.py --out results/bench.md
	$(BIN)/python bench/bench_gradients.py --out results/bench_gradients.md
	$(BIN)/python bench/bench_surrogate.py --out results/bench_surrogate.md
	$(BIN)/python bench/bench_hessian.py --out results/bench_hessian.md
	$(BIN)/python bench/bench_scale.py --out results/bench_scale.md

clean:
	rm -rf $(VENV) runs .pytest_cache
