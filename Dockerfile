# Bella Vista agent worker.
#   docker build -t bella-vista .
#   docker run --env-file .env bella-vista start
# .env holds LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, OPENAI_API_KEY (and
# OPENAI_BASE_URL for another OpenAI-compatible server). Orders go to /data/orders.db.

FROM rust:1.95-bookworm AS build
# cmake builds the bundled libopus and llama.cpp (the local model; libclang-dev for its
# bindings); libasound2-dev and pkg-config build cpal (--local).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev libasound2-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin bella-vista \
 && strip target/release/bella-vista

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libasound2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bella \
 && mkdir -p /data && chown bella /data
WORKDIR /app
COPY --from=build /src/target/release/bella-vista /usr/local/bin/bella-vista
COPY config ./config
COPY prompts ./prompts
ENV BELLA_VISTA_ORDERS_DB=/data/orders.db \
    RUST_LOG=info
VOLUME ["/data"]
USER bella
ENTRYPOINT ["bella-vista"]
CMD ["start"]
