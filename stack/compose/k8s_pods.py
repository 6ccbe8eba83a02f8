"""The k8s pods under Docker with their pods' constraints: what a cluster would catch, without a cluster.

Each Deployment of the rendered `local` overlay runs as a pod: a holder container owns the network namespace and
answers to the Services' names on one Docker network; init containers run to completion first; every container
runs with its pod spec's image, command, args, env and mounts, as its runAsUser/runAsGroup (+ fsGroup), with a
read-only root filesystem where the spec says so, no capabilities and no-new-privileges. emptyDirs are fresh
0777 volumes (as the kubelet makes them), configMaps are their files mounted read-only. Then every readiness and
liveness probe must pass, and a prediction through the gateway's Service must be right on both backends. Then the
bench component's Job (k8s/components/bench) runs as a pod against those pods, with lighter bench options, and its
report must come out of its log as a user takes it (awk | base64 -d | tar, see loadtest/job.py) and be complete.
An Indexed Job's pods run all at once, each with its index, hostname and DNS name under the Job's subdomain, and
with its containers' resources.limits (k8s_training.py runs the training Jobs so).

Substitutions where the registry can't give an image, said in the output: the TF Serving container runs the
compatible server (`python -m stack.tfserving_compat`, the same args), TorchServe the self-built image, the models
image is built on the local base.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stack.config import MODELS_DIR, ROOT, StackConfig
from stack.deployments.quantities import cpu_quantity, memory_quantity

LABEL = "servecompare-k8s-pods"
NETWORK = "servecompare-k8s-pods"
PODS = ("tf-serving", "torchserve", "gateway")
BENCH_JOB = "servecompare-bench"
BENCH_COMPONENT = ROOT / "k8s" / "components" / "bench"
# The Job's own bench, lighter (about a minute here): direct targets and one through the gateway, one concurrency,
# two trials, short SLO steps. The Job's URLs and everything else stay as rendered.
BENCH_LIGHT = ["--quick", "--targets", "tf-direct,torch-direct,gateway-tf", "--users", "4", "--trials", "2",
               "--max-trials", "2", "--verdict-trials", "2", "--slo-arrivals", "200"]  # fmt: skip
BENCH_TIMEOUT_S = 240
# How a user takes the report out of `kubectl logs job/servecompare-bench` (the same line as the docs).
EXTRACT = "awk '/^-----END SERVECOMPARE REPORT/{p=0} p; /^-----BEGIN SERVECOMPARE REPORT/{p=1}' | base64 -d | tar xzf -"


class PodFailure(RuntimeError):
    pass


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise PodFailure(f"docker {' '.join(args[:3])}...: {(done.stdout + done.stderr)[-1500:]}")
    return done


def render(kubectl: str, overlay: Path, components: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The overlay rendered, with `components` added as a user adds them (a kustomization over the overlay)."""
    with tempfile.TemporaryDirectory(prefix="k8s-render-") as tmp:
        target = overlay
        if components:
            rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731 - kustomize takes relative paths only
            (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [rel(overlay)], "components": [rel(c) for c in components],
            }))  # fmt: skip
            target = Path(tmp)
        out = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class PodRun:
    docs: list[dict[str, Any]]
    images: dict[str, str]  # manifest image -> local image
    holder_image: str
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="k8s-pods-")))
    notes: list[str] = field(default_factory=list)

    def deployments(self) -> dict[str, dict[str, Any]]:
        """The pods' owners by name: Deployments (one pod each here) and Jobs (an Indexed Job: `completions` pods)."""
        return {d["metadata"]["name"]: d for d in self.docs if d["kind"] in ("Deployment", "Job")}

    def config_maps(self) -> dict[str, dict[str, str]]:
        return {d["metadata"]["name"]: d.get("data", {}) for d in self.docs if d["kind"] == "ConfigMap"}

    def aliases(self, labels: dict[str, str]) -> list[str]:
        """The Services whose selector picks these pod labels: the names other pods reach it by."""
        return [
            d["metadata"]["name"]
            for d in self.docs
            if d["kind"] == "Service" and d["spec"].get("selector", {}).items() <= labels.items()
        ]

    def pod_meta(self, name: str, index: int | None = None) -> tuple[str, dict[str, str], dict[str, str]]:
        """Pod `index` of `name`'s (or its one pod): its name, its labels (a Job's pods get the controller's) and its
        fieldRef values (metadata.name, metadata.namespace, metadata.labels['...'])."""
        owner = self.deployments()[name]
        labels = dict(owner["spec"]["template"]["metadata"].get("labels", {}))
        pod = name if index is None else f"{name}-{index}"
        if owner["kind"] == "Job":
            labels |= {"job-name": name, "batch.kubernetes.io/job-name": name}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
        fields = {f"metadata.labels['{k}']": v for k, v in labels.items()}
        fields |= {"metadata.name": pod, "metadata.namespace": owner["metadata"].get("namespace", "default")}
        return pod, labels, fields

    def start(
        self, name: str, index: int | None = None, env: dict[str, str] | None = None, limits: bool = False
    ) -> str:
        """Run the pod of Deployment or Job `name` (pod `index` of an Indexed Job, named `<job>-<index>` as the Job
        controller names its hostname, reachable as `<job>-<index>.<subdomain>` with JOB_COMPLETION_INDEX set);
        `env` overrides its containers' env values, `limits` gives them their resources.limits. Returns the pod's
        name (its holder is `k8s-<pod>`)."""
        spec = self.deployments()[name]["spec"]["template"]["spec"]
        pod, labels, fields = self.pod_meta(name, index)
        names, pod_env = [], dict(env or {})
        if index is not None:  # the Job controller's: the pod's hostname and index
            pod_env = {"JOB_COMPLETION_INDEX": str(index), **pod_env}
            names = ["--hostname", pod]
            if spec.get("subdomain"):
                names += ["--network-alias", f"{pod}.{spec['subdomain']}"]
        holder = f"k8s-{pod}"
        net = ["--network", NETWORK] + [a for alias in self.aliases(labels) for a in ("--network-alias", alias)]
        _docker("run", "-d", "--name", holder, "--label", LABEL, *net, *names, "--entrypoint", "sleep",
                self.holder_image, "infinity")  # fmt: skip
        volumes = self._volumes(pod, spec)
        for ctr in spec.get("initContainers", []):
            args = self._run_args(pod, spec, ctr, volumes, False, fields, pod_env, limits)
            done = _docker(*args, check=False, timeout=300)
            if done.returncode != 0:
                raise PodFailure(f"{pod}: init container {ctr['name']} exited {done.returncode}: {done.stderr[-800:]}")
        for ctr in spec["containers"]:
            _docker(*self._run_args(pod, spec, ctr, volumes, True, fields, pod_env, limits))
        return pod

    def _volumes(self, pod: str, spec: dict[str, Any]) -> dict[str, str]:
        """volume name -> a docker --mount source spec (without target)."""
        out = {}
        maps = self.config_maps()
        for vol in spec.get("volumes", []):
            if "emptyDir" in vol:
                vname = f"k8s-{pod}-{vol['name']}"
                _docker("volume", "create", "--label", LABEL, vname)
                # the kubelet makes an emptyDir 0777: so does this (a new Docker volume is root's 0755)
                _docker("run", "--rm", "-v", f"{vname}:/v", "--entrypoint", "chmod", self.holder_image, "0777", "/v")
                out[vol["name"]] = f"type=volume,source={vname}"
            elif "configMap" in vol:
                folder = self.work / pod / vol["name"]
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o755)
                for key, text in maps[vol["configMap"]["name"]].items():
                    (folder / key).write_text(text)
                    (folder / key).chmod(0o644)
                out[vol["name"]] = f"type=bind,source={folder}"
            else:
                raise PodFailure(f"{pod}: volume kind {sorted(vol)} is not simulated")
        return out

    def _run_args(
        self,
        pod: str,
        spec: dict[str, Any],
        ctr: dict[str, Any],
        volumes: dict[str, str],
        detach: bool,
        fields: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        limits: bool = False,
    ) -> list[str]:
        """`docker run` for one container of `pod`: `fields` its fieldRef values (default: pod_meta's for a pod of
        one), `env` extra and overriding values, `limits` its resources.limits as --cpus and --memory."""
        psc, csc = spec.get("securityContext", {}), ctr.get("securityContext", {})
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        args = ["run", "--name", f"k8s-{pod}-{ctr['name']}", "--label", LABEL, "--network", f"container:k8s-{pod}"]
        args += ["-d"] if detach else ["--rm"]
        if uid is not None:
            args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
        if psc.get("fsGroup") is not None:
            args += ["--group-add", str(psc["fsGroup"])]
        if csc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if "ALL" in csc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if csc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if limits:
            args += _limit_args(ctr.get("resources", {}).get("limits", {}))
        if fields is None:
            fields = self.pod_meta(pod)[2] if pod in self.deployments() else {}
        values = {}
        for var in ctr.get("env", []):
            ref = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if "value" in var:
                values[var["name"]] = var["value"]
            elif ref in fields:
                values[var["name"]] = fields[ref]
            else:
                raise PodFailure(f"{pod}/{ctr['name']}: env {var['name']} from {var.get('valueFrom')} is not simulated")
        for key, value in {**values, **(env or {})}.items():
            args += ["-e", f"{key}={value}"]
        for m in ctr.get("volumeMounts", []):
            ro = ",readonly" if m.get("readOnly") else ""
            args += ["--mount", f"{volumes[m['name']]},target={m['mountPath']}{ro}"]
        image = ctr["image"]
        command = ctr.get("command")
        local = self.images.get(image, image)
        if local != image:  # the same command: the compatible server's image has tensorflow_model_server on PATH
            self.notes.append(f"{pod}/{ctr['name']}: image {image} -> {local}, same command and args")
        if command:
            args += ["--entrypoint", command[0], local, *command[1:], *ctr.get("args", [])]
        else:
            args += [local, *ctr.get("args", [])]
        return args

    def probe(self, pod: str, ctr: dict[str, Any], kind: str) -> tuple[bool, str]:
        spec = ctr.get(kind)
        if not spec:
            return True, "none"
        if "httpGet" in spec:
            port = _port(ctr, spec["httpGet"]["port"])
            url = f"http://127.0.0.1:{port}{spec['httpGet']['path']}"
            code = f"import sys,urllib.request as u; sys.exit(u.urlopen({url!r}, timeout=3).status >= 400)"
            done = _docker("exec", f"k8s-{pod}", "python", "-c", code, check=False, timeout=20)
            return done.returncode == 0, url
        if "exec" in spec:
            done = _docker("exec", f"k8s-{pod}-{ctr['name']}", *spec["exec"]["command"], check=False, timeout=20)
            return done.returncode == 0, "exec"
        if "tcpSocket" in spec:
            port = _port(ctr, spec["tcpSocket"]["port"])
            code = f"import socket; socket.create_connection(('127.0.0.1', {port!r}), 3)"
            return _docker("exec", f"k8s-{pod}", "python", "-c", code, check=False).returncode == 0, "tcp"
        raise PodFailure(f"{pod}: probe {spec} is not simulated")

    def wait_ready(self, pod: str, timeout: float) -> None:
        spec = self.deployments()[pod]["spec"]["template"]["spec"]
        deadline = time.monotonic() + timeout
        pending = {c["name"]: c for c in spec["containers"]}
        while pending:
            for name, ctr in list(pending.items()):
                state = _docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", f"k8s-{pod}-{name}").stdout
                if not state.startswith("running"):
                    logs = _docker("logs", "--tail", "30", f"k8s-{pod}-{name}", check=False)
                    raise PodFailure(f"{pod}/{name} is {state.strip()}: {(logs.stdout + logs.stderr)[-2000:]}")
                ready, _ = self.probe(pod, ctr, "readinessProbe")
                if ready:
                    live, what = self.probe(pod, ctr, "livenessProbe")
                    if not live:
                        raise PodFailure(f"{pod}/{name}: ready but its livenessProbe ({what}) fails")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                tails = "".join(_docker("logs", "--tail", "20", f"k8s-{pod}-{n}", check=False).stderr for n in pending)
                raise PodFailure(f"{pod}: {names} not ready within {timeout:.0f} s: {tails[-2000:]}")
            time.sleep(1)

    def predict_through_gateway(self, rows: list[list[float]], expected: dict[str, list[int]]) -> None:
        """From the gateway pod's network namespace, through its Service name, as a client in the cluster."""
        for backend in ("tf", "torch"):
            body = json.dumps({"instances": rows})
            code = (
                "import json,sys,urllib.request as u; "
                f"r=u.Request('http://gateway:8000/predict/{backend}', data={body!r}.encode(), "
                "headers={'Content-Type':'application/json'}); print(u.urlopen(r, timeout=10).read().decode())"
            )
            done = _docker("exec", "k8s-gateway", "python", "-c", code, check=False, timeout=30)
            if done.returncode != 0:
                raise PodFailure(f"gateway -> {backend}: {done.stderr[-800:]}")
            labels = json.loads(done.stdout)["labels"]
            if labels != expected[backend]:
                raise PodFailure(f"gateway -> {backend}: labels {labels} != {expected[backend]}")

    def run_job(self, name: str, extra_args: list[str], timeout: float) -> tuple[int, str]:
        """The Job's pod to its end (its container's args + `extra_args`): (exit status, its log as `kubectl logs`
        gives it, stdout and stderr together)."""
        job = self.deployments()[name]
        original = copy.deepcopy(job)
        (ctr,) = job["spec"]["template"]["spec"]["containers"]
        ctr["args"] = [*ctr.get("args", []), *extra_args]
        try:
            self.start(name)
        finally:
            job.clear()
            job.update(original)
        container = f"k8s-{name}-{ctr['name']}"
        try:
            waited = _docker("wait", container, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            tail = _docker("logs", "--tail", "20", container, check=False)
            raise PodFailure(f"{name}: not done within {timeout:.0f} s: {(tail.stdout + tail.stderr)[-1500:]}") from exc
        return int(waited.stdout.strip() or -1), _logs(container)

    def run_indexed_job(self, name: str, env: dict[str, str], timeout: float) -> dict[int, tuple[int, str]]:
        """Every pod of Indexed Job `name` at once (`completions` of them, each with its index, its limits, `env`
        over its containers' env), to the end of all: {index: (exit status, its log)}. With backoffLimit 0 one
        failed pod fails the Job, so the first non-zero exit ends the wait (the others would wait for it at the
        next collective)."""
        job = self.deployments()[name]
        if job["spec"].get("completionMode") != "Indexed":
            raise PodFailure(f"{name}: not an Indexed Job")
        (ctr,) = job["spec"]["template"]["spec"]["containers"]
        pods = {i: self.start(name, i, env, limits=True) for i in range(int(job["spec"].get("completions", 1)))}
        containers = {i: f"k8s-{pod}-{ctr['name']}" for i, pod in pods.items()}
        deadline = time.monotonic() + timeout
        codes: dict[int, int] = {}
        while len(codes) < len(pods):
            for i, container in containers.items():
                state = _docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container).stdout.split()
                if i not in codes and state[0] in ("exited", "dead"):
                    codes[i] = int(state[1])
            if any(codes.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        logs = {i: _logs(c) for i, c in containers.items()}
        if len(codes) < len(pods) and not any(codes.values()):
            late = [i for i in pods if i not in codes]
            tail = logs[late[0]][-1500:]
            raise PodFailure(f"{name}: {', '.join(pods[i] for i in late)} not done within {timeout:.0f} s: {tail}")
        return {i: (codes.get(i, -1), logs[i]) for i in pods}


def _logs(container: str) -> str:
    """The container's log as `kubectl logs` gives it: stdout and stderr together."""
    return subprocess.run(["docker", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60).stdout  # fmt: skip


def _limit_args(limits: dict[str, str]) -> list[str]:
    """A container's resources.limits as `docker run` flags: cpu ("1", "500m") -> --cpus, memory ("2Gi") -> --memory."""
    args = []
    if "cpu" in limits:
        args += ["--cpus", str(cpu_quantity(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", str(memory_quantity(limits["memory"]))]
    return args


def check_bench_report(log: str, into: Path) -> str:
    """The report out of the Job's log as a user takes it (the docs' pipeline), and complete: the verdict, the
    capacity plan, the deployment named (endpoints, the Services' URLs), no failed request."""
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["sh", "-c", EXTRACT], input=log, cwd=into, capture_output=True, text=True, timeout=60)
    folders = [p for p in into.iterdir() if p.is_dir()]
    if done.returncode != 0 or len(folders) != 1:
        raise PodFailure(f"no report out of the Job's log ({EXTRACT}): {done.stderr[-800:]}; log: {log[-1500:]}")
    report = (folders[0] / "report.md").read_text()
    summary = json.loads((folders[0] / "summary.json").read_text())
    missing = [s for s in ("## Verdict", "## Capacity plan", "## Deployment under test: endpoints") if s not in report]
    urls = summary["deployment"]["urls"]
    failures = sum(p["failures"] for p in summary["points"])
    if missing or urls.get("gateway") != "http://gateway:8000" or failures:
        raise PodFailure(f"bench report incomplete: missing {missing}; urls {urls}; {failures} failures; {folders[0]}")
    return f"{len(summary['points'])} points, verdict and capacity plan in {folders[0] / 'report.md'}"


def _port(ctr: dict[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in ctr.get("ports", []) if p.get("name") == port))


def cleanup() -> None:
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        _docker("rm", "-f", *ids, check=False)
    vols = _docker("volume", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if vols:
        _docker("volume", "rm", "-f", *vols, check=False)
    _docker("network", "rm", NETWORK, check=False)


def run_pods(kubectl: str, base: str, timeout: float = 240) -> str:
    """Build what the pods need, run tf-serving, torchserve and gateway as pods, check them; always clean up."""
    cfg = StackConfig.load()
    _docker("build", "-q", "-f", "models/Dockerfile", "--build-arg", f"BASE_IMAGE={base}", "-t",
            "servecompare-models:1", str(ROOT), timeout=300)  # fmt: skip
    images = {cfg.tf_serving_image: "servecompare-tfserving-compat:0.1.0",
              cfg.torchserve_image: "servecompare-torchserve:0.12.0-cpu"}  # fmt: skip
    run = PodRun(render(kubectl, ROOT / "k8s" / "overlays" / "local", (BENCH_COMPONENT,)), images, base)
    cleanup()
    _docker("network", "create", "--label", LABEL, NETWORK)
    try:
        for pod in PODS:
            run.start(pod)
        for pod in PODS:
            run.wait_ready(pod, timeout)
        ref = json.loads((MODELS_DIR / "reference" / "digits_test.json").read_text())
        n = 8
        run.predict_through_gateway(
            ref["rows"][:n], {"tf": ref["expected"][:n], "torch": ref.get("expected_torch", ref["expected"])[:n]}
        )
        code, log = run.run_job(BENCH_JOB, BENCH_LIGHT, BENCH_TIMEOUT_S)
        (run.work / "bench-job.log").write_text(log)
        if code != 0:
            raise PodFailure(f"{BENCH_JOB} exited {code}: {log[-2000:]}")
        bench = check_bench_report(log, run.work / "bench-report")
    finally:
        cleanup()
    subs = "; ".join(run.notes) or "none"
    return (f"{', '.join(PODS)} ready as non-root, read-only, no capabilities; predictions right; {BENCH_JOB} Job: "
            f"{bench} (substituted: {subs})")  # fmt: skip
