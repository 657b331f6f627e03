# syntax=docker/dockerfile:1
#
# Targets:
#   apisix         (default) the official APISIX image with go-runner in it; APISIX starts the runner itself
#                  (conf/config.yaml ext-plugin.cmd).
#   upstream       the demo app of docker-compose.yml (demo/upstream).
#   runner         the runner binary alone, for an init container that copies it next to an unchanged APISIX
#                  image (Kubernetes: deploy/helm/values.yaml).
#
#   docker build -t apisix-identity-runner .
#   docker build --target upstream -t apisix-identity-runner-demo-upstream .
#   docker build --target runner -t apisix-identity-runner-binary .
#
# Base images are pinned: golang 1.26 on Debian bookworm (go.mod says go 1.26) and APISIX 3.18.0 on Debian
# (3.18.0 adds X-Raw-ID-Token and fixes the {} encoding of empty arrays; 3.17 strips forged X-Userinfo).

ARG GO_IMAGE=golang:1.26-bookworm
ARG APISIX_IMAGE=apache/apisix:3.18.0-debian
ARG BUSYBOX_IMAGE=busybox:1.37.0

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
# The patched runner library go.mod's replace points at (third_party/apisix-go-plugin-runner/PATCHES.md).
COPY third_party ./third_party
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only the Go sources the two binaries are built from (test/deploy checks that this list covers every package
# they import), so local state such as .work/ never enters the build.
COPY cmd ./cmd
COPY internal ./internal
COPY plugins ./plugins
COPY cache ./cache
COPY keycloak ./keycloak
COPY verify ./verify
COPY demo ./demo
ARG VERSION=dev
# The commit the image is built from (make release-image passes it): apisix_identity_build_info{revision}.
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /go-runner ./cmd/go-runner && \
    go build -trimpath -ldflags "-s -w" -o /demo-upstream ./demo/upstream && \
    /go-runner version

# The demo upstream: one static binary, which is also its own health check (the image has no shell).
FROM scratch AS upstream
COPY --from=build /demo-upstream /demo-upstream
USER 65534:65534
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["/demo-upstream", "healthcheck"]
ENTRYPOINT ["/demo-upstream"]

# The runner binary for an init container: `cp /go-runner <shared volume>/go-runner` (busybox gives it cp).
FROM ${BUSYBOX_IMAGE} AS runner
COPY --from=build --chmod=0755 /go-runner /go-runner
USER 65534:65534
ENTRYPOINT ["/go-runner"]

# APISIX with the runner. The image runs as user apisix (uid 636); the runner inherits it.
FROM ${APISIX_IMAGE} AS apisix
COPY --from=build --chmod=0755 /go-runner /usr/local/apisix/go-runner
COPY --chmod=0755 conf/apisix-healthcheck.sh /usr/local/apisix/apisix-healthcheck.sh
# Standalone mode: the entrypoint skips etcd; conf/config.yaml and conf/apisix.yaml are mounted over the
# image's files (see docker-compose.yml) or copied in by a derived image.
ENV APISIX_STAND_ALONE=true
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=20 CMD ["/usr/local/apisix/apisix-healthcheck.sh"]
