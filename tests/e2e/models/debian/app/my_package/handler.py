"""Scenario 1: a payload-mode handler inside a package.

ASYA_HANDLER=my_package.handler.process, PYTHONPATH=/app. The reply says which
interpreter ran it, so the test can tell that the chart's default
pythonExecutable (python3 on the image's PATH) was used.
"""

import platform
import sys


def process(payload):
    return {
        "greeting": f"hello, {payload['name']}",
        "name_length": len(payload["name"]),
        "python_executable": sys.executable,
        "python_version": platform.python_version(),
    }
