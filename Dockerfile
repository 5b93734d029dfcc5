# Multi-stage build: compile in the Rust image, run from a small Debian image as a non-root user.
# libssl3: librdkafka (the kafka exporter and receiver) links OpenSSL for SASL SCRAM and TLS.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p vigil -p vigil-loadgen \
 && strip target/release/vigil target/release/vigil-loadgen

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin vigil \
 && mkdir -p /etc/vigil /var/lib/vigil \
 && chown vigil /var/lib/vigil
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
COPY --from=build /src/target/release/vigil-loadgen /usr/local/bin/vigil-loadgen
COPY agent/src/config/default.yaml /etc/vigil/config.yaml
USER 10001
EXPOSE 4317 4318 8888 13133
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--config", "/etc/vigil/config.yaml"]
