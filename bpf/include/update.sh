#!/usr/bin/env bash
# update.sh refreshes the vendored headers that bpf/tee.c compiles against.
#
# The headers come from Debian bookworm's packages at the pinned versions
# below, so that the committed BPF object is reproducible on any machine that
# installs the same packages (CI does). Bump a pin only together with a
# `make generate` and a commit of the regenerated objects.
set -euo pipefail

LIBBPF_DEV_VERSION="1:1.1.2-0+deb12u1"
LINUX_LIBC_DEV_VERSION="6.1.*"

here=$(cd "$(dirname "$0")" && pwd)

check() {
	local pkg=$1 want=$2 have
	have=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || {
		echo "update.sh: package $pkg is not installed (apt-get install $pkg)" >&2
		exit 1
	}
	# shellcheck disable=SC2053 # the pin may be a glob
	if [[ $have != $want ]]; then
		echo "update.sh: $pkg is $have, pinned to $want" >&2
		exit 1
	fi
}

check libbpf-dev "$LIBBPF_DEV_VERSION"
check linux-libc-dev "$LINUX_LIBC_DEV_VERSION"

install -m 0644 /usr/include/bpf/bpf_helpers.h /usr/include/bpf/bpf_helper_defs.h \
	/usr/include/bpf/bpf_endian.h "$here/bpf/"
install -m 0644 /usr/include/linux/bpf.h /usr/include/linux/bpf_common.h "$here/linux/"
cp /usr/share/doc/libbpf-dev/copyright "$here/bpf/COPYRIGHT"
echo "headers updated from libbpf-dev $(dpkg-query -W -f='${Version}' libbpf-dev)" \
	"and linux-libc-dev $(dpkg-query -W -f='${Version}' linux-libc-dev)"
