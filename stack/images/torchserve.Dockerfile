# syntax=docker/dockerfile:1
# TorchServe 0.12.0 from PyPI with Java 17 and the CPU torch wheel, laid out like pytorch/torchserve (user
# model-server, /home/model-server/{model-store,config,logs,tmp}), for hosts where that image can't be pulled.
# Opt-in through docker-compose.selfbuilt.yml. BASE_IMAGE and .wheelhouse/torchserve/: as in gateway/Dockerfile.
# checkov:skip=CKV_DOCKER_7: FROM takes the BASE_IMAGE build arg, whose default is a pinned tag
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE} AS build
COPY stack/images/torchserve.requirements.txt .wheelhous[e]/torchserv[e] /wheels/
RUN python -m venv /opt/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links=/wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir "$@" -r /wheels/torchserve.requirements.txt

FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 model-server \
 && useradd --uid 1000 --gid model-server --create-home --home-dir /home/model-server --shell /bin/bash model-server \
 && mkdir -p /home/model-server/model-store /home/model-server/config /home/model-server/logs /home/model-server/tmp \
 && chown -R model-server:model-server /home/model-server
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/model-server
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TEMP=/home/model-server/tmp
USER 1000:1000
EXPOSE 8080 8081 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys,urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8080/ping', timeout=2).status != 200)"]
CMD ["torchserve", "--start", "--foreground", "--ncs", "--disable-token-auth", "--model-store=/home/model-server/model-store"]
