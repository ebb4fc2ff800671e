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
# boto3 (the SQS transport) and what it imports, as one consistent set: 1.33.x
# is boto3's last line for Python 3.7, and urllib3 1.26 is the release its
# botocore accepts on every Python from 3.7 to 3.13. The venv has a newer
# boto3 (requirements-dev.txt) because kubernetes there needs urllib3 2.
WHEELS = [
    ("pika", "1.3.2", "pika-1.3.2-py3-none-any.whl",
     "0779a7c1fafd805672796085560d290213a465e4f6f76a6fb19e378d8041a14f"),
    ("boto3", "1.33.13", "boto3-1.33.13-py3-none-any.whl",
     "5f278b95fb2b32f3d09d950759a05664357ba35d81107bab1537c4ddd212cd8c"),
    ("botocore", "1.33.13", "botocore-1.33.13-py3-none-any.whl",
     "aeadccf4b7c674c7d47e713ef34671b834bc3e89723ef96d994409c9f54666e6"),
    ("s3transfer", "0.8.2", "s3transfer-0.8.2-py3-none-any.whl",
     "c9e56cbe88b28d8e197cf841f1f0c130f246595e77ae5b5a05b69fe7cb83de76"),
    ("jmespath", "1.0.1", "jmespath-1.0.1-py3-none-any.whl",
     "02e2e4cc71b5bcab88332eebf907519190dd9e6e82107fa7f83b1003a6252980"),
    ("python-dateutil", "2.9.0.post0", "python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
     "a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427"),
    ("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl",
     "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274"),
    ("urllib3", "1.26.20", "urllib3-1.26.20-py2.py3-none-any.whl",
     "0ed14ccfbf1c30a9072c7ca157e4319b70d65f623e91e7b32fadb2853431016e"),
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
