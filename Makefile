# The two commands of the README:  make demo  and  make test.
# Both create .venv when it is missing and (re)install the project when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medunlearn-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medunlearn demo

test: $(STAMP)
	MEDUNLEARN_PROGRESS=0 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/synth_hospital.py
	$(BIN)/python benchmarks/train_vlm.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
