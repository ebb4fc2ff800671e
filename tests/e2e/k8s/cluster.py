"""Where the k8s suite's cluster comes from, and the one built here.

`open_cluster()` is the one place that decides:

- built here (the default): `LocalCluster`, real upstream components on
  127.0.0.1 only (etcd and containerd from Debian, kube-apiserver,
  kube-controller-manager, kube-scheduler and kubelet built by
  tools/kubernetes/build.sh at the version in tools/kubernetes/VERSION);
- an existing cluster: `ExistingCluster(kubeconfig)` (`make e2e-k8s
  KUBECONFIG=...`), nothing started or stopped;
- kind: `KindCluster`, created and deleted around the session (`make e2e-kind`).

A LocalCluster is a context manager in the envtest manner: entering it starts
etcd, containerd, the control plane and the kubelet, each waited on until
healthy before the next; leaving it stops every one of them, failed or not,
and removes what they leave on the host (pod processes, kubepods cgroups,
containerd's shim sockets). Only one can run per machine (the kubelet's
cgroups and containerd's /run/containerd/s are fixed names), so it holds an
exclusive flock on $ASYA_K8S_LOCK while it runs.

Why the mount namespace: the kubelet sets vm.overcommit_memory,
kernel.panic and kernel.panic_on_oops when they differ from what it wants.
containerd and the kubelet run in a mount namespace of their own where those
three /proc/sys files are covered by plain files holding those values, so the
kubelet finds nothing to change and the host keeps its own. Every mount made
for a pod (overlay root filesystems, token tmpfs) is made in that namespace too
and disappears with it.
"""

import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from asya_testkit.ports import free_loopback_ports
from asya_testkit.process import proc_status_kib
from asya_testkit.wait import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBERNETES_DIR = REPO_ROOT / "tools" / "kubernetes"
KUBERNETES_VERSION = (KUBERNETES_DIR / "VERSION").read_text().strip()
BIN_DIR = REPO_ROOT / ".tools" / "kubernetes" / KUBERNETES_VERSION / "bin"
# Persistent between runs: containerd's image store (imports are skipped when
# unchanged). Everything else lives in run/ and starts empty each time.
STATE_DIR = REPO_ROOT / ".tools" / "k8s-cluster"
PAUSE_IMAGE = "localhost/asya-pause:1"
# The node's name and the name the apiserver dials the kubelet by: it must
# resolve to 127.0.0.1 (the kubelet's address is the host's non-loopback one).
NODE_NAME = "localhost"
SERVICE_CIDR = "10.0.0.0/24"
LOCK_VARIABLE = "ASYA_K8S_LOCK"
DEFAULT_LOCK = "/tmp/asya-k8s-cluster.lock"
# The values the kubelet wants (and would write to the host); under /proc/sys.
KUBELET_KERNEL_SETTINGS = {
    "vm/overcommit_memory": "1",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}
# Made by the kubelet whatever its root dir (the device plugins' socket is a
# fixed path): removed at tear-down when they were not there before.
KUBELET_HOST_PATHS = (Path("/var/lib/kubelet"),)
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS_CGROUP = "kubepods"
SHIM_SOCKET_DIR = Path("/run/containerd/s")
NETNS_DIR = Path("/run/netns")
CNI_BIN_DIR = Path("/usr/lib/cni")
CONTAINERD_NAMESPACE = "k8s.io"
# Executables of the cluster's own processes: what tear-down and the host
# check look for.
CLUSTER_EXECUTABLES = ("etcd", "containerd", "containerd-shim-runc-v2", "kube-apiserver",
                       "kube-controller-manager", "kube-scheduler", "kubelet")
# Bounds on waits, not expectations of speed (2 busy cores).
START_TIMEOUT = 180.0
STOP_GRACE_SECONDS = 15.0


class ClusterUnavailable(Exception):
    """Something the cluster needs is missing here; the message names it and how to get it."""


