#!/usr/bin/env bash
# Builds the image from the Dockerfile without a registry and without network access during the build:
#   1. the base: PYTHON_IMAGE when given (e.g. python:3.11-slim-bookworm from a registry), else the Debian base
#      that deploy/image/base.sh makes and caches;
#   2. a wheelhouse: every runtime dependency and the build backend, downloaded on the host by pip for the base's
#      Python and glibc, cached under CACHE_DIR by a key of those inputs;
#   3. `ENGINE build --network none --build-context wheels=WHEELHOUSE`: pip in the build installs from it only.
# Prints the image id on its last line.
#
# Usage: deploy/image/build.sh   IMAGE (default voicecall-pipeline), ENGINE (podman, else docker), PYTHON_IMAGE,
#                                PY (a Python 3.11+ with pip; default python3), CACHE_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fail() { echo "build.sh: $*" >&2; exit 1; }

IMAGE=${IMAGE:-voicecall-pipeline}
ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
PY=${PY:-python3}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voicecall-pipeline}
export ENGINE

command -v "$ENGINE" >/dev/null || fail "$ENGINE not found: apt-get install podman runc (deploy/image/setup-host.sh)"
base=${PYTHON_IMAGE:-$("$here/base.sh")}

# What the wheels must fit: the base's Python and glibc, asked of the base itself.
probe='import platform, sys; print("%d.%d" % sys.version_info[:2], *platform.libc_ver()[1].split(".")[:2], platform.machine())'
if ! facts=$("$ENGINE" run --rm --network none --entrypoint python3 "$base" -c "$probe" 2>&1); then
    fail "$ENGINE cannot start a container from $base: $(tail -n1 <<<"$facts") (deploy/image/containers.conf; deploy/image/setup-host.sh installs it)"
fi
read -r pyver glibc_major glibc_minor arch <<<"$facts"
[ "$glibc_major" = 2 ] || fail "unexpected glibc in $base: $facts"
platforms=()
for ((minor = glibc_minor; minor >= 17; minor--)); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
platforms+=(--platform "manylinux2014_$arch")  # pip widens this one to manylinux2010 and manylinux1

requirements=$("$PY" -c 'import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
print(*p["project"]["dependencies"], *p["project"]["optional-dependencies"]["tracing"],
      *p["build-system"]["requires"], sep="\n")' "$root/pyproject.toml") \
    || fail "$PY cannot read pyproject.toml (Python 3.11+ needed)"
key=$(printf '%s\n' "$requirements" "$pyver" "${platforms[@]}" | sha256sum | cut -c1-12)
wheels=$CACHE_DIR/wheels-$key
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/wheels.lock"
# Held until this script ends: one download at a time, and the pruning of older wheelhouses below never takes one
# that another build is still reading.
flock 9
if [ ! -d "$wheels" ]; then
    echo "build.sh: downloading the wheelhouse for Python $pyver, glibc 2.$glibc_minor, $arch into $wheels" >&2
    partial=$(mktemp -d "$CACHE_DIR/partial.XXXXXX")
    trap 'rm -rf "$partial"' EXIT
    # Binary wheels only: nothing is compiled in the build, and no compiler is in the image.
    "$PY" -m pip download --quiet --disable-pip-version-check --dest "$partial" --only-binary=:all: \
        --implementation cp --python-version "$pyver" --abi "cp${pyver/./}" "${platforms[@]}" \
        -r /dev/stdin <<<"$requirements" >&2 || fail "pip download of the wheelhouse failed"
    find "$CACHE_DIR" -maxdepth 1 -name 'wheels-*' -exec rm -rf {} +  # older wheelhouses of this cache
    mv "$partial" "$wheels"
fi

echo "build.sh: building $IMAGE from $base with $ENGINE" >&2
iidfile=$(mktemp)
trap 'rm -f "$iidfile"' EXIT
build=("$ENGINE" build --network none --build-context "wheels=$wheels" --build-arg "PYTHON_IMAGE=$base")
"${build[@]}" --iidfile "$iidfile" --tag "$IMAGE" "$root" >&2
if [ "$ENGINE" = podman ]; then
    # podman keeps every cached step as an image. A tag on the build stage keeps its chain (the dependency layer
    # is the slow one); the prune then takes the stages and images that earlier builds left untagged, once they
    # are ten minutes old (a build running beside this one keeps its own).
    "${build[@]}" --target build --tag "$IMAGE-build" "$root" >/dev/null
    podman image prune --force --filter label=org.opencontainers.image.title=voicecall-pipeline \
        --filter until=10m >/dev/null
fi
# The image id: a test runs exactly what it built, whatever another build tags meanwhile.
cat "$iidfile"
echo
