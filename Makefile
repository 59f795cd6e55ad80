# Everything runs from a project virtualenv that `make` creates itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The page's lint (Biome), pinned by package-lock.json; nothing of it is shipped.
NPM_STAMP := node_modules/.installed

.PHONY: demo test test-fast lint typecheck pytest bench clean vendor-leaflet vendor-pmtiles

demo: $(STAMP)
	$(BIN)/racepub demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP) $(NPM_STAMP)
	$(BIN)/ruff check racepub tests bench
	$(BIN)/ruff format --check racepub tests bench
	$(BIN)/cfn-lint deploy/cloudformation/*.yaml
	node_modules/.bin/biome check --error-on-warnings

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
	@command -v npm >/dev/null || { echo "npm is needed to lint the page (apt-get install npm)"; exit 1; }
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
