"""Where the code under test lives. ASYA_TEST_RUNTIME_DIR puts another copy of
the runtime (say, the file shipped in the image) under test."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
RUNTIME_DIR = Path(os.environ.get("ASYA_TEST_RUNTIME_DIR") or REPO_ROOT / "runtime").resolve()
RUNTIME_SCRIPT = RUNTIME_DIR / "asya_runtime.py"
FAKE_SIDECAR_DIR = REPO_ROOT / "fake-sidecar"
CHART_DIR = REPO_ROOT / "charts" / "asya-actor"
PROTOCOL_DOC = REPO_ROOT / "docs" / "protocol.md"
SOCKET_NAME = "asya-runtime.sock"
READY_FILE_NAME = "runtime-ready"
