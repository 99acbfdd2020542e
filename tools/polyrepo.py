#!/usr/bin/env python3
"""One git repository per package, and a superproject that puts them back together.

    python tools/polyrepo.py split --out /tmp/repos                  # 15 bare repos + polyrepo.json
    python tools/polyrepo.py compose --split /tmp/repos --out /tmp/sageLLM

``split`` clones this repository into a temporary directory (the monorepo's
own history and refs are never touched), runs ``git subtree split`` for every
package directory, and pushes each result to ``<out>/<distribution>.git``
(bare, branch ``main``) with an annotated tag ``<distribution>-v<version>``
whose message is that version's CHANGELOG entry. ``<out>/polyrepo.json``
records what was split from which commit.

``compose`` makes a new repository holding the monorepo's root files at the
split commit (noxfile.py, constraints.txt, pyproject.toml, tools/, docs/,
...) and every package as a git submodule at its original path, so
``nox -s test-kv_pool`` runs there exactly as in the monorepo. Submodule URLs
are ``file://`` URLs of the split repositories, or ``--url-base`` + the repo
name (e.g. ``../`` for the published layout: siblings of the superproject).

Only commits are split; uncommitted changes are not part of any repository.
Exit status: 0 done, 1 a git command failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from release_notes import ReleaseNotesError, package_version, release_notes
from repo_layout import ROOT, Package, discover, find

MANIFEST = "polyrepo.json"
# file:// submodules are refused by default since git 2.38.1 (CVE-2022-39253); these are our own repos.
ALLOW_FILE = ("-c", "protocol.file.allow=always")
# Used only where git has no identity of its own (CI containers): tags and the compose commit need one.
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "sageLLM polyrepo",
    "GIT_AUTHOR_EMAIL": "polyrepo@sagellm.invalid",
    "GIT_COMMITTER_NAME": "sageLLM polyrepo",
    "GIT_COMMITTER_EMAIL": "polyrepo@sagellm.invalid",
}


class PolyrepoError(Exception):
    """A step failed; the message names the command and what git said."""


class UsageError(PolyrepoError):
    """The arguments cannot work (unknown package, output directory not empty, no manifest)."""


@dataclass(frozen=True, slots=True)
class SplitRepo:
    """One package repository written by ``split``, as recorded in polyrepo.json."""

    path: str  # package directory in the monorepo (and submodule path in the superproject)
    distribution: str
    version: str
    tag: str
    repo: str  # directory name below the split output: <distribution>.git
    head: str  # commit the tag and branch main point at


@dataclass(frozen=True, slots=True)
class Manifest:
    source: str
    commit: str
    repos: list[SplitRepo]

    def dump(self, out: Path) -> None:
        (out / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, split_dir: Path) -> Manifest:
        path = split_dir / MANIFEST
        if not path.is_file():
            raise UsageError(f"{split_dir}: no {MANIFEST}; run 'polyrepo.py split --out {split_dir}' first")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(source=data["source"], commit=data["commit"], repos=[SplitRepo(**r) for r in data["repos"]])


# --------------------------------------------------------------------------- git helpers


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git, return stdout stripped; a failure raises with the command and git's own message."""
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise PolyrepoError(f"git {' '.join(args)} failed (in {cwd or os.getcwd()}):\n  " + "\n  ".join(detail))
    return result.stdout.strip()


def identity_env(cwd: Path) -> dict[str, str]:
    """The environment for commands that record an author: the user's identity, else a neutral one."""
    env = dict(os.environ)
    probe = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=cwd, env=env, capture_output=True)
    if probe.returncode != 0:
        env.update(FALLBACK_IDENTITY)
    return env


