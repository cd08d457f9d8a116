# katka: two commands do everything. `make run` builds and starts katka on its
# default config; `make test` installs what the tests need (as root) and runs them.

SHELL    := /bin/bash
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKG      := ./appliance/cmd/katka
# Debian packages the test suite drives for real (kcat = librdkafka).
TEST_PKGS := kcat mosquitto
TEST_TOOLS := kcat mosquitto

.PHONY: build run test test-deps test-long bench cross clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka $(PKG)

run: build
	bin/katka serve --config configs/katka.yaml

# test-deps installs missing tools when root; with CI=true a tool that is still
# missing fails the run instead of letting tests skip.
test-deps:
	@missing=""; for t in $(TEST_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PKGS)) >/dev/null || exit 1; \
	fi; \
	for t in $(TEST_TOOLS); do \
		if ! command -v $$t >/dev/null 2>&1; then \
			if [ "$$CI" = "true" ]; then echo "FAIL: $$t is missing and CI=true"; exit 1; fi; \
			echo "warning: $$t missing; tests that need it will skip (run as root to install)"; \
		fi; \
	done

# The e2e package runs with -v so the torture summary (rounds, acknowledged
# records, lost, phantoms, damage kinds) is printed; the rest stays quiet.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 12m $$($(GO) list ./... | grep -v /appliance/e2e)
	set -o pipefail; $(GO) test -count=1 -timeout 10m -v ./appliance/e2e/ 2>&1 | grep -E '^(torture|--- |ok|FAIL|PASS|panic)|_test.go:'
	$(GO) test -count=1 -race -timeout 5m ./appliance/storage/ ./appliance/broker/

# The long torture and soak runs (minutes to an hour); figures go into notes.
test-long: test-deps
	KATKA_LONG=1 $(GO) test -count=1 -timeout 20m -run CrashNoLoss ./sensors/mqtt/
	$(GO) test -run '^$$' -fuzz '^FuzzRecordBatch$$' -fuzztime 60s ./appliance/kafka/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestFrame$$' -fuzztime 60s ./appliance/kafka/
	set -o pipefail; KATKA_TORTURE_ROUNDS=500 $(GO) test -count=1 -timeout 90m -v -run Torture ./appliance/e2e/ 2>&1 | grep -E '^(torture|--- |ok|FAIL|PASS|panic)|_test.go:'

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m ./appliance/storage/ ./appliance/broker/
	$(GO) test -run '^$$' -bench . -timeout 10m ./sensors/mqtt/

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka-linux-arm64 $(PKG)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka-linux-armv7 $(PKG)

clean:
	rm -rf bin
