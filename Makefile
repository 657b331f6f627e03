# apisix-identity-runner. `make run` and `make test` are the two commands the
# README leads with.

SOCKET ?= /tmp/apisix-identity-runner.sock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test demo bench bench-e2e fuzz clean

build:
	go build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/go-runner ./cmd/go-runner

# The runner as APISIX would start it, with the in-process cache (no REDIS_URL)
# and a key made at start. Point ext-plugin.path_for_test at $(SOCKET).
run: build
	APISIX_LISTEN_ADDRESS=unix:$(SOCKET) RUNNER_LOG_LEVEL=$${RUNNER_LOG_LEVEL:-info} ./bin/go-runner run

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	go test -run '^$$' -bench . -benchmem ./plugins/... ./cache/...

# The real runner binary over its unix socket, driven as APISIX drives it,
# against the test Keycloak (scripts/keycloak.sh start) and a Redis of its own
# (redis-server on the PATH). About 12 minutes; BENCH_ARGS=-quick is a ~30 s
# smoke run. Method and figures: BENCHMARKS.md.
bench-e2e:
	go run ./test/bench $(BENCH_ARGS)

fuzz:
	go test -run '^$$' -fuzz FuzzDecodeUserinfo -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzStrip -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzRequestFilter -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/orgsync/
	go test -run '^$$' -fuzz FuzzVerifyToken -fuzztime 30s ./verify/

clean:
	rm -rf bin
