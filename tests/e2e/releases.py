"""The releases of the e2e scenarios: one helm release of charts/asya-actor per actor.

The release name is the actor's name and so its queue. They are all deployed
together at the start of a session (pods start in parallel, about a second
each) and each scenario then talks to its own actors.
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

RELEASES = [
    Release(PACKAGE_HANDLER, "package-handler.yaml"),
    Release(CONDA_SCRIPT, "standalone-script-conda37.yaml"),
    Release(TWO_TREES, "multiple-pythonpath.yaml"),
    Release(ROUTER, "pipeline-router.yaml"),
    Release(SPLITTER, "pipeline-splitter.yaml"),
    Release(RAISES, "handler-raises.yaml"),
    Release(MISSPELT, "misspelt-handler.yaml", becomes_ready=False),
    Release(SLOW, "slow-handler.yaml"),
]
