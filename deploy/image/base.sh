#!/usr/bin/env bash
# Makes the image's Python base from Debian packages alone (no container registry needed) and prints its reference.
#
# The base is Debian bookworm's "essential" set plus CPython 3.11, venv, CA certificates and passwd (for useradd),
# without docs, man pages or locales. It is cached in the engine's image store under a tag keyed by this file's
# content: a change here (packages, options) makes a new base; otherwise the existing one is reused.
# mmdebstrap (rather than debootstrap + a chroot) reads the host's apt sources, installs in one pass and writes the
# tarball to a pipe, so the base takes about half a minute.
#
# Usage: deploy/image/base.sh            ENGINE=podman|docker (default: podman, else docker)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates,passwd
ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}

command -v "$ENGINE" >/dev/null || { echo "base.sh: $ENGINE not found: apt-get install podman runc (or run deploy/image/setup-host.sh)" >&2; exit 1; }
key=$(sha256sum "$here/base.sh" | cut -c1-12)
ref=localhost/voicecall-base:$SUITE-$key
if "$ENGINE" image inspect "$ref" >/dev/null 2>&1; then
    echo "$ref"
    exit 0
fi
# One maker at a time (two checkouts testing at once): the second finds the base made.
lock=${XDG_CACHE_HOME:-$HOME/.cache}/voicecall-pipeline/base.lock
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9
if "$ENGINE" image inspect "$ref" >/dev/null 2>&1; then
    echo "$ref"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "base.sh: mmdebstrap not found: apt-get install mmdebstrap (or run deploy/image/setup-host.sh)" >&2; exit 1; }

echo "base.sh: making $ref from Debian $SUITE packages" >&2
# merged-usr hook: the /usr merge without the usrmerge package, which would pull in perl (~50 MB). gconv: glibc's
# iconv modules (8 MB), which nothing here uses (Python's codecs are its own).
# pipefail: a failed mmdebstrap fails the import instead of leaving a truncated base.
mmdebstrap --quiet --variant=essential --include="$PACKAGES" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/lib/*/gconv/*' \
    "$SUITE" - \
  | "$ENGINE" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$ref" >/dev/null
# Older bases of this script only take space.
"$ENGINE" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/voicecall-base:' | grep -vx "$ref" \
  | xargs -r "$ENGINE" rmi >/dev/null 2>&1 || true
echo "$ref"
