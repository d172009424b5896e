#!/bin/sh
# Installs everything pyrunc and pyimg need on a Debian 12 machine, as root:
# the reference and integration components from Debian, and the project in
# ./.venv with `pyrunc`, `pyimg` and `just` linked into /usr/local/bin.
# Idempotent: running it again only re-checks.
set -eu
cd "$(dirname "$0")"

APT_PACKAGES="runc crun containerd docker-registry skopeo umoci busybox-static \
golang-github-opencontainers-specs-dev libseccomp2 strace procps iproute2 \
openssl util-linux gcc libc6-dev docker.io python3-venv \
conmon netavark aardvark-dns containernetworking-plugins iptables tini podman"
# The engine's parts (pyimg run/ps/logs/...), each a maintained program
# rather than code of ours: conmon is the per-container monitor (stdio, log,
# exit status; ~1 MB where a Python monitor would be an interpreter),
# netavark + aardvark-dns the bridge networks, ports and name resolution,
# tini the --init, and podman the reference engine the tests compare with.

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
fi

# Every pyrunc verb is a fresh interpreter, and containerd calls us 4-5
# times per container, so the interpreter matters:
# - a real interpreter, not a pyenv shim (the shim alone costs ~50 ms);
# - Debian's python3.11 when there is one: built with PGO and LTO, with
#   _socket, _struct, fcntl and array compiled in, it starts and runs our
#   verbs ~15% faster than a plain source build such as pyenv's
#   (docs/performance.md has the measurement).
PY=""
for c in /usr/bin/python3.11 /usr/bin/python3; do
    if [ -x "$c" ] && "$c" -c 'import sys, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        PY=$c
        break
    fi
done
[ -n "$PY" ] || PY=$(python3 -c 'import sys; print(sys.executable)')
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" != "$PY" ]; then
    echo "setup: rebuilding .venv on $PY"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# The install also builds pyrunc-exec from runtime/exechelper.c, and the
# `pyrunc`, `pyimg` and `containerd-shim-pyrunc-v1` commands in .venv/bin
# from runtime/launcher.c: they start the interpreter with no site
# processing, and (for this editable install) this checkout first on
# sys.path (docs/performance.md).
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile now: every pyrunc call is a fresh interpreter, and compiling
# the sources on each call (e.g. with PYTHONDONTWRITEBYTECODE set) costs more
# than running them.
.venv/bin/python -m compileall -q -j 0 runtime imagetool
# PYRUNC_SETUP_LINKS=0 leaves /usr/local/bin alone (a second checkout, such
# as a git worktree, gets its own .venv without taking over the commands).
if [ "${PYRUNC_SETUP_LINKS:-1}" != 0 ]; then
    for b in pyrunc pyimg containerd-shim-pyrunc-v1 just; do
        ln -sf "$PWD/.venv/bin/$b" "/usr/local/bin/$b"
    done
fi
echo "setup: ok ($(.venv/bin/pyrunc --version | head -1))"
