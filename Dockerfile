# The `greenthread` image for the Helm chart, built with a registry at hand.
# Without one, scripts/image.sh builds the same layout from Debian's packages
# (the base, then /usr/local with the binary and ONNX Runtime's library, user
# 10001, the same entrypoint and environment). CPU build; for NVIDIA GPUs
# build with `--build-arg FEATURES=cuda` (nvcc is needed at build time:
# scripts/cuda-toolkit.sh).
FROM rust:1.95-bookworm AS build
ARG FEATURES=""
RUN rustup target add wasm32-unknown-unknown \
 && apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Stripped, its debug info in /src/dist/greenthread.debug (kept in this stage only).
RUN GREENTHREAD_DIST=/src/dist scripts/release.sh ${FEATURES:+--features "$FEATURES"} \
 && cp "$(GREENTHREAD_CACHE=/tmp/gt scripts/onnxruntime.sh)" /libonnxruntime.so

# Text-to-speech voices load ONNX Runtime (the onnxruntime wheel's library)
# and espeak-ng's library (Debian's) at run time.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libespeak-ng1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin greenthread
COPY --from=build /src/dist/greenthread /usr/local/bin/greenthread
COPY --from=build /libonnxruntime.so /usr/local/lib/libonnxruntime.so
ENV GREENTHREAD_ONNXRUNTIME=/usr/local/lib/libonnxruntime.so
LABEL org.opencontainers.image.title=greenthread \
      org.opencontainers.image.source=https://github.com/greenthread-ai/greenthread
USER 10001:10001
WORKDIR /home/greenthread
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/greenthread"]
CMD ["--help"]
