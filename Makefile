# katka: two commands do everything. `make run` builds and starts katka on its
# default config; `make test` installs what the tests need (as root) and runs them.

SHELL    := /bin/bash
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKG      := ./appliance/cmd/katka
# Debian packages the test suite drives for real (kcat = librdkafka; the
# Python plugin example runs on Debian's python3 with python3-grpcio; the e2e
# tests of Kafka's own client library drive python3-confluent-kafka; the auth
# tests install kafkajs from npm into the user cache and run it on node; the OPC
# UA tests install node-opcua the same way (npm ci from the lock committed in
# sensors/opcua/testdata/uaserver) and run it as their server; the cell
# tests build network namespaces with iproute2's ip; the firmware e2e tests drive
# curl and mosquitto_sub from mosquitto-clients; the web console's tests drive
# headless chromium through chromedp; the packaging tests run systemd-analyze
# from systemd and install the .deb with dpkg, whose postinst needs adduser, and
# check it with lintian; make test-arm runs the ARM binaries with
# qemu-user-static).
# Each tool as tool:package. Only the packages of missing tools are installed: a
# machine with node and npm from elsewhere (NodeSource's nodejs carries its own
# npm and conflicts with Debian's npm package) must not get Debian's on top.
TEST_TOOL_PKGS := kcat:kcat mosquitto:mosquitto mosquitto_sub:mosquitto-clients curl:curl node:nodejs npm:npm ip:iproute2 chromium:chromium systemd-analyze:systemd adduser:adduser lintian:lintian qemu-aarch64-static:qemu-user-static qemu-arm-static:qemu-user-static
TEST_TOOLS := $(foreach tp,$(TEST_TOOL_PKGS),$(firstword $(subst :, ,$(tp))))
TEST_PKGS := bash-completion python3-grpcio python3-confluent-kafka $(sort $(foreach tp,$(TEST_TOOL_PKGS),$(lastword $(subst :, ,$(tp)))))
PY_GRPC   := /usr/bin/python3 -c 'import grpc'
PY_CONFLUENT := /usr/bin/python3 -c 'import confluent_kafka'

.PHONY: build run test test-deps test-long bench cross clean plugins package test-arm

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka $(PKG)

run: build
	bin/katka serve --config configs/katka.yaml

# test-deps installs missing tools when root; with CI=true a tool that is still
# missing fails the run instead of letting tests skip.
test-deps:
	@missing=""; pkgs=""; for tp in $(TEST_TOOL_PKGS); do t=$${tp%%:*}; \
		command -v $$t >/dev/null 2>&1 || { missing="$$missing $$t"; case " $$pkgs " in *" $${tp#*:} "*) ;; *) pkgs="$$pkgs $${tp#*:}";; esac; }; done; \
	$(PY_GRPC) >/dev/null 2>&1 || { missing="$$missing python3-grpcio"; pkgs="$$pkgs python3-grpcio"; }; \
	$(PY_CONFLUENT) >/dev/null 2>&1 || { missing="$$missing python3-confluent-kafka"; pkgs="$$pkgs python3-confluent-kafka"; }; \
	[ -f /usr/share/bash-completion/bash_completion ] || { missing="$$missing bash-completion"; pkgs="$$pkgs bash-completion"; }; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$pkgs (for$$missing)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs) >/dev/null || exit 1; \
	fi; \
	for t in $(TEST_TOOLS); do \
		if ! command -v $$t >/dev/null 2>&1; then \
			if [ "$$CI" = "true" ]; then echo "FAIL: $$t is missing and CI=true"; exit 1; fi; \
			echo "warning: $$t missing; tests that need it will skip (run as root to install)"; \
		fi; \
	done; \
	if [ ! -f /usr/share/bash-completion/bash_completion ] && [ "$$CI" = "true" ]; then echo "FAIL: bash-completion is missing and CI=true"; exit 1; fi; \
	if ! $(PY_GRPC) >/dev/null 2>&1; then \
		if [ "$$CI" = "true" ]; then echo "FAIL: python3-grpcio is missing and CI=true"; exit 1; fi; \
		echo "warning: python3-grpcio missing; the Python plugin test will skip"; \
	fi; \
	if ! $(PY_CONFLUENT) >/dev/null 2>&1; then \
		if [ "$$CI" = "true" ]; then echo "FAIL: python3-confluent-kafka is missing and CI=true"; exit 1; fi; \
		echo "warning: python3-confluent-kafka missing; the confluent-kafka-python e2e tests will skip"; \
	fi

