"""Hypothesis profiles for the reliability suite.

`make test-reliability` runs the default `short` profile; `make fuzz` runs
`pytest --hypothesis-profile=long`. No example has a deadline: this machine
is shared and the suite must not assert on time.
"""

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("short", max_examples=150, **_COMMON)
settings.register_profile("long", max_examples=2500, **_COMMON)
settings.load_profile("short")
