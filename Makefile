# Everything runs from a project virtualenv that `make` creates itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The page's bundler (esbuild), pinned by package-lock.json: only static/app.js,
# which is committed, is shipped. A machine with Python only needs neither.
NPM_STAMP := node_modules/.installed
BUNDLE := node_modules/.bin/esbuild --bundle --format=esm --minify \
	--target=es2020 --legal-comments=none --log-level=warning

.PHONY: demo test test-fast lint typecheck pytest bench clean vendor-leaflet vendor-pmtiles \
	bundle bundle-check

demo: $(STAMP)
	$(BIN)/racepub demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check racepub tests bench
	$(BIN)/ruff format --check racepub tests bench
	$(BIN)/cfn-lint deploy/cloudformation/*.yaml
	$(BIN)/biome check --error-on-warnings
	@$(MAKE) --no-print-directory bundle-check

# static/app.js: the page's modules (static/js) in one file, one request;
# static/event.js: an event's page's.
bundle: $(NPM_STAMP)
	$(BUNDLE) static/js/main.js --outfile=static/app.js
	$(BUNDLE) static/js/event.js --outfile=static/event.js

# The committed bundle is what static/js makes (CI always checks; elsewhere
# it needs npm, and says so when it is not there).
bundle-check:
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(NPM_STAMP) && tmp=$$(mktemp -d) && \
	  $(BUNDLE) static/js/main.js --outfile=$$tmp/app.js && \
	  $(BUNDLE) static/js/event.js --outfile=$$tmp/event.js && \
	  { cmp -s $$tmp/app.js static/app.js && cmp -s $$tmp/event.js static/event.js || \
	    { rm -rf $$tmp; echo "static/*.js is not what static/js makes: run make bundle"; \
	      exit 1; }; } && \
	  rm -rf $$tmp && echo "static/app.js and event.js are up to date"; \
	elif [ "$$CI" = true ]; then echo "npm is needed to check static/app.js"; exit 1; \
	else echo "skipped: static/app.js not checked against static/js (needs npm; CI checks it)"; fi

typecheck: $(STAMP)
	$(BIN)/mypy racepub bench tests

pytest: $(STAMP)
	$(BIN)/pytest

# While working: everything but the tests marked slow (CI runs them all).
test-fast: $(STAMP) lint typecheck
	$(BIN)/pytest -m "not slow"

# Cycle cost at 5..50,000 racers beside a naive baseline and the previous
# large-race form, restart and takeover, spectators under nginx + wrk
# (installed with apt-get when root), real input; writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m bench.run

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to bundle the page (apt-get install npm)"; exit 1; }
	npm ci --silent --no-audit --no-fund
	touch $@

# Refresh the vendored Leaflet from the npm package (needs npm).
LEAFLET_VERSION ?= 1.9.4
vendor-leaflet:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent leaflet@$(LEAFLET_VERSION) >/dev/null \
	  && tar xzf leaflet-$(LEAFLET_VERSION).tgz && cd - >/dev/null \
	  && cp $$tmp/package/dist/leaflet.js $$tmp/package/dist/leaflet.css static/vendor/leaflet/ \
	  && cp $$tmp/package/dist/images/*.png static/vendor/leaflet/images/ \
	  && cp $$tmp/package/LICENSE static/vendor/leaflet/LICENSE \
	  && echo "Leaflet $(LEAFLET_VERSION), copied from the npm package 'leaflet' (dist/). Update with: make vendor-leaflet" > static/vendor/leaflet/VERSION \
	  && rm -rf $$tmp

# Refresh the vendored PMTiles reader (the page's own basemap) from npm.
PMTILES_VERSION ?= 4.5.0
PROTOMAPS_LEAFLET_VERSION ?= 5.1.0
vendor-pmtiles:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent pmtiles@$(PMTILES_VERSION) >/dev/null \
	  && npm pack --silent protomaps-leaflet@$(PROTOMAPS_LEAFLET_VERSION) >/dev/null \
	  && mkdir a b && tar xzf pmtiles-$(PMTILES_VERSION).tgz -C a \
	  && tar xzf protomaps-leaflet-$(PROTOMAPS_LEAFLET_VERSION).tgz -C b && cd - >/dev/null \
	  && cp $$tmp/a/package/dist/pmtiles.js static/vendor/pmtiles/ \
	  && cp $$tmp/b/package/dist/protomaps-leaflet.js static/vendor/protomaps-leaflet/ \
	  && sed -i 's/^PMTiles [0-9.]*,/PMTiles $(PMTILES_VERSION),/' static/vendor/pmtiles/VERSION \
	  && sed -i 's/^protomaps-leaflet [0-9.]*,/protomaps-leaflet $(PROTOMAPS_LEAFLET_VERSION),/' \
	    static/vendor/protomaps-leaflet/VERSION \
	  && rm -rf $$tmp

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache dist build test-artifacts
