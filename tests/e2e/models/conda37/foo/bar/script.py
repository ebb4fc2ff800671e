"""Scenario 2: a standalone script, run by the image's only interpreter (3.7).

ASYA_HANDLER=script.predict with PYTHONPATH=/foo/bar, and the chart value
workload.pythonExecutable=/opt/conda/bin/python. The reply names the
interpreter, so the test sees that the runtime ran under Python 3.7.
Kept to Python 3.7 syntax and APIs.
"""

import platform
import sys


def predict(payload):
    values = payload["values"]
    return {
        "prediction": sum(values) / len(values),
        "python_executable": sys.executable,
        "python_version": platform.python_version(),
    }


if __name__ == "__main__":
    print(predict({"values": [1, 2, 3]}))
