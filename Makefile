# Set-up and checks for kerasbackup. `make demo` and `make test` work on a
# fresh Debian 12 / Ubuntu machine (as root or with sudo) and are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV_ROOT := $(or $(WORKON_HOME),$(HOME)/.virtualenvs)
VENV := $(VENV_ROOT)/r-keras
VPY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
R_DEBS := r-base-core r-base-dev r-cran-reticulate r-cran-testthat \
  r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown r-cran-generics r-cran-cli \
  r-cran-rlang r-cran-magrittr r-cran-withr r-cran-jsonlite r-cran-callr \
  r-cran-zeallot r-cran-ggplot2 r-cran-png graphviz pandoc qpdf
VERSION := $(shell sed -n 's/^Version: //p' DESCRIPTION)
TARBALL := build/kerasbackup_$(VERSION).tar.gz
# RLIB=/some/dir installs into that library instead of the system one (and
# puts it first on R_LIBS), so several checkouts can be tested side by side.
RLIB ?=
ifneq ($(RLIB),)
export R_LIBS := $(RLIB)$(if $(R_LIBS),:$(R_LIBS))
INSTALL_LIB := -l $(RLIB)
endif

.PHONY: setup r-deps python-env install document demo test pytest rcheck bench bench-smoke clean wrappers coverage test-keras3 keras3-coexist rtest-reticulate146

setup: r-deps python-env

r-deps:
	@if ! dpkg -s $(R_DEBS) >/dev/null 2>&1; then \
	  echo "Installing R and R packages from the system's packages..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(R_DEBS); \
	fi

python-env:
	@if [ ! -x $(VPY) ]; then $(PYTHON) -m venv $(VENV); fi
	@$(VPY) -m pip install -q --disable-pip-version-check -r inst/python/requirements-dev.txt

document: r-deps
	Rscript -e 'roxygen2::roxygenise()'

$(TARBALL): setup $(shell git ls-files R inst man vignettes tests/testthat DESCRIPTION NAMESPACE 2>/dev/null)
	@mkdir -p build
	cd build && R CMD build --no-build-vignettes .. >/dev/null
	@echo "built $(TARBALL)"

install: $(TARBALL)
	@$(if $(RLIB),mkdir -p $(RLIB))
	$(if $(RLIB),,$(SUDO)) R CMD INSTALL --no-test-load $(INSTALL_LIB) $(TARBALL) >/dev/null
	@echo "installed kerasbackup $(VERSION)"

demo: install
	cd /tmp && Rscript $(CURDIR)/inst/examples/backup_and_restore.R

# The pinned Python packages come from inst/python/requirements.txt (through
# requirements-dev.txt), the list install_keras() reads too.
pytest: python-env
	cd tests/python && $(VPY) -m pytest -q -p no:cacheprovider .

# Tests that need Python skip without it (as on CRAN); here a missing
# Python fails them (KERASBACKUP_REQUIRE_PYTHON=true).
rcheck: install
	@cd build && R CMD build .. >/dev/null && \
	  KERASBACKUP_REQUIRE_PYTHON=true _R_CHECK_FORCE_SUGGESTS_=true \
	    R CMD check --no-manual $(notdir $(TARBALL)); \
	  status=$$?; \
	  tail -n 40 kerasbackup.Rcheck/00check.log; \
	  if [ $$status -ne 0 ] || grep -E "^Status:.*(ERROR|WARNING)" kerasbackup.Rcheck/00check.log; then \
	    echo "R CMD check failed"; \
	    cat kerasbackup.Rcheck/tests/testthat.Rout.fail 2>/dev/null | tail -n 80; \
	    exit 1; \
	  fi; \
	  grep -h "^\[ FAIL" kerasbackup.Rcheck/tests/testthat.Rout | tail -n 1

# The benchmark's code paths, on tiny models (figures not checked: speed is
# judged by `make bench`, never by tests), and the GPU check on the CPU
# (its exact resumes must pass; its stall figures are not checked).
bench-smoke: install
	$(VPY) bench/bench.py --quick --out build/bench-quick.json > build/bench-quick.md
	@grep -q "^## Targets" build/bench-quick.md && grep -q "^## Per backend" build/bench-quick.md \
	  && ! grep -q "| error: " build/bench-quick.md && echo "bench --quick ran"
	$(VPY) bench/gpu_check.py --params 2e5 --repeats 2 --skip keras,raw > build/gpu-check-smoke.txt
	@cat build/gpu-check-smoke.txt
	@test "$$(grep -c 'exact resume PASSED' build/gpu-check-smoke.txt)" = 2 && echo "gpu_check smoke ran"
	$(VPY) bench/fit_hooks.py --width 64 --layers 2 --steps 5 --fits 2 > build/fit-hooks-smoke.txt
	@grep -q "^per save, ours / Keras'" build/fit-hooks-smoke.txt && echo "fit_hooks smoke ran"
	$(VPY) bench/fit_steps.py --width 64 --layers 2 --steps 5 --repeats 3 > build/fit-steps-smoke.txt
	@grep -q "^overhead per save, ours / keras: .*95% interval" build/fit-steps-smoke.txt \
	  && echo "fit_steps smoke ran"

