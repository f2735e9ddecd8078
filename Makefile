# shadowtee - run `make` for the list of targets.

GO        ?= go
CLANG     ?= clang-16
STRIP     ?= llvm-strip-16
BIN       := bin/shadowtee
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/shadowtee/shadowtee/cli.Version=$(VERSION)
FUZZTIME  ?= 10s
# Fuzz targets as package:FuzzName.
FUZZ      := ./reassembly:FuzzReassembly ./httpframe:FuzzHTTPFraming ./h2frame:FuzzH2Framing \
             ./pcapfile:FuzzReadCapture ./compare:FuzzJSONDiff

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/shadowtee (static, no C toolchain needed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

.PHONY: generate
generate: ## recompile bpf/tee.c into the committed bpf/tee_bpfel.{go,o} (needs clang-16)
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) $(GO) generate ./bpf/

.PHONY: check-generate
check-generate: generate ## fail if the committed BPF objects differ from what the C source compiles to
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: committed objects do not match tee.c; run make generate and commit" >&2; exit 1; }

.PHONY: test
test: ## vet, run every test (root tiers need root), then fuzz each target for $(FUZZTIME)
	$(GO) vet ./...
	$(GO) vet -tags nodemo ./cli/
	cd testdata/h2peer && $(GO) vet .
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

.PHONY: test-race
test-race: ## run the pure-Go packages under the race detector
	$(GO) test -count=1 -race ./reassembly/ ./httpframe/ ./h2frame/ ./shadow/ ./compare/ ./pcapfile/ ./config/ ./agent/

.PHONY: e2e
e2e: ## run only the end-to-end tests in network namespaces (root)
	$(GO) test -count=1 -run 'E2E' -v ./e2e/

.PHONY: fuzz
fuzz: ## fuzz each target for FUZZTIME (default 10s; e.g. make fuzz FUZZTIME=10m)
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg; \
	done

BENCH_ARGS ?=

.PHONY: bench
bench: build ## live benchmark in network namespaces (root, ~4 min): baseline vs shadowtee (vs --peer); BENCH_ARGS=--quick for a smoke run
	$(GO) build -o bin/shadowtee-bench ./bench
	bin/shadowtee-bench --binary $(BIN) --out bin/bench.md --json bin/bench.json $(BENCH_ARGS)

.PHONY: bench-go
bench-go: ## run the Go benchmarks of the hot path
	$(GO) test -run '^$$' -bench . -benchmem ./reassembly/ ./httpframe/ ./h2frame/ ./shadow/ ./compare/ ./pcapfile/ ./agent/

.PHONY: testdata
testdata: ## rebuild testdata/ and pcapfile/testdata (root): synthesised and recorded captures, then the golden files
	$(GO) run ./internal/mkcaptures -out testdata/captures
	pcapfile/testdata/make-captures.sh
	SHADOWTEE_UPDATE_TESTDATA=1 $(GO) test -count=1 -run '^TestE2ERecordTestdata$$' ./e2e/
	$(GO) test -count=1 -run '^TestReplayGolden$$' ./agent/ -args -update

.PHONY: demo
demo: build ## build, then run the sandboxed demo (root)
	sudo $(BIN) demo

.PHONY: image
image: ## build the container image shadowtee:$(VERSION) (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t shadowtee:$(VERSION) .

.PHONY: clean
clean: ## remove build output
	rm -rf bin
