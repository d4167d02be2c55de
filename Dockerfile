# syntax=docker/dockerfile:1

# Build stage: a static binary, so the final image needs no libc.
FROM golang:1.26 AS build
WORKDIR /src
# Module downloads first, so a source change does not refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# MAIN_PKG is the package holding main.go (the repo root by default).
ARG MAIN_PKG=.
# -tags nodev leaves out the embedded stand-ins of `seckill dev` (go-mysql-server,
# miniredis, kfake, logrus): the image always talks to real Redis, Kafka and
# MySQL, and an "embedded" address is refused at startup. The default build
# (go run . dev) keeps them.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -tags nodev -trimpath -ldflags "-s -w" -o /out/seckill ${MAIN_PKG}

# Final stage: alpine rather than distroless so compose healthchecks can call
# busybox wget against /readyz; the process runs as an unprivileged user.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 seckill \
 && adduser -S -D -H -u 10001 -G seckill seckill
WORKDIR /app
COPY --from=build /out/seckill /app/seckill
COPY configs/seckill.yaml /app/configs/seckill.yaml
ENV SECKILL_CONFIG=/app/configs/seckill.yaml
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD wget -q -O /dev/null http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["/app/seckill"]
CMD ["serve"]