# Every package runs under the race detector. The unit packages (with the two
# vendored libraries), the e2e crash torture and the rest of the e2e package
# run side by side: the e2e tests spend most of their time waiting for katka
# processes and fsyncs, which the others fill; the torture and unit output is
# printed when all are done. The e2e package runs
# with -v so the torture summary (rounds, acknowledged records, lost, phantoms,
# damage kinds) and each test's time are printed; the rest stays quiet.
E2E_FILTER := '^(torture|--- |ok|FAIL|PASS|panic|WARNING: DATA RACE|running tests:|\s+Test[A-Za-z0-9_/]* \()|_test.go:'
test: test-deps
	@set -o pipefail; start=$$(date +%s); unitlog=$$(mktemp); torturelog=$$(mktemp); vetlog=$$(mktemp); \
	$(GO) vet ./... >$$vetlog 2>&1 & vet=$$!; \
	( $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /appliance/e2e) && \
	  (cd third_party/tidwall-wal && $(GO) test -race -count=1 .) && \
	  (cd third_party/franz-go-kmsg && $(GO) test -race -count=1 ./...) ) >$$unitlog 2>&1 & unit=$$!; \
	$(GO) test -race -count=1 -timeout 25m -v -run 'TestTorture' ./appliance/e2e/ 2>&1 | grep -E $(E2E_FILTER) >$$torturelog & torture=$$!; \
	$(GO) test -race -count=1 -timeout 25m -v -skip 'TestTorture' ./appliance/e2e/ 2>&1 | grep -E $(E2E_FILTER); e2e=$$?; \
	wait $$torture; tt=$$?; echo "== e2e torture"; cat $$torturelog; rm -f $$torturelog; \
	wait $$unit; u=$$?; echo "== unit packages"; cat $$unitlog; rm -f $$unitlog; \
	wait $$vet; v=$$?; echo "== go vet"; cat $$vetlog; rm -f $$vetlog; \
	echo "make test: vet rc=$$v, unit rc=$$u, e2e rc=$$e2e, e2e torture rc=$$tt, $$(( $$(date +%s) - start )) s"; \
	[ $$v = 0 ] && [ $$u = 0 ] && [ $$e2e = 0 ] && [ $$tt = 0 ]
	$(MAKE) --no-print-directory test-arm

# The long torture and soak runs (minutes to an hour); figures go into notes.
test-long: test-deps
	KATKA_LONG=1 $(GO) test -count=1 -timeout 20m -run CrashNoLoss ./sensors/mqtt/
	$(GO) test -run '^$$' -fuzz '^FuzzRecordBatch$$' -fuzztime 60s ./appliance/kafka/
	$(GO) test -run '^$$' -fuzz '^FuzzRecordBatch$$' -fuzztime 60s ./appliance/recordbatch/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestFrame$$' -fuzztime 60s ./appliance/kafka/
	$(MAKE) --no-print-directory test-arm ARM_PKGS="./appliance/storage/ ./appliance/broker/ ./appliance/kafka/" \
		ARM_E2E='TestKafkaKcatRoundTrip$$$$|TestSystemdNotify$$$$|TestTortureCrash$$$$|TestTortureBitRot$$$$'
	set -o pipefail; KATKA_TORTURE_ROUNDS=500 $(GO) test -count=1 -timeout 90m -v -run Torture ./appliance/e2e/ 2>&1 | grep -E '^(torture|--- |ok|FAIL|PASS|panic)|_test.go:'
	set -o pipefail; KATKA_FAULT_SECONDS=1200 $(GO) test -count=1 -timeout 40m -v -run 'TestCellReplicationFaults$$' ./appliance/e2e/ 2>&1 | grep -E '^(--- |ok|FAIL|PASS|panic)|_test.go:'

bench: test-deps
	@# katka vs NATS JetStream (nats-server installed into bin/ on first use; kcat and
	@# mosquitto by test-deps), MQTT
	@# drain, raw limits, footprint and CPU profiles; writes appliance/bench/README.md.
	@# The full go benchmark matrices: go test -run '^$$' -bench . ./appliance/storage/ ./appliance/broker/ ./sensors/mqtt/
	$(MAKE) --no-print-directory build
	@start=$$(date +%s); $(GO) run ./appliance/bench/cmd/katkabench && echo "make bench took $$(( $$(date +%s) - start )) s"

