"""Where the cluster comes from, checked without one: kind's preflight line and the choice itself.

These need no cluster (no fixture of conftest.py starts one), so they run
everywhere, here too, where kind cannot.
"""

from .cluster import (
    CLUSTER_KIND_VARIABLE,
    ExistingCluster,
    KindCluster,
    LocalCluster,
    kind_missing_prerequisite,
    open_cluster,
)


class FakeRun:
    """Stands in for subprocess.run: fails the commands whose first two words are listed."""

    def __init__(self, failing=()):
        self.failing = set(failing)

    def __call__(self, argv, **_kwargs):
        failed = " ".join(argv[:2]) in self.failing

        class Result:
            returncode = 1 if failed else 0
            stdout = ""
            stderr = "Cannot connect to the Docker daemon\n" if failed else ""
        return Result()


def which_only(*present):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_kind_preflight_names_the_first_missing_prerequisite(monkeypatch):
    monkeypatch.delenv("ASYA_E2E_KIND_NODE_IMAGE", raising=False)
    everything = ("kind", "docker", "kubectl")
    assert kind_missing_prerequisite(which_only("docker", "kubectl"), FakeRun()).startswith("kind is not installed")
    assert kind_missing_prerequisite(which_only("kind", "kubectl"), FakeRun()).startswith("docker is not installed")
    assert kind_missing_prerequisite(which_only(*everything), FakeRun({"docker info"})) == (
        "docker's daemon does not answer (docker info: Cannot connect to the Docker daemon)")
    assert kind_missing_prerequisite(which_only(*everything), FakeRun({"docker image", "docker pull"})).startswith(
        "kind's node image kindest/node:v1.32.2 is not in docker and cannot be pulled")
    assert kind_missing_prerequisite(which_only(*everything), FakeRun()) is None


def test_one_place_picks_the_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv(CLUSTER_KIND_VARIABLE, raising=False)
    assert isinstance(open_cluster(), LocalCluster)
    existing = open_cluster(tmp_path / "kubeconfig", tmp_path)
    assert isinstance(existing, ExistingCluster) and existing.kubeconfig == (tmp_path / "kubeconfig").resolve()
    assert not existing.reaches_host_loopback and not existing.host_network_only
    monkeypatch.setenv(CLUSTER_KIND_VARIABLE, "kind")
    assert isinstance(open_cluster(None, tmp_path), KindCluster)
