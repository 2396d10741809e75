# The fleetbench image: `docker build -t fleetbench .` from the repository's root.
#
# Two stages: the build (Rust on Debian 12) and a runtime of the binary alone on distroless
# cc-debian12 (glibc, libgcc, CA certificates, tzdata; no shell, no package manager), as the
# distroless "nonroot" user (uid 65532). `fleetbench` is the entrypoint: the arguments of
# `docker run IMAGE ...`, or of a Kubernetes container, are fleetbench's.
#
# glibc rather than a static musl build: musl's allocator is slow under many threads, and a
# load generator must not be what limits a test.

FROM rust:1.88-bookworm AS build
# The revision reports name (the build context has no .git):
#   docker build --build-arg FLEETBENCH_GIT_REV=$(git rev-parse --short=12 HEAD) -t fleetbench .
ARG FLEETBENCH_GIT_REV=unknown
WORKDIR /src
COPY . .
RUN FLEETBENCH_GIT_REV="$FLEETBENCH_GIT_REV" cargo build --release --locked -p fleetbench \
 && strip target/release/fleetbench \
 && target/release/fleetbench --version

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/fleetbench /usr/local/bin/fleetbench
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleetbench"]
CMD ["--help"]
