"""A real container registry for the tests that push images: Debian's
docker-registry (the distribution project's registry) on a free 127.0.0.1
port, its storage in a directory of the test's. `make registry` installs it."""

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from . import wait
from .ports import free_loopback_ports
from .process import ChildProcess

REGISTRY_BINARY = "docker-registry"
# The single-image manifests podman pushes (OCI, or Docker's v2 schema 2).
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def registry_unavailable_reason():
    """One line saying why no registry can run here, or None."""
    if shutil.which(REGISTRY_BINARY) is None:
        return "docker-registry is not installed (make registry installs it)"
    return None


class Registry:
    """A context manager: the registry runs inside the `with`, plain HTTP on 127.0.0.1 only."""

    def __init__(self, work_dir):
        self.work_dir = Path(work_dir)
        self.port = free_loopback_ports()
        self.process = None

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.work_dir / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.process = ChildProcess([REGISTRY_BINARY, "serve", config], env={"PATH": "/usr/bin:/bin"},
                                    log_path=self.work_dir / "registry.log", label="the registry").start()
        try:
            wait.wait_for(self._answers, f"the registry to answer on {self.host}")
        except AssertionError:
            self.process.close()
            raise AssertionError(f"the registry did not start; its log:\n{self.process.log_text()}") from None
        return self

    def __exit__(self, *exc_info):
        self.process.close()

    def _answers(self):
        if not self.process.alive():
            raise AssertionError(f"the registry exited; its log:\n{self.process.log_text()}")
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=5) as response:
                return response.status == 200
        except OSError:  # not listening yet (URLError is an OSError)
            return False

    def tags(self, repository):
        """The tags the registry holds for repository ([] when it holds none)."""
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/{repository}/tags/list", timeout=30) as response:
                return json.load(response).get("tags") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def missing_blobs(self, repository, tag):
        """The digests the tag's manifest names (config and layers) that the registry lacks."""
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            manifest = json.load(response)
        digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
        missing = []
        for digest in digests:
            head = urllib.request.Request(f"http://{self.host}/v2/{repository}/blobs/{digest}", method="HEAD")
            try:
                with urllib.request.urlopen(head, timeout=30):
                    pass
            except urllib.error.HTTPError:
                missing.append(digest)
        return missing

    def registries_conf(self):
        """A registries.conf (for CONTAINERS_REGISTRIES_CONF) that lets podman use this plain-HTTP registry."""
        path = self.work_dir / "registries.conf"
        path.write_text(f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n')
        return path
