"""The releases of the e2e scenarios: one helm release of charts/asya-actor per actor.

The release name is the actor's name and so its queue (asya-<name>), except
where a values file sets actorName (two releases, one queue). They are all
deployed together at the start of a session (pods start in parallel, about
a second each) and each scenario then talks to its own actors. A release
with deploy_at_start=False is deployed by its own test, which needs to see
what happens while it starts.

Unless its values file says otherwise, a release's sidecar is the fake
sidecar standing in for the asya Go sidecar (list dialect, RabbitMQ);
the *-status releases use this project's status dialect on RabbitMQ.
"""

from backends.base import Release

PACKAGE_HANDLER = "package-handler"
CONDA_SCRIPT = "conda-script"
TWO_TREES = "two-trees"
ROUTER = "router"
SPLITTER = "splitter"  # tests/e2e/values/pipeline-router.yaml names it (ROUTER_SPLIT_ACTOR)
RAISES = "raises"
MISSPELT = "misspelt"
SLOW = "slow"
ROUTER_STATUS = "router-status"
SPLITTER_STATUS = "splitter-status"  # named by status-pipeline-router.yaml
RAISES_STATUS = "raises-status"
CRASH = "runtime-crash"
CRASH_FAKE = "runtime-crash-fake"
SIDECAR_KILL = "sidecar-kill"
CLASS_INIT = "class-slow-init"
LONG_CALL = "long-call"
DEADLINE = "handler-timeout"
COMPETE_A = "compete-a"
COMPETE_B = "compete-b"
COMPETE_QUEUE = "compete"  # actorName in competing-consumer.yaml
PIPELINE = ("pipe-1", "pipe-2", "pipe-3")
HOST_VAR_RUN = "host-var-run"
UNPROVISIONED = "unprovisioned"

RELEASES = [
    Release(PACKAGE_HANDLER, "package-handler.yaml"),
    Release(CONDA_SCRIPT, "standalone-script-conda37.yaml"),
    Release(TWO_TREES, "multiple-pythonpath.yaml"),
    Release(ROUTER, "pipeline-router.yaml"),
    Release(SPLITTER, "pipeline-splitter.yaml"),
    Release(RAISES, "handler-raises.yaml"),
    Release(MISSPELT, "misspelt-handler.yaml", becomes_ready=False),
    Release(SLOW, "slow-handler.yaml"),
    Release(ROUTER_STATUS, "status-pipeline-router.yaml"),
    Release(SPLITTER_STATUS, "status-pipeline-splitter.yaml"),
    Release(RAISES_STATUS, "status-handler-raises.yaml"),
    Release(CRASH, "runtime-crash.yaml"),
    Release(CRASH_FAKE, "runtime-crash-fake.yaml"),
    Release(SIDECAR_KILL, "sidecar-kill.yaml"),
    Release(LONG_CALL, "long-call.yaml"),
    Release(DEADLINE, "handler-timeout.yaml"),
    Release(COMPETE_A, "competing-consumer.yaml"),
    Release(COMPETE_B, "competing-consumer.yaml"),
    *(Release(name, "pipeline-echo.yaml") for name in PIPELINE),
]

# Deployed by their own tests.
LATE_RELEASES = {
    CLASS_INIT: Release(CLASS_INIT, "class-slow-init.yaml"),
    HOST_VAR_RUN: Release(HOST_VAR_RUN, "host-var-run.yaml"),
    UNPROVISIONED: Release(UNPROVISIONED, "provision-none.yaml", becomes_ready=False),
}
