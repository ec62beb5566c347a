# kiln container image (CPU build). Two stages: build with Debian 12's -dev packages, run on
# debian:12-slim with only the runtime libraries, as a non-root user with a read-only model volume.
#   docker build -t kiln .
#   docker run -p 50051:50051 -v /models:/models:ro kiln --model_roots=/models
FROM debian:12 AS build
COPY scripts/bootstrap /src/scripts/bootstrap
RUN /src/scripts/bootstrap && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN KILN_BUILD_TYPE=Release KILN_BUILD_DIR=/build scripts/build -DKILN_CUDA=OFF \
 && mkdir -p /out && cp /build/server/kilnd /build/cli/kilnctl /out/

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libprometheus-cpp-pull1.0 \
      libprometheus-cpp-core1.0 libopenblas0-pthread libpcre2-8-0 libutf8proc2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin kiln
COPY --from=build /out/kilnd /out/kilnctl /usr/local/bin/
USER 10001
EXPOSE 50051 9090
# Listen on all interfaces inside the container (the pod network); kilnd's own default is loopback.
ENTRYPOINT ["/usr/local/bin/kilnd", "--listen=0.0.0.0:50051", "--metrics_listen=0.0.0.0:9090"]