test: pytest rcheck bench-smoke test-keras3

bench: install
	$(VPY) bench/bench.py

clean:
	rm -rf build

# Regenerate the R wrappers from the pinned Keras, then their help pages.
wrappers: python-env
	$(VPY) tools/generate-wrappers.py
	Rscript -e 'roxygen2::roxygenise()'

# keras3's exported names that this package covers, per family.
coverage:
	Rscript tools/coverage.R

# kerasbackup beside the real keras3 (tests/keras3/check.R): the keras3 stack
# from ../shared/keras3-stack (source tarballs; installed once into
# build/keras3-lib), this tree's kerasbackup in build/kb-lib, then the checks
# with R_LIBS=build/kb-lib:build/keras3-lib (outputs in build/keras3-check).
# Without the stack sources it says so and succeeds.
KERAS3_STACK := ../shared/keras3-stack
KERAS3_LIB := build/keras3-lib
KB_LIB := build/kb-lib
KERAS3_TESTS := build/keras3-src/keras3/tests/testthat

test-keras3:
	@if [ -f $(KERAS3_STACK)/install.sh ]; then \
	  $(MAKE) --no-print-directory keras3-coexist rtest-reticulate146; \
	else \
	  echo "keras3 stack not found ($(KERAS3_STACK)): skipping the keras3 coexistence tests and the R suite on reticulate 1.46"; \
	fi

$(KERAS3_LIB)/.installed: $(wildcard $(KERAS3_STACK)/install.sh $(KERAS3_STACK)/*.tar.gz)
	@echo "installing the keras3 stack into $(KERAS3_LIB)..."
	bash $(KERAS3_STACK)/install.sh $(KERAS3_LIB)
	@touch $@

$(KERAS3_TESTS)/.extracted: $(wildcard $(KERAS3_STACK)/keras3_*.tar.gz)
	@rm -rf build/keras3-src && mkdir -p build/keras3-src
	tar -xzf $$(ls $(KERAS3_STACK)/keras3_*.tar.gz | tail -n 1) -C build/keras3-src keras3/tests/testthat
	@touch $@

$(KB_LIB)/.installed: $(TARBALL)
	@rm -rf $(KB_LIB) && mkdir -p $(KB_LIB)
	R CMD INSTALL --no-test-load -l $(KB_LIB) $(TARBALL) >/dev/null
	@touch $@

# kerasbackup's R suite on the stack's reticulate (1.46): beside keras3
# (kerasbackup's keras3 names are keras3's; its own front end's tests skip),
# and with reticulate 1.46 alone (its own front end).
RET146_LIB := build/reticulate146-lib
rtest-reticulate146: $(KERAS3_LIB)/.installed $(KB_LIB)/.installed
	@rm -rf $(RET146_LIB) && mkdir -p $(RET146_LIB) && ln -s $(CURDIR)/$(KERAS3_LIB)/reticulate $(RET146_LIB)/reticulate
	@for libs in $(CURDIR)/$(KB_LIB):$(CURDIR)/$(KERAS3_LIB) $(CURDIR)/$(KB_LIB):$(CURDIR)/$(RET146_LIB); do \
	  echo "R suite with R_LIBS=$$libs"; \
	  (cd tests/testthat && R_LIBS=$$libs RETICULATE_PYTHON=$${RETICULATE_PYTHON:-$(VPY)} \
	    KERASBACKUP_REQUIRE_PYTHON=true NOT_CRAN=true Rscript -e \
	    'cat("reticulate", format(packageVersion("reticulate")), "keras3", requireNamespace("keras3", quietly = TRUE), "\n"); testthat::test_dir(".", package = "kerasbackup", load_package = "installed", reporter = "summary", stop_on_failure = TRUE)') || exit 1; \
	done

keras3-coexist: $(KERAS3_LIB)/.installed $(KERAS3_TESTS)/.extracted $(KB_LIB)/.installed
	@rm -rf build/keras3-check
	R_LIBS=$(CURDIR)/$(KB_LIB):$(CURDIR)/$(KERAS3_LIB) \
	  RETICULATE_PYTHON=$${RETICULATE_PYTHON:-$(VPY)} KERAS_BACKEND=tensorflow \
	  TF_CPP_MIN_LOG_LEVEL=$${TF_CPP_MIN_LOG_LEVEL:-2} NOT_CRAN=true \
	  Rscript tests/keras3/check.R --out build/keras3-check --keras3-tests $(KERAS3_TESTS)
