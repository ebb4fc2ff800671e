"""The CPython interpreters the runtime supports, and where to find them on this machine.

SUPPORTED_MINORS is the one declaration of the range; everything else reads it.
"""

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

SUPPORTED_MINORS = tuple(range(7, 14))  # CPython 3.7 .. 3.13
OLDEST_MINOR = SUPPORTED_MINORS[0]
NEWEST_MINOR = SUPPORTED_MINORS[-1]
# The oldest and the newest supported interpreters must be tested in CI.
REQUIRED_IN_CI = (OLDEST_MINOR, NEWEST_MINOR)
PROBE_TIMEOUT_SECONDS = 30
# Set by coverage.py (`patch = subprocess`) when it measures child processes too.
COVERAGE_IN_CHILDREN = "COVERAGE_PROCESS_CONFIG"


class Interpreter:
    def __init__(self, path, version):
        self.path = path
        self.version = version  # as the interpreter reports it, e.g. "3.7.16"
        self.version_info = tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    @property
    def minor(self):
        return self.version_info[1]

    @property
    def label(self):
        return f"Python {self.version}"

    @property
    def short(self):
        return f"py3.{self.minor}"

    def __repr__(self):
        return f"Interpreter({self.path!r}, {self.version!r})"


def _pyenv_candidate(minor):
    """The newest patch release of 3.<minor> under ~/.pyenv/versions, or None."""
    best = None
    for directory in (Path.home() / ".pyenv" / "versions").glob(f"3.{minor}.*"):
        match = re.fullmatch(rf"3\.{minor}\.(\d+)", directory.name)
        executable = directory / "bin" / "python3"
        if match and os.access(str(executable), os.X_OK):
            patch = int(match.group(1))
            if best is None or patch > best[0]:
                best = (patch, str(executable))
    return best[1] if best else None


def probe_version(path):
    """The version the interpreter at path reports ("3.7.16"), or raise OSError/SubprocessError."""
    probe = subprocess.run(
        [path, "-I", "-c", "import platform; print(platform.python_version())"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=PROBE_TIMEOUT_SECONDS,
    )
    return probe.returncode, probe.stdout.decode(errors="replace").strip()


@functools.lru_cache(maxsize=None)
def find_interpreter(minor):
    """Return (Interpreter, None) for CPython 3.<minor>, or (None, why it is missing)."""
    looked = f"~/.pyenv/versions/3.{minor}.*/bin/python3 and python3.{minor} on PATH"
    if minor == sys.version_info.minor and os.environ.get(COVERAGE_IN_CHILDREN):
        # `make test-cov`: runs on this minor version use the interpreter that
        # has coverage, so that they count.
        return Interpreter(sys.executable, platform.python_version()), None
    path = _pyenv_candidate(minor) or shutil.which(f"python3.{minor}")
    if path is None:
        return None, f"Python 3.{minor} not found (looked for {looked})"
    try:
        returncode, version = probe_version(path)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"Python 3.{minor} at {path} does not run: {exc}"
    if returncode != 0 or not version.startswith(f"3.{minor}."):
        return None, f"{path} is not a working Python 3.{minor} (it printed {version!r})"
    return Interpreter(path, version), None


def find_interpreters():
    """Every supported CPython found, oldest first."""
    found = (find_interpreter(minor)[0] for minor in SUPPORTED_MINORS)
    return [interpreter for interpreter in found if interpreter is not None]


def interpreter_at(path):
    """The Interpreter at an explicit path; ValueError if it does not run."""
    try:
        returncode, version = probe_version(path)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"{path} does not run: {exc}") from None
    if returncode != 0 or not re.match(r"\d+\.\d+\.\d+", version):
        raise ValueError(f"{path} is not a working Python (it printed {version!r})")
    return Interpreter(path, version)


def oldest_and_newest(interpreters):
    interpreters = list(interpreters)
    return interpreters if len(interpreters) <= 1 else [interpreters[0], interpreters[-1]]


def ci_requested():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
