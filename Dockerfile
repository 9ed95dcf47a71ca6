# The `greenthread` binary with its console, for the Helm chart. CPU build;
# for NVIDIA GPUs build with `--build-arg FEATURES=cuda-inference` on a
# CUDA base (nvcc is needed at build time).
FROM rust:1.95-bookworm AS build
ARG FEATURES=""
RUN rustup target add wasm32-unknown-unknown \
 && apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/build-web.sh >/dev/null \
 && cargo build --release --locked -p greenthread-api ${FEATURES:+--features "$FEATURES"} \
 && cp "${CARGO_TARGET_DIR:-target}/release/greenthread" /greenthread \
 && cp "$(GREENTHREAD_CACHE=/tmp/gt scripts/onnxruntime.sh)" /libonnxruntime.so

# Text-to-speech voices load ONNX Runtime (the onnxruntime wheel's library)
# and espeak-ng's library (Debian's) at run time.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libespeak-ng1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home greenthread
COPY --from=build /greenthread /usr/local/bin/greenthread
COPY --from=build /libonnxruntime.so /usr/local/lib/libonnxruntime.so
ENV GREENTHREAD_ONNXRUNTIME=/usr/local/lib/libonnxruntime.so
USER 10001
ENTRYPOINT ["/usr/local/bin/greenthread"]
