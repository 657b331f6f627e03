# apisix-identity-runner. `make run` and `make test` are the two commands the
# README leads with.

SOCKET ?= /tmp/apisix-identity-runner.sock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)

DIST ?= dist
PLATFORMS ?= linux/amd64 linux/arm64
IMAGE ?= apisix-identity-runner

.PHONY: build run test demo bench bench-e2e bench-e2e-quick fuzz reliability mutate clean release release-binaries release-image

build:
	go build -trimpath -ldflags "-X main.version=$(VERSION) -X main.revision=$(REVISION)" -o bin/go-runner ./cmd/go-runner

# The runner as APISIX would start it, with the in-process cache (no REDIS_URL)
# and a key made at start. Point ext-plugin.path_for_test at $(SOCKET).
run: build
	@echo "go-runner on unix:$(SOCKET): drive it without APISIX with test/apisix's Gateway (test/apisix/example_test.go) or point APISIX's ext-plugin.path_for_test at it; without KEYCLOAK_URL orgsync routes answer 500 (userinfo works alone)"
	APISIX_LISTEN_ADDRESS=unix:$(SOCKET) RUNNER_LOG_LEVEL=$${RUNNER_LOG_LEVEL:-info} ./bin/go-runner run

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	go test -run '^$$' -bench . -benchmem ./plugins/... ./cache/...

# The real runner binary over its unix socket, driven as APISIX drives it,
# against the test Keycloak (scripts/keycloak.sh start; KEYCLOAK_TEST_ENV_FILE
# names its env file when it is not .work/keycloak.env) and a Redis of its own
# (redis-server on the PATH): a browser request and an API request as
# openid-connect hands them on, every figure a ratio against the no-op chain
# given the same request. About 25 minutes; BENCH_ARGS=-quick (or make
# bench-e2e-quick) is the smoke run CI makes. Method and figures: docs/benchmarks.md.
bench-e2e:
	go run ./test/bench $(BENCH_ARGS)

bench-e2e-quick:
	go run ./test/bench -quick -out .work/bench-e2e-quick.md $(BENCH_ARGS)

# docs/reliability.md: the fault suite's long form and the soak (SOAK_USERS, SOAK_DURATION), against
# the test Redis and Keycloak; the figures go to .work/reliability-figures.md. CI runs the short
# form with the other integration tests.
reliability:
	set -a; . .work/redis.env; . .work/keycloak.env; set +a; \
	rm -f .work/reliability-figures.md; \
	RELIABILITY_LONG=1 RELIABILITY_SOAK=1 RELIABILITY_REPORT=$(CURDIR)/.work/reliability-figures.md \
	go test -tags integration -count=1 -timeout 90m -run 'TestReliability' -v ./test/integration/; \
	status=$$?; cat .work/reliability-figures.md; exit $$status

# test/mutate/mutations.txt, each mutation applied alone (through go test
# -overlay: the checkout is never changed) against the unit tests that must
# catch it; fails when one survives. About 10 minutes on 2 cores;
# MUTATE_ARGS=-run REGEXP picks some by id. The list's format and last
# result: test/mutate/README.md.
mutate:
	if [ -f .work/redis.env ]; then set -a; . .work/redis.env; set +a; fi; \
	go run ./test/mutate $(MUTATE_ARGS)

fuzz:
	go test -run '^$$' -fuzz FuzzDecodeUserinfo -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzStrip -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzRequestFilter -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/orgsync/
	go test -run '^$$' -fuzz FuzzVerifyToken -fuzztime 30s ./verify/

# Static binaries for each platform (CGO off, so no libc is needed: they run in
# any image, the official APISIX one included), their SHA-256 sums, and the
# container images when Docker is there.
release: release-binaries release-image

release-binaries:
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)" \
			-o $(DIST)/go-runner-$(VERSION)-$$os-$$arch ./cmd/go-runner; \
	done
	cd $(DIST) && sha256sum go-runner-* > SHA256SUMS && cat SHA256SUMS

# APISIX with the runner (the Dockerfile's default target) and the runner
# alone for an init container (target runner), for both platforms.
release-image:
	@if ! docker info >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then \
		echo "release-image: no Docker engine with buildx here: run make release-image where one runs"; exit 0; fi; \
	set -e; platforms=$$(echo $(PLATFORMS) | tr ' ' ','); \
	docker buildx build --platform $$platforms --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(VERSION) . ; \
	docker buildx build --platform $$platforms --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --target runner -t $(IMAGE)-binary:$(VERSION) .

clean:
	rm -rf bin $(DIST)