class ClusterError(Exception):
    """A component did not come up; the message holds the end of its log."""


def log(text):
    sys.stderr.write(f"[k8s cluster] {text}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- the host's side

def kernel_settings():
    """The host's values of the three settings the kubelet wants to change."""
    return {name: Path("/proc/sys", name).read_text().strip() for name in KUBELET_KERNEL_SETTINGS}


def _process_executables():
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = os.readlink(f"/proc/{entry.name}/exe")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def cluster_processes():
    """PID -> executable of every process of a cluster's kind running on the host."""
    return {pid: exe for pid, exe in _process_executables().items()
            if os.path.basename(exe.replace(" (deleted)", "")) in CLUSTER_EXECUTABLES}


def kubepods_cgroups():
    """Every kubepods cgroup directory, in each hierarchy."""
    return sorted(str(path) for path in CGROUP_ROOT.glob(f"*/{KUBEPODS_CGROUP}*"))


def cluster_mounts():
    """Mount points in the host's namespace that a cluster would have made."""
    marks = ("kubelet", "containerd", "k8s-cluster", KUBEPODS_CGROUP, "/run/netns")
    with open("/proc/self/mountinfo") as mountinfo:
        return sorted(line.split()[4] for line in mountinfo if any(mark in line.split()[4] for mark in marks))


def host_footprint():
    """What a cluster leaves on the host: compare one taken before with one after."""
    return {
        "kernel settings": kernel_settings(),
        "cluster processes": sorted(set(cluster_processes().values())),
        "mounts": cluster_mounts(),
        "kubepods cgroups": kubepods_cgroups(),
        "network namespaces": sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else [],
        "containerd shim sockets": sorted(os.listdir(SHIM_SOCKET_DIR)) if SHIM_SOCKET_DIR.is_dir() else [],
        "kubelet paths": [str(path) for path in KUBELET_HOST_PATHS if path.exists()],
    }


def client_cache_env(directory):
    """kubectl's and helm's caches and settings in `directory`, not under the user's home."""
    return {"KUBECACHEDIR": str(directory / "kube"), "HELM_CACHE_HOME": str(directory / "helm-cache"),
            "HELM_CONFIG_HOME": str(directory / "helm-config"), "HELM_DATA_HOME": str(directory / "helm-data")}


# ---------------------------------------------------------------- certificates

def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _leaf_certificate(pki, name, subject, usage, alt_names=()):
    key, csr, crt, ext = (pki / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", subject)
    lines = ["basicConstraints = CA:FALSE", "keyUsage = critical, digitalSignature, keyEncipherment",
             f"extendedKeyUsage = {usage}"]
    if alt_names:
        lines.append("subjectAltName = " + ", ".join(alt_names))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "7",
             "-extfile", str(ext), "-out", str(crt))
    csr.unlink()
    ext.unlink()


def make_certificates(pki):
    """A CA, the serving and client certificates of every component, the service-account key pair."""
    pki.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-days", "7",
             "-subj", "/CN=asya-e2e-local-ca")
    loopback_names = ["IP:127.0.0.1", "DNS:localhost", f"DNS:{NODE_NAME}"]
    _leaf_certificate(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", loopback_names + [
        "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local", "IP:10.0.0.1"])
    _leaf_certificate(pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth", loopback_names)
    # system:masters: the kubelet's webhook authorizer lets the apiserver exec and read logs.
    _leaf_certificate(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
                      "clientAuth")
    _leaf_certificate(pki, "admin", "/O=system:masters/CN=asya-e2e-admin", "clientAuth")
    _leaf_certificate(pki, "controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    _leaf_certificate(pki, "scheduler", "/CN=system:kube-scheduler", "clientAuth")
    _leaf_certificate(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(pki / "service-account.key"))
    _openssl("pkey", "-in", str(pki / "service-account.key"), "-pubout", "-out", str(pki / "service-account.pub"))


def write_kubeconfig(path, server, pki, user):
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "asya-e2e-local",
        "clusters": [{"name": "asya-e2e-local", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}}],
        "contexts": [{"name": "asya-e2e-local", "context": {"cluster": "asya-e2e-local", "user": user}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------- processes

class Component:
    """One long-running process of the cluster, its output in logs/<name>.log."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv = [str(part) for part in argv]
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as output:
            # A session of its own: a Ctrl-C of pytest reaches pytest only,
            # whose tear-down then stops this in order.
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def running(self):
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines=40):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, healthy, what, timeout=START_TIMEOUT):
        def check():
            if not self.running():
                raise ClusterError(f"{self.name} exited with code {self.process.returncode} before {what}; "
                                   f"end of {self.log_path}:\n{self.log_tail()}")
            try:
                return healthy()
            except Exception:  # not listening yet
                return False

        try:
            wait_for(check, f"{self.name}: {what}", timeout, interval=0.25)
        except AssertionError as exc:
            raise ClusterError(f"{exc}; end of {self.log_path}:\n{self.log_tail()}") from None

    def stop(self, grace=STOP_GRACE_SECONDS):
        if not self.running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def _http_ok(url, context=None, expect=b"ok"):
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.status == 200 and expect in response.read()


def _kill_and_wait(pids, what):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and _is_alive(pid) for pid in pids),
                 f"{what} to exit", 60, interval=0.1)
    except AssertionError as exc:
        log(str(exc))


def _is_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- the cluster built here

def missing_prerequisite(bin_dir=BIN_DIR):
    """One line naming the first thing a LocalCluster lacks here, or None."""
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"):
        if not os.access(bin_dir / binary, os.X_OK):
            return f"{bin_dir / binary} is missing (make k8s-tools builds Kubernetes {KUBERNETES_VERSION})"
    for tool, package in (("etcd", "etcd-server"), ("containerd", "containerd"), ("ctr", "containerd"),
                          ("runc", "runc"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                          ("openssl", "openssl"), ("podman", "podman")):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (Debian package {package}; make k8s-tools installs it)"
    if not (CNI_BIN_DIR / "loopback").exists():
        return f"the CNI loopback plugin is not in {CNI_BIN_DIR} (Debian package containernetworking-plugins)"
    if os.geteuid() != 0:
        return "the local cluster runs containerd and the kubelet, which need root"
    return None


class LocalCluster:
    """A single-node cluster on 127.0.0.1, started on enter and stopped on exit."""

    name = "local"
    reaches_host_loopback = True
    # No pod network here: only hostNetwork pods run.
    host_network_only = True

    def __init__(self, state_dir=STATE_DIR, bin_dir=BIN_DIR, lock_path=None):
        self.state_dir = Path(state_dir)
        self.bin_dir = Path(bin_dir)
        self.run_dir = self.state_dir / "run"
        self.pki = self.run_dir / "pki"
        self.log_dir = self.run_dir / "logs"
        self.containerd_root = self.state_dir / "containerd-root"
        self.containerd_socket = self.run_dir / "containerd.sock"
        self.image_stamps = self.state_dir / "imported"
        self.kubeconfig = self.run_dir / "admin.kubeconfig"
        self.work_dir = self.run_dir / "work"
        self.lock_path = lock_path or os.environ.get(LOCK_VARIABLE) or DEFAULT_LOCK
        self.lock_file = None
        self.components = []
        self.containerd = None
        self.shim_sockets_before = set()
        self.kubelet_paths_before = set(KUBELET_HOST_PATHS)  # nothing is removed before start() looked
        self.figures = {}
        self.footprint_before = self.footprint_after = None
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.bin_dir}:{self.env.get('PATH', '')}:/usr/sbin:/sbin"
        self.env.setdefault("CONTAINERS_CONF", str(REPO_ROOT / ".tools" / "containers.conf"))
        self.env["KUBECONFIG"] = str(self.kubeconfig)
        self.env.update(client_cache_env(self.run_dir / "client-cache"))

    # -- the context manager

    def __enter__(self):
        reason = missing_prerequisite(self.bin_dir)
        if reason:
            raise ClusterUnavailable(reason)
        self._take_lock()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def _take_lock(self):
        self.lock_file = open(self.lock_path, "a")
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another local cluster runs (lock {self.lock_path} held): waiting for it to finish")
            started = time.monotonic()
            fcntl.flock(self.lock_file, fcntl.LOCK_EX)
            self.figures["waiting for another session's cluster"] = time.monotonic() - started

    def _release_lock(self):
        if self.lock_file is not None:
            self.lock_file.close()  # closing drops the flock
            self.lock_file = None

    # -- bring-up

    def start(self):
        started = time.monotonic()
        self.remove_leftovers()
        # Taken with the lock held and an earlier run's leftovers gone: the
        # check after tear-down is about this run only.
        self.footprint_before = host_footprint()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for directory in (self.log_dir, self.work_dir, self.containerd_root, self.image_stamps):
            directory.mkdir(parents=True, exist_ok=True)
        if len(str(self.containerd_socket)) + len(".ttrpc") > 107:
            raise ClusterUnavailable(f"{self.containerd_socket} is too long for a Unix socket; "
                                     "clone the repository to a shorter path")
        self.shim_sockets_before = set(os.listdir(SHIM_SOCKET_DIR)) if SHIM_SOCKET_DIR.is_dir() else set()
        self.kubelet_paths_before = {path for path in KUBELET_HOST_PATHS if path.exists()}
        first = free_loopback_ports(7)
        names = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kubelet", "kubelet-healthz")
        self.ports = {name: first + offset for offset, name in enumerate(names)}
        make_certificates(self.pki)
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        write_kubeconfig(self.kubeconfig, self.server, self.pki, "admin")
        for user in ("controller-manager", "scheduler", "kubelet"):
            write_kubeconfig(self.run_dir / f"{user}.kubeconfig", self.server, self.pki, user)

        self._start_etcd()
        self._start_containerd()
        self._start_apiserver()
        self._start_controller_manager_and_scheduler()
        self.import_images([PAUSE_IMAGE], build_pause=True)
        self._start_kubelet()
        self._wait_node_ready()
        self._wait_default_service_account()
        self.figures["bring-up"] = time.monotonic() - started
        log(f"Kubernetes {KUBERNETES_VERSION} up in {self.figures['bring-up']:.1f} s "
            f"(apiserver {self.server}, kubeconfig {self.kubeconfig})")

    def _component(self, name, argv):
        component = Component(name, argv, self.log_dir, env=self.env).start()
        self.components.append(component)
        self._record_pids()
        return component

    def _record_pids(self):
        pids = {component.name: component.pid for component in self.components}
        (self.run_dir / "pids.json").write_text(json.dumps(pids, indent=1) + "\n")

    def _start_etcd(self):
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        etcd = self._component("etcd", [
            "etcd", "--name", "asya-e2e", "--data-dir", self.run_dir / "etcd",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"asya-e2e={peer}", "--initial-cluster-state", "new",
            "--log-level", "warn"])
        etcd.wait_healthy(lambda: _http_ok(f"{client}/health", expect=b'"health":"true"'), "healthy")

    def _containerd_config(self):
        cni_conf = self.run_dir / "cni"
        cni_conf.mkdir()
        # Only the loopback plugin: it makes the node Ready and creates no
        # interface; hostNetwork pods never call it.
        (cni_conf / "10-loopback.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "asya-loopback", "plugins": [{"type": "loopback"}]}, indent=1))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{self.containerd_root}"
state = "{self.run_dir / 'containerd-state'}"
# The opt plugin would write /opt/containerd; the other snapshotters only
# complain here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in
  # runc ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  Root = "{self.run_dir / 'runc'}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
"""
        path = self.run_dir / "containerd.toml"
        path.write_text(config)
        return path

    def _start_containerd(self):
        config = self._containerd_config()
        covers = self.run_dir / "proc-sys"
        binds = []
        for name, value in KUBELET_KERNEL_SETTINGS.items():
            cover = covers / name.replace("/", ".")
            cover.parent.mkdir(exist_ok=True)
            cover.write_text(value + "\n")
            binds.append(f"mount --bind {cover} /proc/sys/{name}")
        # unshare execs the shell, which execs containerd: one PID, whose
        # mount namespace the kubelet joins later (nsenter).
        script = " && ".join(binds + [f'exec containerd --config "{config}"'])
        self.containerd = self._component(
            "containerd", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        self.containerd.wait_healthy(lambda: self.ctr("version", check=False).returncode == 0, "serving")

    def ctr(self, *args, check=True, timeout=600):
        argv = ["ctr", "--address", str(self.containerd_socket), "--namespace", CONTAINERD_NAMESPACE, *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _tls_context(self, client=True):
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if client:
            context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _start_apiserver(self):
        pki = self.pki
        apiserver = self._component("kube-apiserver", [
            "kube-apiserver",
            "--etcd-servers", f"http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address", "127.0.0.1", "--secure-port", self.ports["apiserver"],
            # No Endpoints for the kubernetes Service: nothing routes to it.
            "--endpoint-reconciler-type", "none",
            "--tls-cert-file", pki / "apiserver.crt", "--tls-private-key-file", pki / "apiserver.key",
            "--client-ca-file", pki / "ca.crt",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", pki / "service-account.pub",
            "--service-account-signing-key-file", pki / "service-account.key",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--authorization-mode", "Node,RBAC",
            "--kubelet-client-certificate", pki / "apiserver-kubelet-client.crt",
            "--kubelet-client-key", pki / "apiserver-kubelet-client.key",
            "--kubelet-certificate-authority", pki / "ca.crt",
            # The node's name resolves to 127.0.0.1; its InternalIP is the
            # host's non-loopback address, which nothing may dial.
            "--kubelet-preferred-address-types", "Hostname",
            "--profiling=false",
        ])
        context = self._tls_context()
        apiserver.wait_healthy(lambda: _http_ok(f"{self.server}/readyz", context), "ready")

    def _start_controller_manager_and_scheduler(self):
        kubeconfig = self.run_dir / "controller-manager.kubeconfig"
        manager = self._component("kube-controller-manager", [
            "kube-controller-manager", "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1", "--secure-port", self.ports["controller-manager"],
            "--leader-elect=false", "--use-service-account-credentials=true",
            "--service-account-private-key-file", self.pki / "service-account.key",
            "--root-ca-file", self.pki / "ca.crt", "--profiling=false",
            # Its default is under /usr/libexec, which it would create.
            "--flex-volume-plugin-dir", self.run_dir / "volume-plugins"])
        kubeconfig = self.run_dir / "scheduler.kubeconfig"
        scheduler = self._component("kube-scheduler", [
            "kube-scheduler", "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1", "--secure-port", self.ports["scheduler"],
            "--leader-elect=false", "--profiling=false"])
        # Their serving certificates are self-signed in memory: health only, on loopback.
        insecure = ssl._create_unverified_context()
        manager.wait_healthy(lambda: _http_ok(f"https://127.0.0.1:{self.ports['controller-manager']}/healthz",
                                              insecure), "healthy")
        scheduler.wait_healthy(lambda: _http_ok(f"https://127.0.0.1:{self.ports['scheduler']}/healthz",
                                                insecure), "healthy")

    def _kubelet_config(self):
        root = self.run_dir / "kubelet"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet-healthz"],
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            # A cgroup v1 host, with swap the kubelet would refuse.
            "failCgroupV1": False, "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "clusterDomain": "cluster.local",
            "podLogsDir": str(self.run_dir / "pod-logs"),
            "volumePluginDir": str(self.run_dir / "volume-plugins"),
            # The images came from imports, not a registry: never collect them,
            # and never evict a pod because another helper filled the disk.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "rotateCertificates": False, "serverTLSBootstrap": False,
            "registerNode": True,
        }
        path = self.run_dir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path, root

    def _start_kubelet(self):
        config, root = self._kubelet_config()
        kubelet = self._component("kubelet", [
            "nsenter", f"--mount=/proc/{self.containerd.pid}/ns/mnt", "--",
            self.bin_dir / "kubelet", "--config", config, "--kubeconfig", self.run_dir / "kubelet.kubeconfig",
            "--root-dir", root, "--hostname-override", NODE_NAME])
        kubelet.wait_healthy(lambda: _http_ok(f"http://127.0.0.1:{self.ports['kubelet-healthz']}/healthz"),
                             "healthy")
        self.kubelet = kubelet

    def kubectl(self, *args, check=True, timeout=120):
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _wait_node_ready(self):
        def ready():
            result = self.kubectl("get", "node", NODE_NAME, "-o",
                                  "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            return result.stdout.strip() == "True"

        self.kubelet.wait_healthy(ready, f"node {NODE_NAME} Ready")

    def _wait_default_service_account(self):
        # Pods cannot be created in a namespace before its default ServiceAccount exists.
        self.kubelet.wait_healthy(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            "the default ServiceAccount")

    # -- images

    def import_images(self, images, build_pause=False):
        """Put podman's images into containerd's k8s.io namespace (skipped when unchanged)."""
        if build_pause:
            subprocess.run(["bash", str(KUBERNETES_DIR / "build-pause.sh"), PAUSE_IMAGE], check=True,
                           env=self.env)
        started = time.monotonic()
        listed = set(self.ctr("images", "list", "--quiet").stdout.split())
        for image in images:
            image_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                                      capture_output=True, text=True, env=self.env)
            if image_id.returncode != 0:
                raise ClusterError(f"image {image} is not in podman (make images builds it)")
            stamp = self.image_stamps / image.replace("/", "_").replace(":", "_")
            if image in listed and stamp.exists() and stamp.read_text() == image_id.stdout.strip():
                continue
            archive = self.work_dir / "image.tar"
            subprocess.run(["podman", "save", "--format", "docker-archive", "--output", str(archive), image],
                           check=True, env=self.env, stdout=subprocess.DEVNULL)
            try:
                self.ctr("images", "import", str(archive))
            finally:
                archive.unlink()
            stamp.write_text(image_id.stdout.strip())
            log(f"imported {image} into containerd")
        if not build_pause:
            self.figures["image import (skipped when unchanged)"] = time.monotonic() - started

    # -- tear-down

    def stop(self):
        """Stop everything started, in reverse, and remove what it left; never raises."""
        started = time.monotonic()
        try:
            self.figures["memory of its processes at tear-down (MB, RSS)"] = self.resident_megabytes()
            by_name = {component.name: component for component in self.components}
            kubelet = by_name.pop("kubelet", None)
            if kubelet:
                kubelet.stop()
            if self.containerd is not None and self.containerd.running():
                self._remove_containers()
            for component in reversed(list(by_name.values())):
                try:
                    component.stop()
                except Exception as exc:
                    log(f"stopping {component.name}: {exc!r}")
            self.remove_leftovers()
            if self.footprint_before is not None:
                self.footprint_after = host_footprint()
        finally:
            self.components = []
            self.containerd = None
            self._release_lock()
        self.figures["tear-down"] = time.monotonic() - started

    def resident_megabytes(self):
        """Resident memory of the cluster's own processes and shims (not the pods')."""
        marker, total_kib = str(self.state_dir), 0
        for pid in cluster_processes():
            if marker in _cmdline(pid):
                try:
                    total_kib += proc_status_kib(pid, "VmRSS:")
                except (OSError, RuntimeError):
                    pass
        return total_kib / 1024

    def _remove_containers(self):
        """Every pod container and sandbox, killed and deleted: their shims exit with them."""
        try:
            tasks = self.ctr("tasks", "list", "--quiet", check=False, timeout=60).stdout.split()
            for task in tasks:
                self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=60)
            for task in tasks:
                self.ctr("tasks", "delete", "--force", task, check=False, timeout=60)
            containers = self.ctr("containers", "list", "--quiet", check=False, timeout=60).stdout.split()
            if containers:
                self.ctr("containers", "delete", *containers, check=False, timeout=120)
        except Exception as exc:  # what is left is killed below, by process
            log(f"removing containers through ctr: {exc!r}")

    def remove_leftovers(self):
        """Kill this cluster's processes (an earlier run's too), remove its cgroups and shim sockets."""
        marker = str(self.state_dir)
        ours = [pid for pid, exe in cluster_processes().items()
                if pid != os.getpid() and marker in _cmdline(pid)]
        if ours:
            log(f"killing {len(ours)} leftover cluster process(es): {sorted(ours)}")
            _kill_and_wait(ours, "the cluster's processes")
        in_pods = set()
        for cgroup in kubepods_cgroups():
            for procs in Path(cgroup).rglob("cgroup.procs"):
                try:
                    in_pods.update(int(pid) for pid in procs.read_text().split())
                except OSError:
                    pass
        if in_pods:
            log(f"killing {len(in_pods)} pod process(es) left in {KUBEPODS_CGROUP} cgroups")
            _kill_and_wait(sorted(in_pods), "the pods' processes")
        for cgroup in kubepods_cgroups():
            self._remove_cgroup_tree(Path(cgroup))
        for path in KUBELET_HOST_PATHS:
            if path not in self.kubelet_paths_before:
                shutil.rmtree(path, ignore_errors=True)
        if SHIM_SOCKET_DIR.is_dir():
            for name in set(os.listdir(SHIM_SOCKET_DIR)) - self.shim_sockets_before:
                try:
                    (SHIM_SOCKET_DIR / name).unlink()
                except OSError:
                    pass
            for directory in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
                try:
                    directory.rmdir()  # only when empty: another containerd may use it
                except OSError:
                    break

    @staticmethod
    def _remove_cgroup_tree(top):
        def remove():
            directories = sorted((path for path in top.rglob("*") if path.is_dir()),
                                 key=lambda path: len(path.parts), reverse=True) + [top]
            for directory in directories:
                try:
                    directory.rmdir()
                except OSError:
                    pass
            return not top.exists()

        try:
            wait_for(remove, f"cgroup {top} to be removable", 30, interval=0.2)
        except AssertionError as exc:
            log(str(exc))


# ---------------------------------------------------------------- clusters not built here

class ExistingCluster:
    """A cluster given by its kubeconfig (`make e2e-k8s KUBECONFIG=...`): used, never started or stopped."""

    name = "existing"
    host_network_only = False

    def __init__(self, kubeconfig, work_dir, reaches_host_loopback=False):
        self.kubeconfig = Path(kubeconfig).resolve()
        self.work_dir = Path(work_dir)
        # Unknown in general: the suite then runs its own in-cluster broker.
        self.reaches_host_loopback = reaches_host_loopback
        self.figures = {}
        self.env = dict(os.environ, **client_cache_env(self.work_dir / "client-cache"))

    def __enter__(self):
        if not self.kubeconfig.is_file():
            raise ClusterUnavailable(f"no kubeconfig at {self.kubeconfig}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info):
        pass

    def import_images(self, images, build_pause=False):
        """Nothing to do: an existing cluster pulls its images (push them first: make push REGISTRY=...)."""


KIND_CLUSTER_NAME = "asya-e2e"
KIND_CONFIG = Path(__file__).resolve().parent / "kind-config.yaml"
KIND_NODE_IMAGE_VARIABLE = "ASYA_E2E_KIND_NODE_IMAGE"


def kind_node_images(config_path=KIND_CONFIG):
    override = os.environ.get(KIND_NODE_IMAGE_VARIABLE)
    if override:
        return [override]
    config = yaml.safe_load(config_path.read_text())
    return sorted({node["image"] for node in config["nodes"] if node.get("image")})


def kind_missing_prerequisite(which=shutil.which, run=subprocess.run):
    """One line naming the first thing `make e2e-kind` lacks here, or None."""
    if which("kind") is None:
        return "kind is not installed (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
    if which("docker") is None:
        return "docker is not installed (kind runs its node as a docker container)"
    if which("kubectl") is None and not (BIN_DIR / "kubectl").exists():
        return "kubectl is not installed (or make k8s-tools builds one)"
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"docker's daemon does not answer (docker info: {detail})"
    for image in kind_node_images():
        if run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            continue
        pull = run(["docker", "pull", image], capture_output=True, text=True)
        if pull.returncode != 0:
            detail = (pull.stderr.strip().splitlines() or ["no output"])[-1]
            return f"kind's node image {image} is not in docker and cannot be pulled (no registry?): {detail}"
    return None


class KindCluster(ExistingCluster):
    """A kind cluster created for the session and deleted after it (`make e2e-kind`).

    Its pods have a pod network and cluster DNS but cannot reach the host's
    127.0.0.1: the suite runs its broker inside the cluster.
    """

    name = "kind"

    def __init__(self, work_dir):
        super().__init__(Path(work_dir) / "kubeconfig", work_dir)
        self.created = False
        self.env.setdefault("CONTAINERS_CONF", str(REPO_ROOT / ".tools" / "containers.conf"))

    def _run(self, argv, check=True):
        return subprocess.run([str(part) for part in argv], check=check, env=self.env, timeout=900)

    def __enter__(self):
        reason = kind_missing_prerequisite()
        if reason:
            raise ClusterUnavailable(reason)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(KIND_CONFIG.read_text())
        if os.environ.get(KIND_NODE_IMAGE_VARIABLE):
            for node in config["nodes"]:
                node["image"] = os.environ[KIND_NODE_IMAGE_VARIABLE]
        config_path = self.work_dir / "kind-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.created = True  # from here on, leaving deletes it
        try:
            self._run(["kind", "create", "cluster", "--name", KIND_CLUSTER_NAME, "--config", config_path,
                       "--kubeconfig", self.kubeconfig, "--wait", "180s"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info):
        if self.created:
            self._run(["kind", "delete", "cluster", "--name", KIND_CLUSTER_NAME, "--kubeconfig", self.kubeconfig],
                      check=False)
            self.created = False

    def import_images(self, images, build_pause=False):
        """kind load: from docker when it has the image, else through a podman archive."""
        for image in images:
            if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
                self._run(["kind", "load", "docker-image", "--name", KIND_CLUSTER_NAME, image])
                continue
            archive = self.work_dir / "image.tar"
            self._run(["podman", "save", "--format", "docker-archive", "--output", archive, image])
            try:
                self._run(["kind", "load", "image-archive", "--name", KIND_CLUSTER_NAME, archive])
            finally:
                archive.unlink()


CLUSTER_KIND_VARIABLE = "ASYA_E2E_CLUSTER"


def open_cluster(kubeconfig=None, work_dir=None):
    """The suite's cluster: kind when $ASYA_E2E_CLUSTER=kind, an existing one when `kubeconfig` is given,
    else one built here."""
    work_dir = Path(work_dir or STATE_DIR / "other")
    if os.environ.get(CLUSTER_KIND_VARIABLE) == "kind":
        return KindCluster(work_dir)
    if kubeconfig:
        return ExistingCluster(kubeconfig, work_dir)
    return LocalCluster()


def main(argv):
    if argv != ["--kind-preflight"]:
        print("usage: python -m k8s.cluster --kind-preflight", file=sys.stderr)
        return 2
    reason = kind_missing_prerequisite()
    if reason:
        print(f"e2e-kind: skipped: {reason}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
