"""Which interpreters the black-box tests run on, and CI's demand for the oldest and newest."""

import os

import pytest

from asya_testkit.interpreters import REQUIRED_IN_CI, ci_requested, find_interpreter


@pytest.mark.parametrize("minor", REQUIRED_IN_CI, ids=[f"py3.{minor}" for minor in REQUIRED_IN_CI])
def test_interpreter_required_in_ci_is_present(minor):
    interpreter, why_missing = find_interpreter(minor)
    if interpreter is None:
        if ci_requested():
            pytest.fail(f"{why_missing}; CI must run the black-box tests on Python 3.{minor}", pytrace=False)
        pytest.skip(why_missing)
    assert interpreter.version.startswith(f"3.{minor}.")


def fake_pyenv_interpreter(home, version):
    bin_dir = home / ".pyenv" / "versions" / version / "bin"
    bin_dir.mkdir(parents=True)
    executable = bin_dir / "python3"
    executable.write_text(f"#!/bin/sh\necho {version}\n")
    executable.chmod(0o755)


def test_newest_patch_release_of_a_minor_is_chosen(tmp_path, monkeypatch):
    for version in ("3.9.2", "3.9.10", "3.9.9", "3.9.11t", "3.10.1"):
        fake_pyenv_interpreter(tmp_path, version)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", os.defpath)

    interpreter, _ = find_interpreter.__wrapped__(9)

    assert interpreter.version == "3.9.10"
    assert interpreter.path == str(tmp_path / ".pyenv/versions/3.9.10/bin/python3")


def test_a_missing_minor_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))

    interpreter, why_missing = find_interpreter.__wrapped__(8)

    assert interpreter is None
    assert why_missing == (
        "Python 3.8 not found (looked for ~/.pyenv/versions/3.8.*/bin/python3 and python3.8 on PATH)"
    )
