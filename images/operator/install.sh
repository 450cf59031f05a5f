#!/bin/sh
# Installs the operator into an image's root filesystem: the one list of image build steps, run
# as root inside that filesystem by the Dockerfile and by a build without Docker alike:
#
#   Dockerfile:      RUN sh /tmp/install/install.sh /tmp/install/requirements.lock /dist/*.whl
#   without Docker:  chroot ROOTFS /bin/sh /tmp/install/install.sh /tmp/install/requirements.lock \
#                      /tmp/install/infer_operator-VERSION-py3-none-any.whl
#
# Needs a POSIX sh, python3 with pip, and PyPI (or PIP_FIND_LINKS + PIP_NO_INDEX naming a
# directory of the locked wheels). Plain sh and files only: no Docker feature, no useradd.
#
# Environment: PYTHON (default python3); ETC_DIR (default /etc; where the user is created; set it
# only to try the script outside a root filesystem).
set -eu

lock=${1:?usage: install.sh REQUIREMENTS_LOCK OPERATOR_WHEEL}
wheel=${2:?usage: install.sh REQUIREMENTS_LOCK OPERATOR_WHEEL}
python=${PYTHON:-python3}
etc=${ETC_DIR:-/etc}
# The uid/gid the chart's default securityContext runs as; platforms that assign their own uid
# (OpenShift) still find every installed file world-readable.
uid=65532

# 1. The nonroot user and group, numeric 65532, so that runAsNonRoot can check the image's USER.
grep -q '^nonroot:' "$etc/group" || echo "nonroot:x:$uid:" >> "$etc/group"
grep -q '^nonroot:' "$etc/passwd" || echo "nonroot:x:$uid:$uid:nonroot:/nonexistent:/usr/sbin/nologin" >> "$etc/passwd"

# 2. The locked dependencies, each wheel checked against its hash. Hash-checking mode also refuses
#    any dependency the lock does not pin, so a stale lock fails here instead of pulling a newer
#    package. Wheels only: the image has no compiler.
"$python" -m pip install --require-hashes --only-binary=:all: -r "$lock"

# 3. The operator itself, without dependencies: everything it needs came from the lock.
"$python" -m pip install --no-deps --no-index "$wheel"

# 4. The locked versions satisfy the operator's own requirements (pyproject.toml).
"$python" -m pip check

# 5. It starts.
"$python" -m infer_operator --version
