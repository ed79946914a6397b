# Strata: build, lab, tests and benchmarks. Run as root on Debian 12.
export PATH := /usr/local/go/bin:$(PATH)
# bash with pipefail: a failing command on the left of a pipe fails the recipe.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/strata-infra/strata/pkg/version.Version=$(VERSION)
BINS    := strata-coordinator strata-agent strata-rbd stratactl strata-lab strata-bench
CMDS    := ./coordinator/cmd/strata-coordinator ./agent/cmd/strata-agent ./agent/cmd/strata-rbd ./coordinator/cmd/stratactl ./lab/cmd/strata-lab ./coordinator/cmd/strata-bench
# Build tags: `pacific` compiles the Ceph (RBD) support with go-ceph against
# Debian 12's librados/librbd 16.2 (cgo; librados-dev, librbd-dev) into
# strata-rbd, the helper process strata-agent and stratactl start for their
# Ceph connections (no other binary links the Ceph libraries). Without it
# strata-rbd only says so, and the storage subsystem reports no Ceph support.
GOTAGS  ?= pacific
# The whole suite, TCG guests included, stays well under this.
TEST_TIMEOUT ?= 45m

.PHONY: all deps build test lab lab-down bench fmt vet clean

all: build

## deps: install the apt packages and Go modules the build, lab and tests need
deps:
	bash .ci/deps.sh

## build: the binaries, into bin/
build:
	@mkdir -p bin
	$(GO) build -tags "$(GOTAGS)" -ldflags "$(LDFLAGS)" -o bin/ $(CMDS)

## test: the whole suite (root runs the kernel-guest, lab, libvirt and Ceph tests
## too), then a sweep of what test processes that are gone left behind
## (a -timeout or a panic skips t.Cleanup); it prints what it removed.
## STRATA_STRICT=1 fails tests whose real parts are missing instead of
## skipping them (.ci/run sets it); STRATA_TIMEOUT_FACTOR scales every wait.
test:
	$(GO) vet -tags "$(GOTAGS)" ./...
	status=0; $(GO) test -tags "$(GOTAGS)" -count=1 -timeout $(TEST_TIMEOUT) ./... || status=$$?; \
	if [ "$$(id -u)" = 0 ]; then $(GO) run ./internal/testenv/cmd/strata-test-sweep; fi; \
	exit $$status

## lab: coordinator + 3 agents in namespaces strata-lab-h1..h3, a libvirtd per
## host and a single-node Ceph on the lab bridge (.lab/ceph), then the demo
lab: build
	bin/strata-lab up --demo testdata/lab/demo.yaml

## lab-down: stop every lab process (the guests' qemus through their
## libvirtd or by pid, Ceph's daemons by their pid files), remove its
## namespaces, links and state
lab-down:
	@test -x bin/strata-lab || $(MAKE) build
	bin/strata-lab down

## bench: one "BENCH <name> <value> <unit>" line per figure
bench: build
	bin/strata-bench
	$(GO) test -tags "$(GOTAGS)" -run '^$$' -bench . -benchtime 3x ./agent/... ./pkg/rbd/ ./lab/... ./coordinator/store/ 2>&1 | bin/strata-bench gotest
	$(GO) test -tags "$(GOTAGS)" -run '^$$' -bench HALeaderLossStall -benchtime 1x ./coordinator/hatest/ 2>&1 | bin/strata-bench gotest

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet -tags "$(GOTAGS)" ./...

clean:
	rm -rf bin build

## packages: strata-agent, strata-coordinator, stratactl as .deb and .rpm into
## PKG_DIR (version from git: packaging/version.sh; PKG_VERSION overrides)
PKG_DIR     ?= build/packages
PKG_VERSION ?= $(shell packaging/version.sh)
.PHONY: packages
packages:
	GOTAGS="$(GOTAGS)" VERSION=$(PKG_VERSION) bash packaging/build.sh $(PKG_DIR)
