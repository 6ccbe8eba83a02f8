"""Write k8s/base/configmaps.yaml from the server configs under models/ (tests/deploy checks they agree).

Run after `python -m export` or after editing models/tf/*.config, models/torch/config.properties, log4j2.xml
or stack/torchserve_entrypoint.py:
    python scripts/render_k8s_configmaps.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPS = {
    "tf-serving-config": ["models/tf/models.config", "models/tf/batching.config", "models/tf/monitoring.config"],
    "torchserve-config": [
        "models/torch/config.properties",
        "models/torch/log4j2.xml",
        "stack/torchserve_entrypoint.py",
    ],
}


def block(text: str, indent: int = 4) -> str:
    return "\n".join((" " * indent + line) if line else "" for line in text.rstrip("\n").split("\n"))


def render() -> str:
    docs = []
    for name, files in MAPS.items():
        entries = "\n".join(f"  {Path(f).name}: |\n{block((ROOT / f).read_text())}" for f in files)
        docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{entries}\n")
    header = "# Generated from models/ by scripts/render_k8s_configmaps.py; tests/deploy checks they stay identical.\n"
    return header + "---\n".join(docs)


if __name__ == "__main__":
    (ROOT / "k8s" / "base" / "configmaps.yaml").write_text(render())
    print("wrote k8s/base/configmaps.yaml")
