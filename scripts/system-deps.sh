#!/usr/bin/env bash
# The system programs the test suite runs for real, installed when they are missing:
#   rsync            the sync engine's transfers
#   openssh-server   sshd on a loopback port, for the ssh:// volume tests
#   openssh-client   ssh and ssh-keygen, for the same tests
#   chromium         the dashboard's browser tests (Debian's: nothing is downloaded)
#   nginx            the proxy in front of two `damas serve` (tests/deploy)
#   postgresql       initdb and postgres, for the postgresql:// backend's tests
#   iproute2         ip netns: the hub's storages each in a network namespace of its own
#   util-linux       unshare and nsenter: the storages' private mount namespaces
# As root with apt-get it runs `apt-get update` once, then installs what is missing,
# non-interactively. Otherwise it stops at once and prints the command to run.
# Used by `make test` and by .ci/run; `scripts/system-deps.sh --check` only reports.
set -euo pipefail

missing=()
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
test -x /usr/sbin/sshd || missing+=(openssh-server)
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=(openssh-client)
test -x /usr/bin/chromium || missing+=(chromium)
{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || missing+=(nginx)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
{ command -v unshare && command -v nsenter; } >/dev/null 2>&1 || missing+=(util-linux)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
install=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "${1:-}" = "--check" ]; then
    echo "missing system packages: ${missing[*]}" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    {
        echo "error: the tests need these system packages, missing here: ${missing[*]}"
        if command -v apt-get >/dev/null 2>&1; then
            echo "run:  sudo apt-get update && sudo ${install[*]}"
        else
            echo "install them with this system's package manager (on Debian or Ubuntu:"
            echo "      apt-get update && ${install[*]})"
        fi
        echo "then run make test again"
    } >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
exec bash "${BASH_SOURCE[0]}" --check
