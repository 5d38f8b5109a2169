# quicmq container image: quicmq-node, quicmq-router and the quicmq CLI as
# static binaries on an empty base.
#
# Build it with `.ci/build-image` (tags quicmq:dev): that script compiles
# the static binaries on the host and stages them, with CA certificates,
# /etc/passwd and /etc/group (user `quicmq`, uid/gid 10001) and the empty
# data directory, under target/image/rootfs; this file only copies the
# staged tree. Nothing is pulled: the base is `scratch`. The build context
# is the repository root; .dockerignore lets only target/image/ through.
#
# Run:
#   node    docker run quicmq:dev [quicmq-node flags]
#   router  docker run --entrypoint /usr/local/bin/quicmq-router quicmq:dev --seeds ...
#   CLI     docker run --entrypoint /usr/local/bin/quicmq quicmq:dev pub ...
# Configuration: every key is a flag, an environment variable QUICMQ_<KEY>
# and a TOML key; mount a TOML file and point QUICMQ_CONFIG at it, e.g.
#   docker run -v $PWD/node.toml:/etc/quicmq/node.toml:ro \
#     -e QUICMQ_CONFIG=/etc/quicmq/node.toml quicmq:dev
# docker-compose.yml runs a three-node cluster behind two routers; the
# deployment guide is docs/deploy.md.
FROM scratch

COPY target/image/rootfs/ /
# The data directory belongs to the unprivileged user (a named volume
# mounted there starts with the same owner).
COPY --chown=10001:10001 target/image/data/ /var/lib/quicmq/

# Only the data directory is set here: the listen addresses already default
# to 0.0.0.0 (see `quicmq-node --help`). An environment variable beats the
# TOML file (flags > environment > file > defaults), so this is the one
# key a `--config` file cannot move; the Helm chart uses the same path.
# quicmq-router has no `data_dir` and ignores it.
ENV QUICMQ_DATA_DIR=/var/lib/quicmq
WORKDIR /var/lib/quicmq
VOLUME ["/var/lib/quicmq"]
USER 10001:10001

# Node: MQTT over QUIC (direct), routed port (PROXY v2 from routers),
# MQTT over TCP and TLS, gRPC (Raft, forwarding, cluster watch), admin HTTP.
EXPOSE 14567/udp 14568/udp 1883/tcp 8883/tcp 7000/tcp 8080/tcp
# Router: public QUIC port 14567/udp (as above), socket towards the nodes'
# routed ports (when `internal_addr` pins it), admin HTTP.
EXPOSE 14569/udp 8090/tcp

# No shell or curl in the image: the CLI does the check itself (GET
# /health/ready, exit 0 on 200). It targets the node's default admin port;
# a router's health check needs `--admin 127.0.0.1:8090` (docker-compose.yml
# sets it), and so does a node whose `admin_addr` is moved. Kubernetes
# ignores HEALTHCHECK; the chart has its own probes.
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/quicmq", "health", "--admin", "127.0.0.1:8080", "--timeout", "5"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quicmq-node"]
