"""The podman backend of the e2e suite (make e2e).

base.py holds the interface (ActorBackend) and what the suite shares;
podman.py is the adapter. The chart on real clusters is tests/e2e/k8s's.
Only tests/e2e imports them.
"""