# plugins builds the example plugins into bin/plugins/<name>/, each with its
# manifest.yaml (sha256 of the binary), for configs/plugins-example.yaml.
EXAMPLE_PLUGINS := json-route:partitioner:jsonroute file-tail:source:filetail window-avg:processor:windowavg file-sink:sink:filesink
plugins:
	@set -e; for p in $(EXAMPLE_PLUGINS); do \
		IFS=: read -r name kind pkg <<< "$$p"; mkdir -p bin/plugins/$$name; \
		CGO_ENABLED=0 $(GO) build -trimpath -o bin/plugins/$$name/$$name ./plugins/examples/$$pkg; \
		printf 'name: %s\nkind: %s\nversion: %s\ncommand: %s\nsha256: %s\n' $$name $$kind $(VERSION) $$name \
			$$(sha256sum bin/plugins/$$name/$$name | cut -d' ' -f1) > bin/plugins/$$name/manifest.yaml; \
		echo "bin/plugins/$$name ($$kind)"; \
	done

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka-linux-arm64 $(PKG)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/katka-linux-armv7 $(PKG)

# test-arm runs katka built for arm64 and armv7 (32-bit: atomics, alignment,
# int overflow) under qemu-user, no board needed: the storage package's tests,
# then the real binaries through e2e tests with KATKA_BIN set to a qemu
# wrapper: kcat producing and consuming 10,000 records, systemd notify, 10
# crash-torture rounds (SIGKILL, damaged tails, full read-back). make test-long
# adds the broker and kafka package tests and the bit-rot checks (about 75 s
# more per package and arch). -trimpath as in make cross, so the standard
# library compiled for ARM there is reused; -race on the host side as in
# make test, so the e2e package build is reused. Timings in README.md ("ARM").
ARM_PKGS := ./appliance/storage/
ARM_E2E  := TestKafkaKcatRoundTrip$$|TestSystemdNotify$$|TestTortureCrash$$
test-arm: cross
	@set -eo pipefail; for a in arm64:arm64::aarch64 armv7:arm:7:arm; do \
		IFS=: read -r name goarch goarm qemu <<< "$$a"; start=$$(date +%s); \
		printf '#!/bin/sh\nexec qemu-%s-static "$$(dirname "$$0")/katka-linux-%s" "$$@"\n' $$qemu $$name > bin/katka-linux-$$name-qemu; \
		chmod +x bin/katka-linux-$$name-qemu; \
		echo "test-arm $$name: $(ARM_PKGS) and e2e $(ARM_E2E) under qemu-$$qemu-static"; \
		KATKA_TEST_EXEC=qemu-$$qemu-static CGO_ENABLED=0 GOARCH=$$goarch GOARM=$$goarm $(GO) test -trimpath -count=1 -timeout 10m -exec qemu-$$qemu-static $(ARM_PKGS); \
		KATKA_BIN=$(CURDIR)/bin/katka-linux-$$name-qemu KATKA_TORTURE_ROUNDS=10 $(GO) test -race -count=1 -timeout 8m -v -run '$(ARM_E2E)' ./appliance/e2e/ 2>&1 \
			| grep -E '^(torture summary|--- |ok|FAIL|PASS|panic)|kcat produced'; \
		echo "test-arm $$name: $$(( $$(date +%s) - start )) s"; \
	done

# package builds bin/deb/katka_<version>_{amd64,arm64,armhf}.deb with nfpm
# (packaging/, used as a Go library): static binary, systemd unit, the
# /etc/katka/katka.yaml conffile, maintainer scripts.
package: build cross
	$(GO) run ./packaging/cmd/mkdeb --version $(VERSION) --mtime $$(git log -1 --format=%ct 2>/dev/null || echo 0) --out bin/deb \
		amd64=bin/katka arm64=bin/katka-linux-arm64 armhf=bin/katka-linux-armv7

clean:
	rm -rf bin

# proto regenerates plugins/proto/*.pb.go with pinned tools: protoc from Debian's
# protobuf-compiler (3.21), protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.0;
# and the Python example's stubs (messages by the same protoc, services by
# Debian's python3-grpc-tools 1.14). As root it installs the Debian packages.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
.PHONY: proto
proto:
	@if ! command -v protoc >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import grpc_tools' 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler python3-grpc-tools) >/dev/null || exit 1; \
		else echo "FAIL: protoc or grpc_tools missing: apt-get install protobuf-compiler python3-grpc-tools"; exit 1; fi; \
	fi
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I plugins/proto --go_out=plugins/proto --go_opt=paths=source_relative \
		--go-grpc_out=plugins/proto --go-grpc_opt=paths=source_relative plugins/proto/katka_plugin.proto
	protoc -I plugins/proto --python_out=plugins/examples/pyupper plugins/proto/katka_plugin.proto
	/usr/bin/python3 -m grpc_tools.protoc -I plugins/proto --grpc_python_out=plugins/examples/pyupper plugins/proto/katka_plugin.proto
