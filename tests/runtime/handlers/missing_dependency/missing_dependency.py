"""A handler whose own import of a third-party library fails."""

import asya_tests_absent_dependency  # deliberately not installed anywhere


def process(payload):
    return asya_tests_absent_dependency.run(payload)
