"""kubectl and helm against one cluster, for the k8s scenarios.

`Kube(kubeconfig)` runs the built kubectl (or the one on PATH for a cluster not
built here) and the project's pinned helm with that kubeconfig, and returns
plain data: parsed JSON, or the CompletedProcess of a command. A failing
command raises KubeError with its output, so a test's failure says why.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from asya_testkit.wait import wait_for

from .cluster import BIN_DIR, REPO_ROOT

CHART_DIR = REPO_ROOT / "charts" / "asya-actor"
# Values files of the k8s scenarios; cluster.yaml is given to every release,
# host-network.yaml too on a cluster without a pod network (the one built here).
VALUES_DIR = Path(__file__).resolve().parent / "values"
CLUSTER_VALUES = VALUES_DIR / "cluster.yaml"
HOST_NETWORK_VALUES = VALUES_DIR / "host-network.yaml"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
HELM3 = REPO_ROOT / ".tools" / "bin" / "helm3"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# A bound on helm's own wait, not an expectation (2 busy cores, images already on the node).
HELM_TIMEOUT = "5m"
WAIT_TIMEOUT = 300.0


class KubeError(Exception):
    pass


def kubectl_binary():
    built = BIN_DIR / "kubectl"
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    if found is None:
        raise KubeError(f"no kubectl: neither {built} (make k8s-tools) nor one on PATH")
    return found


class Kube:
    def __init__(self, kubeconfig, env=None):
        self.kubeconfig = str(kubeconfig)
        self.env = dict(env or os.environ)
        self.env["KUBECONFIG"] = self.kubeconfig
        self.kubectl_path = kubectl_binary()

    # -- commands

    def run(self, argv, input=None, check=True, timeout=600):
        argv = [str(part) for part in argv]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise KubeError(f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def kubectl(self, *args, input=None, check=True, timeout=300):
        return self.run([self.kubectl_path, "--kubeconfig", self.kubeconfig, *args], input=input, check=check,
                        timeout=timeout)

    def json(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, objects, namespace=None):
        """kubectl apply of one object or a list of them (dicts)."""
        if isinstance(objects, dict):
            objects = [objects]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=yaml.safe_dump_all(objects))

    def helm(self, *args, helm=HELM, check=True, timeout=900):
        return self.run([helm, *args, "--kubeconfig", self.kubeconfig], check=check, timeout=timeout)

    # -- namespaces

    def create_namespace(self, name):
        """A namespace in which pods can be created at once (its default ServiceAccount exists)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "asya-e2e"}}})
        wait_for(lambda: self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
                 f"the default ServiceAccount of namespace {name}", WAIT_TIMEOUT, interval=0.2)
        return name

    def delete_namespace(self, name, wait=True):
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}",
                     timeout=WAIT_TIMEOUT + 60)

    # -- helm

    def _release_args(self, namespace, values_files, set_values, wait, timeout):
        args = ["--namespace", namespace]
        for path in values_files:
            args += ["--values", str(path)]
        for key, value in (set_values or {}).items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        if wait:
            args += ["--wait", "--timeout", timeout]
        return args

    def helm_install(self, release, namespace, values_files=(), set_values=None, wait=True, helm=HELM,
                     timeout=HELM_TIMEOUT, chart=CHART_DIR):
        return self.helm("install", release, str(chart),
                         *self._release_args(namespace, values_files, set_values, wait, timeout), helm=helm)

    def helm_upgrade(self, release, namespace, values_files=(), set_values=None, wait=True, helm=HELM,
                     timeout=HELM_TIMEOUT, chart=CHART_DIR):
        return self.helm("upgrade", release, str(chart),
                         *self._release_args(namespace, values_files, set_values, wait, timeout), helm=helm)

    def helm_test(self, release, namespace, helm=HELM, timeout=HELM_TIMEOUT, check=True):
        return self.helm("test", release, "--namespace", namespace, "--timeout", timeout, "--logs",
                         helm=helm, check=check)

    def helm_template(self, release, namespace, values_files=(), set_values=None, helm=HELM, chart=CHART_DIR):
        """The objects the chart renders for these values, as dicts."""
        output = self.helm("template", release, str(chart),
                           *self._release_args(namespace, values_files, set_values, False, HELM_TIMEOUT),
                           helm=helm).stdout
        return [document for document in yaml.safe_load_all(output) if document]

    def helm_uninstall(self, release, namespace, helm=HELM):
        return self.helm("uninstall", release, "--namespace", namespace, "--wait", helm=helm, check=False)

    # -- pods

    def pods(self, namespace, selector=None):
        args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
        return self.json(*args)["items"]

    def release_pods(self, namespace, release):
        return self.pods(namespace, f"{INSTANCE_LABEL}={release}")

    def wait_pods_ready(self, namespace, selector, count=1, timeout=WAIT_TIMEOUT):
        """The `count` live pods matching `selector` once all are Ready."""
        def ready():
            pods = [pod for pod in self.pods(namespace, selector) if not pod["metadata"].get("deletionTimestamp")]
            if len(pods) != count or not all(pod_ready(pod) for pod in pods):
                return None
            return pods

        return wait_for(ready, f"{count} Ready pod(s) {selector} in {namespace}", timeout, interval=0.5)

    def exec(self, namespace, pod, container, argv, check=True, timeout=120):
        return self.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *argv, check=check,
                            timeout=timeout)

    def logs(self, namespace, pod, container, previous=False):
        args = ["logs", "-n", namespace, pod, "-c", container] + (["--previous"] if previous else [])
        return self.kubectl(*args, check=False).stdout

    def report(self, namespace):
        """The pods of a namespace, their containers' states and logs: for a failed test's report."""
        sections = []
        try:
            pods = self.pods(namespace)
        except Exception as exc:
            return f"(cannot list pods of {namespace}: {exc})"
        for pod in pods:
            name = pod["metadata"]["name"]
            status = pod.get("status", {})
            sections.append(f"===== pod {name}: phase {status.get('phase')}")
            for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
                sections.append(f"--- {container['name']}: restarts {container.get('restartCount')}, "
                                f"state {json.dumps(container.get('state'))}")
                for previous in ([False, True] if container.get("restartCount") else [False]):
                    label = "previous run" if previous else "log"
                    text = self.logs(namespace, name, container["name"], previous)
                    sections.append(f"{label}:\n{text.rstrip()}")
        events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        sections.append(f"===== events of {namespace}\n{events.rstrip()}")
        return "\n".join(sections)


def pod_ready(pod):
    conditions = pod.get("status", {}).get("conditions", [])
    return any(condition["type"] == "Ready" and condition["status"] == "True" for condition in conditions)


def unique_name(prefix):
    """A name no earlier test used: namespaces of failed tests may still be terminating."""
    return f"{prefix}-{int(time.time() * 1000) % 10_000_000:07d}"


def values_file(path, values):
    path = Path(path)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
