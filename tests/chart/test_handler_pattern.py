"""One rule for ASYA_HANDLER in three places: the runtime's HANDLER_PATTERN, the
chart's check of an ASYA_HANDLER env entry, and the schema's pattern for the
value `handler`. Each accepts exactly the names the runtime accepts, non-ASCII
identifiers included (Python allows them after an ASCII first character of each
part, as the runtime's `[A-Za-z_]\\w*` does)."""

import importlib.util
import json
import re

import pytest
from chart_helpers import CHART_DIR, render_many, runtime_values

from asya_testkit.paths import RUNTIME_SCRIPT

NAMES = [
    "my_package.handler.process",
    "script.predict",
    "model.Summarizer.predict",
    "_private._handler",
    "modèle.prédire",
    "pkg.a²",
    "pkg.数字",
    "x.y1",
    "é.process",
    "1pkg.process",
    "process",
    "pkg.handler:process",
    "pkg..process",
    "pkg.process.",
    "/foo/bar/script.py",
    "pkg.pro-cess",
]


@pytest.fixture(scope="module")
def runtime_pattern():
    spec = importlib.util.spec_from_file_location("asya_runtime_for_pattern", str(RUNTIME_SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HANDLER_PATTERN


def test_schema_and_template_carry_the_same_pattern():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    template_pattern = re.search(
        r'define "asya-actor.handlerPattern" -}}\n(.*?)\n', helpers).group(1)
    assert schema["properties"]["handler"]["pattern"] == "^$|" + template_pattern


@pytest.fixture(scope="module")
def verdicts(chart):
    """{(name, "value" | "env"): whether the chart renders it}."""
    cases = {}
    for name in NAMES:
        as_value = runtime_values()
        as_value["handler"] = name
        as_env = runtime_values(env=[{"name": "ASYA_HANDLER", "value": name}])
        as_env["handler"] = ""
        cases[(name, "value")] = (as_value, None)
        cases[(name, "env")] = (as_env, None)
    return {key: rendered is not None for key, (rendered, _) in render_many(chart, cases).items()}


@pytest.mark.parametrize("name", NAMES)
def test_chart_accepts_exactly_what_the_runtime_accepts(verdicts, runtime_pattern, name):
    runtime_accepts = bool(runtime_pattern.match(name))
    assert verdicts[(name, "value")] == runtime_accepts, f"schema disagrees with the runtime on {name!r}"
    assert verdicts[(name, "env")] == runtime_accepts, f"template disagrees with the runtime on {name!r}"


def test_the_list_covers_both_verdicts(runtime_pattern):
    verdicts = {bool(runtime_pattern.match(name)) for name in NAMES}
    assert verdicts == {True, False}
    assert runtime_pattern.match("modèle.prédire"), "non-ASCII identifiers are accepted"
