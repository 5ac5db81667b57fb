# vpcflow — see README.md
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
BIN := bin/vpcflow

# Version information linked into the binary (buildinfo package; `vpcflow
# version`). A plain `go build` falls back to Go's own build information.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE := $(shell date -u $${SOURCE_DATE_EPOCH:+-d @$$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/vpcflow/vpcflow/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(BUILD_DATE)

.PHONY: all build deps test unit fuzz e2e lint demo clean soak package package-test

all: build

# deps: the Debian packages the lab needs (apt-get, only what is missing).
deps:
	bash scripts/install-deps.sh

# build: a static binary (CGO_ENABLED=0: no libc, so no GLIBC symbol
# versions; it runs on any x86-64 Linux, glibc 2.17-era hosts included),
# without the symbol table and DWARF (-s -w: 19 instead of 27 MB; panics
# still print file:line).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vpcflow

# package: dist/vpcflow_<version>_<arch>.deb with dpkg-deb (scripts/package-deb.sh;
# the binary, the systemd units, commented examples in /etc/vpcflow).
DIST := dist
package: build
	VERSION="$(VERSION)" bash scripts/package-deb.sh $(BIN) $(DIST)

# package-test: builds the package and checks it (contents, dpkg -x into a
# temporary root, the extracted vpcflow version, systemd-analyze verify,
# the controller unit's ExecStart). It compresses with gzip (DEB_COMPRESS)
# to stay fast; make unit runs it too (./cmd/...).
package-test:
	$(GO) test -count=1 -v -run '^TestPackage' ./cmd/vpcflow/

# lint: gofmt, go vet, go.mod tidy.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

# unit: pure logic, fake switches, race detector on the concurrent packages.
# The race run includes a few seeds of the cluster fault suite
# (VPCFLOW_FAULT_SEEDS_RACE, default 16); the 200 CI seeds run without the
# race detector (about 1.5 min on 2 cores; controller/faultsuite_test.go).
unit:
	$(GO) test -count=1 ./flows/... ./cmd/...
	$(GO) test -count=1 -race ./controller/... ./tunnel/... ./cluster/... ./cloudstack/...
	$(GO) test -count=1 -timeout 15m -run '^TestFaultSuite$$' ./controller/

# soak: the cluster fault suite over many more seeds (SOAK_SEEDS, default
# 2000; failing seeds' event logs in $$TMPDIR/vpcflow-faultsuite).
SOAK_SEEDS ?= 2000
soak:
	VPCFLOW_FAULT_SEEDS=$(SOAK_SEEDS) $(GO) test -count=1 -timeout 3h -run '^TestFaultSuite$$' -v ./controller/ 2>&1 | grep -E '^(=== RUN|--- FAIL|--- SKIP|ok|FAIL|panic)|faultsuite_test.go' ; exit $${PIPESTATUS[0]}

# fuzz: every fuzz target for a bounded time (hostile input: blueprint
# parsing, the OpenFlow reader, flow-stats decoding, CloudStack ACL items,
# cluster gossip states). Regression inputs live
# in each package's testdata/fuzz/.
FUZZTIME ?= 15s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./flows/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFlowStats$$' -fuzztime $(FUZZTIME) ./flows/
	$(GO) test -run '^$$' -fuzz '^FuzzOFRead$$' -fuzztime $(FUZZTIME) ./controller/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./cluster/
	$(GO) test -run '^$$' -fuzz '^FuzzMapACLItem$$' -fuzztime $(FUZZTIME) ./cloudstack/

# e2e: real ovs-vswitchd in network namespaces (needs root and Open vSwitch;
# VPCFLOW_E2E=0 skips it explicitly).
e2e: build
	VPCFLOW_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -v ./examples/... 2>&1 | tee /tmp/vpcflow-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

# test: everything CI runs (the README's test command).
test: deps lint unit fuzz e2e

# demo: a real userspace-OVS lab with 3 hypervisors driven by the controller.
demo: deps build
	$(BIN) demo

clean:
	rm -rf bin dist
