"""Build the directory the runtime image ships: the runtime, its launcher, and
bytecode for every CPython 3.7+ found on this machine.

    python3 tools/compile_runtime.py OUT [--runtime FILE] [--python PATH ...]

OUT receives asya_runtime.py and __main__.py (0644), and __pycache__/ (0755)
holding asya_runtime.cpython-3X.pyc and __main__.cpython-3X.pyc (0644) for
each interpreter: compiled by that interpreter itself, because a .pyc is only
read by the CPython minor version that wrote it. The .pyc files are
checked-hash ones (PEP 552): they carry a hash of the source instead of its
mtime, so they stay valid when the init container's copy gives the files a
new mtime, and Python ignores them (compiling the source) if the file is
edited. A version with no interpreter here gets no .pyc; Python then compiles
the source at each start, as it does for a script.

The bench (bench/servers.py) uses the same functions, so it measures the
runtime started the way a pod starts it: `python3 OUT`.

Standard library only; any Python 3.7+ can run it.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_SOURCE = os.path.join(REPO, "runtime", "asya_runtime.py")
LAUNCHER_SOURCE = os.path.join(REPO, "runtime", "__main__.py")
RUNTIME_NAME = "asya_runtime.py"
LAUNCHER_NAME = "__main__.py"
CACHE_DIR = "__pycache__"
OLDEST_SUPPORTED = (3, 7)
NEWEST_SUPPORTED = (3, 13)

# Run by each target interpreter (-I: no PYTHON* variables, such as
# PYTHONPYCACHEPREFIX, can move the output). Prints one line per file compiled.
COMPILE_PROGRAM = """
import py_compile, sys
if sys.implementation.name != "cpython":
    sys.exit("not CPython: " + sys.implementation.name)
for source in sys.argv[1:]:
    print(py_compile.compile(source, doraise=True,
                             invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH))
"""


class Interpreter:
    def __init__(self, path, version):
        self.path = path
        self.version = version  # (major, minor, micro)

    @property
    def label(self):
        return "Python {}.{}.{}".format(*self.version)

    @property
    def short(self):
        return "py{}.{}".format(*self.version[:2])

    @property
    def minor_version(self):
        return "{}.{}".format(*self.version[:2])


def interpreter_version(path):
    """(major, minor, micro) of the interpreter at path, or None if it does not run."""
    try:
        out = subprocess.run(
            [path, "-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(part) for part in match.groups()) if match else None


def find_interpreters():
    """Every CPython 3.7+ under ~/.pyenv/versions or as python3.X on PATH, oldest first.

    One per minor version: the first found (pyenv's, in sorted order, before PATH's).
    """
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python3")))
    for minor in range(OLDEST_SUPPORTED[1], 40):
        found = shutil.which(f"python3.{minor}")
        if found:
            candidates.append(found)
    by_version = {}
    for path in candidates:
        version = interpreter_version(path)
        if version and version[:2] >= OLDEST_SUPPORTED and version[:2] not in by_version:
            by_version[version[:2]] = Interpreter(path, version)
    return [by_version[key] for key in sorted(by_version)]


def supported(interpreters):
    return [i for i in interpreters if OLDEST_SUPPORTED <= i.version[:2] <= NEWEST_SUPPORTED]


def _prepare_out_dir(out_dir):
    """An empty out_dir; refuse to empty a directory this tool did not write."""
    if os.path.isdir(out_dir):
        foreign = sorted(set(os.listdir(out_dir)) - {RUNTIME_NAME, LAUNCHER_NAME, CACHE_DIR})
        if foreign:
            raise SystemExit(
                "compile_runtime: {} holds {} besides a runtime build; give an empty or new directory".format(
                    out_dir, ", ".join(foreign)
                )
            )
        shutil.rmtree(out_dir)
    os.makedirs(os.path.join(out_dir, CACHE_DIR))
    os.chmod(out_dir, 0o755)
    os.chmod(os.path.join(out_dir, CACHE_DIR), 0o755)


def compile_for(interpreter, out_dir):
    """Compile out_dir's two files with `interpreter`; return the .pyc paths it wrote."""
    out_dir = os.path.abspath(out_dir)
    sources = [os.path.join(out_dir, RUNTIME_NAME), os.path.join(out_dir, LAUNCHER_NAME)]
    result = subprocess.run(
        [interpreter.path, "-I", "-c", COMPILE_PROGRAM, *sources],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{interpreter.path} could not compile the runtime:\n{result.stderr.strip()}")
    written = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    for path in written:
        os.chmod(path, 0o644)
    return written


def build(out_dir, interpreters, runtime_source=RUNTIME_SOURCE, launcher_source=LAUNCHER_SOURCE):
    """Fill out_dir with the runtime, the launcher and bytecode from each interpreter.

    out_dir is emptied first (it must be new, empty, or an earlier build). An
    interpreter that cannot compile the files raises RuntimeError.
    """
    _prepare_out_dir(out_dir)
    for source, name in ((runtime_source, RUNTIME_NAME), (launcher_source, LAUNCHER_NAME)):
        target = os.path.join(out_dir, name)
        shutil.copyfile(source, target)
        os.chmod(target, 0o644)
    for interpreter in interpreters:
        compile_for(interpreter, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write (emptied first if it is an earlier build)")
    parser.add_argument("--runtime", default=RUNTIME_SOURCE, help="runtime file (default: %(default)s)")
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter to compile with (repeatable); default: every CPython 3.7..3.13 found",
    )
    args = parser.parse_args(argv)
    if args.python:
        interpreters = []
        for path in args.python:
            version = interpreter_version(path)
            if version is None:
                parser.error(f"{path} does not run")
            interpreters.append(Interpreter(path, version))
    else:
        interpreters = supported(find_interpreters())
    build(args.out_dir, interpreters, runtime_source=args.runtime)
    versions = [i.minor_version for i in interpreters]
    print(
        "compile_runtime: {} with bytecode for Python {}".format(
            args.out_dir, ", ".join(versions) if versions else "no version (no interpreter found)"
        )
    )
    missing = [
        f"3.{minor}"
        for minor in range(OLDEST_SUPPORTED[1], NEWEST_SUPPORTED[1] + 1)
        if f"3.{minor}" not in versions
    ]
    if missing and not args.python:
        print(
            "compile_runtime: no interpreter found for Python {}: those compile the source at "
            "each start (looked under ~/.pyenv/versions and for python3.X on PATH)".format(", ".join(missing))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
