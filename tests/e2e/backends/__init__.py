"""Backends of the e2e suite: the same scenarios on podman pods or on a kind cluster.

base.py holds the interface (ActorBackend) and what both share; podman.py and
kind.py are the adapters. Only tests/e2e imports them.
"""
