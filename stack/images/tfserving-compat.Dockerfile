# syntax=docker/dockerfile:1
# The TF-Serving-compatible server (stack/tfserving_compat: the real TensorFlow runtime behind TF Serving's REST
# and gRPC APIs) as an image, for hosts where tensorflow/serving can't be pulled or has no native build (arm64).
# It is NOT TensorFlow Serving: it says so in its logs, its /metrics and its server_info. Opt-in through
# docker-compose.selfbuilt.yml. BASE_IMAGE and .wheelhouse/tfserving-compat/: as in gateway/Dockerfile.
# checkov:skip=CKV_DOCKER_7: FROM takes the BASE_IMAGE build arg, whose default is a pinned tag
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE} AS build
COPY stack/images/tfserving-compat.constraints.txt stack/images/tfserving-compat.requirements.txt .wheelhous[e]/tfserving-compa[t] /wheels/
RUN python -m venv /opt/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links=/wheels; fi \
 && /opt/venv/bin/pip install --no-cache-dir "$@" -r /wheels/tfserving-compat.requirements.txt \
      -c /wheels/tfserving-compat.constraints.txt \
 && /opt/venv/bin/pip install --no-cache-dir "$@" --no-deps tensorflow-serving-api==2.19.1

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY stack/__init__.py stack/
COPY stack/tfserving_compat/ stack/tfserving_compat/
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app \
    TF_CPP_MIN_LOG_LEVEL=1
# `tensorflow_model_server` on PATH, as in the vendor image: compose and k8s run the same command line here.
COPY stack/images/tensorflow_model_server /usr/local/bin/tensorflow_model_server
USER 10001:10001
EXPOSE 8500 8501
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/v1/models/digits', timeout=2).status != 200)"]
# Container defaults like the tensorflow/serving image's entrypoint (tf_serving_entrypoint.sh: --port=8500
# --rest_api_port=8501 before the arguments given; a later flag wins) and every interface, as the binary binds.
ENTRYPOINT ["python", "-m", "stack.tfserving_compat", "--port=8500", "--rest_api_port=8501", \
            "--rest_api_bind_address=0.0.0.0", "--grpc_bind_address=0.0.0.0"]
CMD ["--model_name=digits", "--model_base_path=/models/digits"]
