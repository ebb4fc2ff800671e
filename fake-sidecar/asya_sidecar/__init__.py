"""A stand-in for the production (Go) Asya sidecar, for end-to-end tests and the demo.

``python3 -m asya_sidecar`` runs it; see sidecar.py for what it does and
queues.py for the directory-based queue transport. Standard library only.
"""

__all__ = ["queues", "runtime_client", "sidecar"]
