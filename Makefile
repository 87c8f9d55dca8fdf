# `make demo` and `make test` set everything up on a fresh Debian machine, then run.
# They install the C libraries with apt-get when they are missing, make the virtual
# environment .venv with clnet installed in it, and are quick when all of that is there.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := libclblast-dev ocl-icd-opencl-dev g++ oclgrind
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench lint system-deps clean

demo: $(STAMP)
	$(BIN)/clnet demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/clnet bench

lint: $(STAMP)
	$(BIN)/ruff check .

# CLBlast (which pyclblast builds against) and the OpenCL loader come from Debian.
system-deps:
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi; \
	else \
	  echo "Not a Debian system: install CLBlast and an OpenCL loader yourself."; \
	fi

# PyTorch (CPU) is a reference the tests compare with (ONNX import); where that build is not to
# be had, those tests skip and everything else runs. torchvision's classifiers are the models the
# import tests bring: its wheel asks for a CUDA torch, so it goes in without its dependencies.
TORCH ?= torch==2.13.0
TORCHVISION ?= torchvision==0.28.0

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[pocl,intel,clblast,test,examples,plot,mpi,onnx]' ruff
	$(BIN)/pip install -q '$(TORCH)' || echo "PyTorch ($(TORCH)) not installed: the tests that compare with it skip"
	$(BIN)/pip install -q --no-deps '$(TORCHVISION)' || echo "$(TORCHVISION) not installed: the model zoo tests skip"
	touch $@

clean:
	rm -rf $(VENV)
