#!/usr/bin/env bash
# Apply sageLLM's LMDeploy patches (0001..0004, in order) to an LMDeploy v0.11.0 source tree.
#
# usage: apply_patches.sh [--revert] [TREE]
#
# TREE is a directory holding lmdeploy/pytorch/...: the submodule third_party/lmdeploy (the
# default), an unpacked sdist, or an unpacked wheel (the PyPI wheel carries the same Python
# sources). Patch paths are relative to TREE (-p1).
#
# Each patch is in one of three states, found with `git apply --check` both ways:
#   applied      its reverse applies cleanly        -> skipped (re-running is a no-op)
#   not applied  it applies cleanly                 -> applied
#   conflict     neither                            -> error, exit 1
# On a conflict the patches this run already applied are reverted, so the tree is left as it
# was found. --revert takes the applied patches back out, newest first (to refresh them).
#
# Exit: 0 done (or nothing to do), 1 conflict or failed apply, 2 bad usage or not a source tree.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_TREE="$(cd "$HERE/../.." && pwd)/lmdeploy"
PATCHES=(
    0001-extend-kv-manager-api.patch
    0002-add-prefix-reuse-hooks.patch
    0003-scheduler-ir-integration.patch
    0004-comm-backend-hooks.patch
)

die() {
    local code=$1
    shift
    echo "apply_patches.sh: error: $*" >&2
    exit "$code"
}

revert=0
tree=""
for arg in "$@"; do
    case "$arg" in
        --revert) revert=1 ;;
        -h | --help)
            sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*) die 2 "unknown option '$arg' (usage: apply_patches.sh [--revert] [TREE])" ;;
        *)
            [[ -z "$tree" ]] || die 2 "more than one TREE given"
            tree="$arg"
            ;;
    esac
done
tree="${tree:-$DEFAULT_TREE}"

command -v git >/dev/null || die 2 "git is needed (git apply works on plain directories too)"
[[ -d "$tree" ]] || die 2 "$tree: no such directory"
tree="$(cd "$tree" && pwd)"
if [[ ! -f "$tree/lmdeploy/pytorch/paging/scheduler.py" ]]; then
    if [[ "$tree" == "$DEFAULT_TREE" ]]; then
        die 2 "$tree is empty: run 'git submodule update --init --depth 1 third_party/lmdeploy', or pass an unpacked lmdeploy 0.11.0 sdist/wheel directory"
    fi
    die 2 "$tree: not an LMDeploy source tree (no lmdeploy/pytorch/paging/scheduler.py)"
fi
for patch in "${PATCHES[@]}"; do
    [[ -f "$HERE/$patch" ]] || die 2 "missing patch file $HERE/$patch"
done

# git apply inside TREE, never in a repository above it: with TREE as the ceiling's child, git
# finds TREE's own repository (the submodule) or none, and then works like patch(1) on files.
git_apply() {
    GIT_CEILING_DIRECTORIES="$(dirname "$tree")" git -C "$tree" apply --whitespace=nowarn "$@"
}

is_applied() { git_apply --reverse --check "$HERE/$1" 2>/dev/null; }
can_apply() { git_apply --check "$HERE/$1" 2>/dev/null; }

if ((revert)); then
    for ((i = ${#PATCHES[@]} - 1; i >= 0; i--)); do
        patch="${PATCHES[i]}"
        if is_applied "$patch"; then
            git_apply --reverse "$HERE/$patch"
            echo "reverted  $patch"
        else
            echo "not applied, skipped  $patch"
        fi
    done
    exit 0
fi

applied_now=()
rollback() {
    for ((i = ${#applied_now[@]} - 1; i >= 0; i--)); do
        git_apply --reverse "$HERE/${applied_now[i]}" || echo "apply_patches.sh: could not revert ${applied_now[i]}" >&2
    done
}

for patch in "${PATCHES[@]}"; do
    if is_applied "$patch"; then
        echo "already applied  $patch"
    elif can_apply "$patch"; then
        git_apply "$HERE/$patch"
        applied_now+=("$patch")
        echo "applied          $patch"
    else
        details="$(git_apply --check "$HERE/$patch" 2>&1 || true)"
        rollback
        {
            echo "apply_patches.sh: error: $patch does not apply to $tree, nor is it already applied."
            echo "  The tree differs from LMDeploy v0.11.0 (4abccafd45daffb330cff41b3314069ce8d7f7bd) where the patch edits it:"
            echo "$details" | sed 's/^/    /'
            if ((${#applied_now[@]})); then
                echo "  Reverted what this run applied (${applied_now[*]}); the tree is as it was."
            else
                echo "  Nothing was changed."
            fi
        } >&2
        exit 1
    fi
done
echo "LMDeploy patches: ${#applied_now[@]} applied now, $((${#PATCHES[@]} - ${#applied_now[@]})) already in $tree"
