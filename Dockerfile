# The openlivesync binary in a minimal image.
#
#   docker build -t openlivesync .
#   docker run -p 3000:3000 -v openlivesync-data:/data openlivesync
#
# Every flag is also an environment variable (OPENLIVESYNC_<FLAG>), e.g.
# -e OPENLIVESYNC_STORE=postgres://… -e OPENLIVESYNC_REDIS=redis://…
# See docker-compose.yml for a cluster of two nodes.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: their layer is reused until go.mod or go.sum changes.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build the README documents: static (the SQLite driver is pure Go),
# without the builder's paths.
RUN CGO_ENABLED=0 go build -trimpath -o openlivesync ./cmd/openlivesync
# The SQLite store's directory, made here because the final image has no
# shell; owned by the final stage's user.
RUN mkdir -p /data

# No shell, no package manager: only the binary, CA certificates (for
# rediss://, postgres with TLS, a JWKS URL) and time zone data.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/openlivesync /openlivesync
COPY --from=build --chown=65532:65532 /data /data
# distroless's "nonroot", by number so that runtimes checking for a
# non-root user (Kubernetes' runAsNonRoot) can tell.
USER 65532:65532
# Chat persists in the volume unless OPENLIVESYNC_STORE names a database.
ENV OPENLIVESYNC_STORE=sqlite:/data/chat.db
VOLUME /data
EXPOSE 3000
# No curl or wget here: the binary checks itself, at the address
# OPENLIVESYNC_ADDR sets (loopback for :3000), over https:// when
# OPENLIVESYNC_TLS_CERT is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
	CMD ["/openlivesync", "-healthcheck", "self"]
# SIGTERM (docker stop) closes clients with 1001 and stores pending chat.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/openlivesync"]
