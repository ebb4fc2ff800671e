#!/usr/bin/env python3
"""Download the pinned pure-Python wheels an image vendors, and check their sha256.

Image builds run with --network none, so nothing can be pip-installed inside
them: the wheels are fetched here, on the host (PyPI through pip), verified
against the sums pinned below and copied into the image's build context.

Usage: fetch_wheels.py DEST_DIR [--cache .build/wheels]

The cache keeps verified wheels, so a second run downloads nothing.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys

# name, version, wheel file, sha256. pika must match requirements-dev.txt; 1.3.x
# is the last line that supports Python 3.7 (the fake sidecar's floor).
WHEELS = [
    ("pika", "1.3.2", "pika-1.3.2-py3-none-any.whl",
     "0779a7c1fafd805672796085560d290213a465e4f6f76a6fb19e378d8041a14f"),
]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name, version, file_name, expected, cache_dir):
    path = os.path.join(cache_dir, file_name)
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--dest", cache_dir, f"{name}=={version}"],
            check=True,
        )
    actual = sha256_of_file(path)
    if actual != expected:
        os.remove(path)
        sys.exit(f"fetch_wheels: {path} has sha256 {actual}, expected {expected}; removed it. "
                 "The upload on PyPI changed: check it before updating the pinned sum.")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="directory that receives the verified wheels")
    parser.add_argument("--cache", default=os.path.join(REPO_ROOT, ".build", "wheels"))
    args = parser.parse_args(argv)
    os.makedirs(args.dest, exist_ok=True)
    for name, version, file_name, expected in WHEELS:
        path = fetch(name, version, file_name, expected, args.cache)
        shutil.copyfile(path, os.path.join(args.dest, file_name))
        print(f"fetch_wheels: {file_name} (sha256 {expected[:12]}...) -> {args.dest}")


if __name__ == "__main__":
    main()