def require_empty_dir(path: Path) -> None:
    """Outputs go to a fresh directory, so a rerun never mixes old and new repositories."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path}: exists and is not an empty directory")
    path.mkdir(parents=True, exist_ok=True)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


# --------------------------------------------------------------------------- split


def select(packages: list[Package], names: list[str], root: Path) -> list[Package]:
    """The packages named on the command line (short, distribution or directory), all when none."""
    if not names:
        return packages
    try:
        wanted = {find(name, root).rel for name in names}
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    return [pkg for pkg in packages if pkg.rel in wanted]


def split_one(clone: Path, pkg: Package, commit: str, out: Path) -> SplitRepo:
    """``git subtree split`` one directory and publish it as ``<out>/<distribution>.git`` with its tag."""
    try:
        notes = release_notes(pkg)
        message = f"{notes.distribution} {notes.version}\n\n{notes.body}\n"
    except ReleaseNotesError as exc:  # a tag still marks the version; the notes problem is reported
        print(f"polyrepo: warning: {exc}", file=sys.stderr)
        notes = None
        message = f"{pkg.distribution()} {package_version(pkg)}\n"
    version = notes.version if notes else package_version(pkg)
    tag = f"{pkg.distribution()}-v{version}"
    head = git("subtree", "split", f"--prefix={pkg.rel}", commit, cwd=clone)
    repo = out / f"{pkg.distribution()}.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(repo))
    annotate = ("--annotate", "--force", "--cleanup=verbatim", "--message", message)  # verbatim: keep '#' lines
    git("tag", *annotate, tag, head, cwd=clone, env=identity_env(clone))
    git("push", "--quiet", str(repo), f"{head}:refs/heads/main", f"refs/tags/{tag}", cwd=clone)
    return SplitRepo(pkg.rel, pkg.distribution(), version, tag, repo.name, head)


def split(source: Path, out: Path, rev: str = "HEAD", names: list[str] | None = None) -> Manifest:
    """Write one bare repository per package of ``source`` at ``rev`` into ``out`` (must be empty)."""
    if not source.is_dir():
        raise UsageError(f"{source}: no such directory")
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=source)
    except PolyrepoError:
        raise UsageError(f"{source}: not a git repository, or no commit '{rev}' in it") from None
    require_empty_dir(out)
    with tempfile.TemporaryDirectory(prefix="polyrepo-split-") as tmp:
        clone = Path(tmp) / "clone"
        git("clone", "--quiet", "--no-checkout", str(source), str(clone))
        git("checkout", "--quiet", "--detach", commit, cwd=clone)
        packages = select(discover(clone), names or [], clone)
        if not packages:
            raise UsageError(f"{source} at {commit[:12]}: no package directories found")
        repos = []
        for pkg in packages:
            repos.append(split_one(clone, pkg, commit, out))
            print(f"  {pkg.rel:<48} -> {repos[-1].repo} ({repos[-1].tag})")
    manifest = Manifest(source=str(source.resolve()), commit=commit, repos=repos)
    manifest.dump(out)
    return manifest


def uncommitted(source: Path) -> int:
    """How many paths differ from HEAD: they are not in any split repository, which is worth a note."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=source, capture_output=True, text=True)
    return len(status.stdout.splitlines()) if status.returncode == 0 else 0


# --------------------------------------------------------------------------- compose


