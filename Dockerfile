# kiln container image. Two stages: build with the same scripts CI runs (scripts/bootstrap,
# scripts/build), then a runtime image holding kilnd + kilnctl and only the shared libraries
# they load, running as a non-root user. Works with a read-only root filesystem (kilnd writes
# nothing but stderr; give it a writable /tmp only if you use --ready_file there).
#
#   CPU  (debian:12 -> debian:12-slim):
#     docker build --build-arg KILN_VARIANT=cpu -t kiln:cpu .
#   CUDA (nvidia/cuda devel -> runtime, Ubuntu 24.04 has Debian 12's gRPC/protobuf/abseil):
#     docker build --build-arg KILN_VARIANT=cuda -t kiln:cuda .
#   run (models mounted read-only; no network needed at run time):
#     docker run --read-only --user 10001:10001 -p 50051:50051 -p 9090:9090 \
#       -v /srv/models:/models:ro kiln:cpu --model_roots=/models --preload=<name>
#
# tests/deploy/check_dockerfile.py checks this file's structure in CI (no Docker engine
# there): stages, non-root USER, EXPOSE, the build RUN calling scripts/bootstrap and
# scripts/build. It does not prove the image builds or runs.

ARG KILN_VARIANT=cpu
ARG CUDA_VERSION=12.6.3

FROM debian:12 AS build-cpu
ENV KILN_CMAKE_ARGS="-DKILN_CUDA=OFF"

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build-cuda
ENV KILN_CMAKE_ARGS="-DKILN_CUDA=ON"

FROM debian:12-slim AS runtime-cpu

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04 AS runtime-cuda

# ---------------------------------------------------------------- build
FROM build-${KILN_VARIANT} AS build
COPY scripts/bootstrap /src/scripts/bootstrap
RUN /src/scripts/bootstrap && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN KILN_BUILD_TYPE=Release KILN_BUILD_DIR=/build KILN_WERROR=1 scripts/build ${KILN_CMAKE_ARGS} \
 && mkdir -p /out \
 && cp /build/server/kilnd /build/cli/kilnctl /out/ \
 && deploy/docker/runtime-packages.sh /out/kilnd /out/kilnctl > /out/runtime-packages.txt

# ---------------------------------------------------------------- runtime
FROM runtime-${KILN_VARIANT} AS runtime
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 10001 kiln \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin kiln \
 && mkdir -p /models /etc/kiln \
 && chmod 0555 /models /etc/kiln
COPY --from=build /out/kilnd /out/kilnctl /usr/local/bin/
# Nothing is fetched at run time: kiln loads models only from the mounted roots.
ENV HF_HUB_OFFLINE=1 HOME=/nonexistent
USER 10001:10001
# gRPC and Prometheus /metrics; kilnd opens no other listener.
EXPOSE 50051 9090
# All interfaces inside the container (the pod network); kilnd's own default is loopback.
ENTRYPOINT ["/usr/local/bin/kilnd", "--listen=0.0.0.0:50051", "--metrics_listen=0.0.0.0:9090"]
