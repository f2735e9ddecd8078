# syntax=docker/dockerfile:1
#
# The shadowtee agent image: docker build -t shadowtee:$(VERSION) .
# No C toolchain: the compiled BPF object (bpf/tee_bpfel.o) is committed.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Set by buildx for each platform of a multi-platform build.
ARG TARGETOS TARGETARCH
# -tags nodemo leaves out `shadowtee demo` (its sandbox and two go-httpbin
# servers have no place on a node): 1.1 MiB less of a 15.7 MiB binary.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -tags nodemo -trimpath \
      -ldflags "-s -w -X github.com/shadowtee/shadowtee/cli.Version=${VERSION}" \
      -o /out/shadowtee .

# Static binary, nothing else: no shell, no package manager. The image runs
# as a non-root user by default; the DaemonSet runs it as root with only the
# BPF capabilities (see deploy/base/daemonset.yaml).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shadowtee /shadowtee
ENTRYPOINT ["/shadowtee"]
