# The accord image: the release binary on an empty base, with only the shared
# libraries it links, the dynamic loader, CA certificates, and UID/GID 65532,
# which it runs as (the Helm chart's securityContext). It works with a
# read-only root filesystem: state goes to /var/lib/accord (the SQLite file)
# and /var/cache/accord (Git objects), which are volumes in the chart.
#
#   docker build -t accord .            # or: podman build -t accord .
#
# CI cannot build the first stage (it has no registry to pull the Rust image
# from). It builds the final stage as it is with `scripts/image`, which
# assembles the files the first stage would make (`scripts/image --assemble`,
# as below) from the binary CI compiled and passes them to podman in place of
# that stage; tests/container.rs then runs the image the way the chart does.

FROM docker.io/library/rust:1.95-bookworm AS build
# git2 builds libgit2 and libssh2 against the system's OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && scripts/image --assemble / --binary target/release/accord

FROM scratch
COPY --from=build /image/rootfs/ /
# Writable by accord even without a volume (a Docker named volume starts as
# a copy of these folders, ownership included).
COPY --from=build --chown=65532:65532 /image/empty/ /var/lib/accord/
COPY --from=build --chown=65532:65532 /image/empty/ /var/cache/accord/
# OpenSSL (Git over HTTPS) looks for certificates under /usr/lib/ssl otherwise.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# A relative SQLite path (the default sqlite://accord.db) lands on the volume.
WORKDIR /var/lib/accord
EXPOSE 8080
ENTRYPOINT ["/accord"]
CMD ["run", "--config", "/etc/accord/accord.yaml"]
