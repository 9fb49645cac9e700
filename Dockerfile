# Bella Vista agent worker: a `FROM scratch` image of about 37 MB (the binary, the libraries
# it links, a CA bundle, a non-root user, config and prompts).
#   docker build -t bella-vista .
#   docker run --env-file .env -v bella-orders:/data bella-vista start
# .env holds LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, OPENAI_API_KEY (and
# OPENAI_BASE_URL for another OpenAI-compatible server). Orders go to /data/orders.db.
#
# Without a registry (CI): the filesystem made on the host by scripts/image/rootfs.sh into
# the build context's rootfs/ directory, and no build stage at all (BuildKit skips it):
#   DOCKER_BUILDKIT=1 docker build --build-arg ROOTFS=prebuilt -f Dockerfile CONTEXT
ARG ROOTFS=build

FROM rust:1.95-bookworm AS build
# cmake builds the bundled libopus and llama.cpp (the local model; libclang-dev for its
# bindings). No sound devices in a container: built without the local-audio feature.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --features local-llm --bin bella-vista \
 && scripts/image/rootfs.sh target/release/bella-vista /rootfs

FROM scratch AS prebuilt
COPY rootfs/ /rootfs/

FROM ${ROOTFS} AS rootfs

FROM scratch
COPY --from=rootfs /rootfs/files/ /
COPY --from=rootfs --chown=10001:10001 /rootfs/owned/ /
WORKDIR /app
# Logs as JSON lines for log shippers; models the local provider downloads go to /data.
ENV BELLA_VISTA_ORDERS_DB=/data/orders.db \
    BELLA_VISTA_LOG_FORMAT=json \
    HF_HOME=/data/huggingface \
    RUST_LOG=info
VOLUME ["/data"]
# /health and /metrics (livekit.http_listen).
EXPOSE 8081
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/bella-vista"]
CMD ["start"]
