# apisix-identity-runner. `make run` and `make test` are the two commands the
# README leads with.

SOCKET ?= /tmp/apisix-identity-runner.sock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test demo bench bench-e2e fuzz reliability clean

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

# Through the real runner binary, against the test Redis and Keycloak (start
# them with scripts/redis.sh start and scripts/keycloak.sh start).
bench-e2e:
	set -a; . .work/redis.env; . .work/keycloak.env; set +a; \
	go test -tags integration -run '^$$' -bench BenchmarkRunner -benchtime 3000x ./test/integration/

# RELIABILITY.md: the fault suite's long form and the soak (SOAK_USERS, SOAK_DURATION), against
# the test Redis and Keycloak; the figures go to .work/reliability-figures.md. CI runs the short
# form with the other integration tests.
reliability:
	set -a; . .work/redis.env; . .work/keycloak.env; set +a; \
	rm -f .work/reliability-figures.md; \
	RELIABILITY_LONG=1 RELIABILITY_SOAK=1 RELIABILITY_REPORT=$(CURDIR)/.work/reliability-figures.md \
	go test -tags integration -count=1 -timeout 90m -run 'TestReliability' -v ./test/integration/; \
	status=$$?; cat .work/reliability-figures.md; exit $$status

fuzz:
	go test -run '^$$' -fuzz FuzzDecodeUserinfo -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzStrip -fuzztime 30s ./internal/identity/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzRequestFilter -fuzztime 30s ./plugins/userinfo/
	go test -run '^$$' -fuzz FuzzParseConf -fuzztime 30s ./plugins/orgsync/

clean:
	rm -rf bin
