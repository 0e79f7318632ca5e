# The two commands of the README:  make demo  and  make test.
# Both create .venv when it is missing and (re)install the project when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medunlearn-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo demo-quick test lint install browser clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medunlearn demo --out runs/demo
	@echo "open runs/demo/report.html in a browser"

demo-quick: $(STAMP)
	$(BIN)/medunlearn demo --quick --out runs/demo-quick
	@echo "open runs/demo-quick/report.html in a browser"

# The report test screenshots report.html in headless Chromium (Debian's package); it is
# installed here when apt-get can (CI runs as root), and the test is skipped otherwise.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the report screenshot test will be skipped"; }

# lint and format first: a style slip fails in seconds, before the suite runs
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# two workers (pytest-xdist), one torch thread each; a module's tests stay on one worker (its module fixtures)
test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/synth_hospital.py
	$(BIN)/python benchmarks/train_vlm.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
