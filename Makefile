# The two newcomer commands: `make demo` (set up, run the whole pipeline on the default data) and `make test`.
# Any python3 >= 3.10; python3.11 first, since the torch wheels on this machine's local disk are built for it.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do command -v $$p >/dev/null 2>&1 \
	&& $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
ORT ?= cpu  # ONNX Runtime build: cpu (onnxruntime) or gpu (onnxruntime-gpu, CUDA); `make setup ORT=gpu`

.PHONY: setup weights demo test test-all clean

setup: $(VENV)/.installed weights

# MTCNN detector weights from the facenet-pytorch wheel (MIT), extracted into weights/mtcnn/; a no-op once present
weights: $(VENV)/.installed
	$(BIN)/python -m edgekd.detect.fetch

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" && command -v $(PYTHON) >/dev/null || { echo "need Python >= 3.10 (python3.11 preferred)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,$(strip $(ORT))]'
	touch $@

demo: setup
	$(BIN)/edgekd pipeline --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf runs/demo .pytest_cache
