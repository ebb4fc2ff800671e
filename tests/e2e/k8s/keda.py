"""KEDA's operator as a host process against a cluster, for the autoscaling scenario.

tools/keda/build.sh builds the operator from KEDA's Go module into
.tools/keda/<version>/ (bin/keda and the module's own CRDs in crds/).
``KedaOperator`` is what a fixture owns: entering it applies those CRDs,
writes a self-signed certificate for the operator's gRPC metrics service,
starts the operator with the cluster's admin kubeconfig and waits until its
health endpoint answers; leaving it stops the process (SIGTERM, then SIGKILL),
so nothing of it outlives the test session. The CRDs stay: they go with the
cluster.

In a pod the operator learns its namespace from the service account mount;
as a host process it is told (POD_NAMESPACE, KEDA_CLUSTER_OBJECT_NAMESPACE),
and its three listeners (metrics, health, gRPC) move from all interfaces to
free 127.0.0.1 ports. Only the operator runs: scaling 0 <-> 1 is its own
work; 1 -> N goes through the HPA it creates, which asks KEDA's metrics API
server behind a Service, and a loopback-only cluster routes no Service.
"""

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from asya_testkit.ports import free_loopback_ports
from asya_testkit.process import ChildProcess
from asya_testkit.wait import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSION = (REPO_ROOT / "tools" / "keda" / "VERSION").read_text().strip()
BUILD_DIR = REPO_ROOT / ".tools" / "keda" / VERSION
BINARY = BUILD_DIR / "bin" / "keda"
CRD_DIR = BUILD_DIR / "crds"
# Bounds on a hang, not expectations of speed.
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0


def unavailable_reason():
    """One line saying why the operator cannot run here, or None."""
    if not BINARY.exists() or not (CRD_DIR / ".complete").exists():
        return f"KEDA {VERSION} is not built (tools/keda/build.sh builds it: about 8 min and 3.5 GB cold)"
    return None


def self_signed_certificate(cert_dir):
    """tls.crt/tls.key and ca.crt (the same certificate) for the operator's gRPC server."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=keda-operator", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(cert_dir / "tls.key"), "-out", str(cert_dir / "tls.crt")],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (cert_dir / "ca.crt").write_bytes((cert_dir / "tls.crt").read_bytes())


class KedaOperator:
    """One KEDA operator process watching every namespace of the cluster.

    kubectl: the argv prefix that reaches the cluster (its binary and --kubeconfig).
    namespace: an existing namespace, where the operator keeps its own objects.
    """

    def __init__(self, kubeconfig, kubectl, namespace, work_dir):
        self.kubeconfig = Path(kubeconfig)
        self.kubectl = list(kubectl)
        self.namespace = namespace
        self.work_dir = Path(work_dir)
        self.process = None
        self.health_port = None

    def apply_crds(self):
        # Server-side: the ScaledJob CRD is larger than the annotation a
        # client-side apply keeps.
        for crd in sorted(CRD_DIR.glob("*.yaml")):
            subprocess.run(self.kubectl + ["apply", "--server-side", "--force-conflicts", "-f", str(crd)],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        subprocess.run(self.kubectl + ["wait", "--for", "condition=established", "--timeout", "120s",
                                       "crd/scaledobjects.keda.sh", "crd/triggerauthentications.keda.sh"],
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=150)

    def start(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.apply_crds()
        cert_dir = self.work_dir / "certs"
        self_signed_certificate(cert_dir)
        metrics_port = free_loopback_ports(3)
        self.health_port = metrics_port + 1
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), POD_NAMESPACE=self.namespace,
                   KEDA_CLUSTER_OBJECT_NAMESPACE=self.namespace, WATCH_NAMESPACE="")
        argv = [BINARY,
                f"--metrics-bind-address=127.0.0.1:{metrics_port}",
                f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
                f"--metrics-service-bind-address=127.0.0.1:{metrics_port + 2}",
                f"--cert-dir={cert_dir}",
                f"--ca-dir={cert_dir}",
                "--leader-elect=false",
                "--zap-log-level=info"]
        self.process = ChildProcess(argv, env, self.work_dir / "keda-operator.log", label="keda operator").start()
        wait_for(self._healthy, f"KEDA's operator to answer on 127.0.0.1:{self.health_port}/readyz",
                 START_TIMEOUT, interval=0.5)
        return self

    def _healthy(self):
        if not self.process.alive():
            raise AssertionError(f"KEDA's operator exited with {self.process.process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self):
        return self.process.log_text() if self.process else ""

    def stop(self):
        if self.process is not None and self.process.alive():
            try:
                self.process.stop(timeout=STOP_TIMEOUT)
            except AssertionError:
                pass  # killed after the timeout: nothing is left running either way

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info):
        self.stop()
