#!/usr/bin/env bash
# Installs what `make image` and the image tests need on a Debian host, as root: podman with runc, mmdebstrap (the
# base image), and deploy/image/containers.conf as a containers.conf drop-in. Installs only what is missing; a
# second run does nothing. .ci/run calls it; on a failure it prints one line naming what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "setup-host.sh: $*" >&2; exit 1; }

missing=()
for tool in podman runc mmdebstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
conf=/etc/containers/containers.conf.d/50-voicecall.conf
cmp -s "$here/containers.conf" "$conf" && [ ${#missing[@]} = 0 ] && exit 0
[ "$(id -u)" = 0 ] || fail "run as root to install ${missing[*]:-} ${conf}"
if [ ${#missing[@]} != 0 ]; then
    command -v apt-get >/dev/null || fail "no apt-get to install ${missing[*]} (Debian packages of the same names)"
    apt-get update -qq >/dev/null || fail "apt-get update failed: cannot install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "apt-get install ${missing[*]} failed"
fi
install -D -m 0644 "$here/containers.conf" "$conf"
