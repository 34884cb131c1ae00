"""pytest plugin for mutation runs (scripts/mutation.sh loads it with -p): Hypothesis derandomized
with few examples, so one mutant's tests take seconds. Not used by CI."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "mutation",
    derandomize=True,
    max_examples=int(os.environ.get("MUTATION_MAX_EXAMPLES", "10")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