def extract_root_files(source: Path, commit: str, dest: Path) -> None:
    """The monorepo's tree at ``commit`` (``git archive``); package directories are removed after."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=source, capture_output=True)
    if archive.returncode != 0:
        raise PolyrepoError(f"git archive {commit} failed in {source}: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryFile() as buffer:
        buffer.write(archive.stdout)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer) as tar:
            tar.extractall(dest, filter="data")


def carried_gitlinks(source: Path, commit: str, package_paths: set[str]) -> list[tuple[str, str]]:
    """Submodules the monorepo itself pins outside the packages (e.g. third_party/lmdeploy): (sha, path)."""
    listing = git("ls-tree", "-r", "-z", commit, cwd=source)
    links = []
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, _kind, sha = meta.split()
        if mode == "160000" and not any(path == p or path.startswith(p + "/") for p in package_paths):
            links.append((sha, path))
    return links


def add_submodules(super_dir: Path, split_dir: Path, repos: list[SplitRepo], url_base: str | None) -> None:
    """``git submodule add`` each split repository at its path, then point .gitmodules at ``url_base``."""
    for repo in repos:
        url = file_url(split_dir / repo.repo)
        git(*ALLOW_FILE, "submodule", "add", "--quiet", "--name", repo.path, url, repo.path, cwd=super_dir)
        checked_out = git("rev-parse", "HEAD", cwd=super_dir / repo.path)
        if checked_out != repo.head:
            raise PolyrepoError(f"{repo.repo}: main is at {checked_out[:12]}, polyrepo.json says {repo.head[:12]}")
        if url_base is not None:
            key = f"submodule.{repo.path}.url"
            git("config", "--file", ".gitmodules", key, url_base + repo.repo, cwd=super_dir)
    git("add", ".gitmodules", cwd=super_dir)


def compose(split_dir: Path, out: Path, url_base: str | None = None, source: Path | None = None) -> Path:
    """Build the superproject in ``out`` (must be empty) from a ``split`` output; returns ``out``."""
    manifest = Manifest.load(split_dir)
    source = source or Path(manifest.source)
    require_empty_dir(out)
    git("init", "--quiet", "--initial-branch=main", str(out))
    extract_root_files(source, manifest.commit, out)
    split_paths = {repo.path for repo in manifest.repos}
    for pkg in discover(out):  # every package directory becomes a submodule, or goes if it was not split
        shutil.rmtree(pkg.path)
        if pkg.rel not in split_paths:
            print(f"polyrepo: note: {pkg.rel} was not split; the superproject leaves it out", file=sys.stderr)
    git("add", "--all", cwd=out)
    add_submodules(out, split_dir, manifest.repos, url_base)
    for sha, path in carried_gitlinks(source, manifest.commit, split_paths):
        git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}", cwd=out)
    subject = f"sageLLM superproject: {len(manifest.repos)} package repositories as submodules"
    body = f"Root files from {manifest.commit}; " + ", ".join(repo.tag for repo in manifest.repos)
    git("commit", "--quiet", "--message", subject, "--message", body, cwd=out, env=identity_env(out))
    return out


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Workflow with the result (add a module, init all, update one): tools/README.md.",
    )
    commands = top.add_subparsers(dest="command", required=True)
    split_cmd = commands.add_parser("split", help="one bare repository per package, with history and a version tag")
    split_cmd.add_argument("--out", type=Path, required=True, help="empty or new directory for the bare repositories")
    split_cmd.add_argument("--source", type=Path, default=ROOT, help="monorepo to split (default: this checkout)")
    split_cmd.add_argument("--rev", default="HEAD", help="commit to split (default: HEAD; the working tree is ignored)")
    split_cmd.add_argument(
        "--package", action="append", default=[], help="short name, distribution or directory (repeatable; default all)"
    )
    compose_cmd = commands.add_parser("compose", help="a superproject with every split repository as a submodule")
    compose_cmd.add_argument("--split", type=Path, required=True, help="directory written by 'split'")
    compose_cmd.add_argument("--out", type=Path, required=True, help="empty or new directory for the superproject")
    compose_cmd.add_argument(
        "--url-base",
        default=None,
        help="submodule URL prefix written to .gitmodules, e.g. '../' or 'https://github.com/org/' "
        "(default: file:// URLs of the split repositories)",
    )
    compose_cmd.add_argument(
        "--source", type=Path, default=None, help="monorepo holding the split commit (default: from polyrepo.json)"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "split":
            source = args.source.resolve()
            manifest = split(source, args.out.resolve(), args.rev, args.package)
            print(f"split {len(manifest.repos)} packages of {manifest.commit[:12]} into {args.out}")
            if changed := uncommitted(source):
                print(f"polyrepo: note: {changed} uncommitted paths in {source} are not in the split", file=sys.stderr)
        else:
            out = compose(args.split.resolve(), args.out.resolve(), args.url_base, args.source)
            print(f"composed {out}; clone it and run: git {' '.join(ALLOW_FILE)} submodule update --init --recursive")
    except UsageError as exc:
        print(f"polyrepo: {exc}", file=sys.stderr)
        return 2
    except (PolyrepoError, ReleaseNotesError) as exc:  # ReleaseNotesError: a package without a version
        print(f"polyrepo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
