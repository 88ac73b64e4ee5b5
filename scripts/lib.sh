# Shared helpers for BitFleet's scripts: installing what a fresh Debian machine lacks.
# Sourced, not executed.

export SWIFT_DETERMINISTIC_HASHING=1
BITFLEET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BITFLEET_ROOT

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
# apt_install PACKAGE... : installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root or install them first"
    log "installing ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

require_swift() {
    if ! command -v swift >/dev/null; then
        [ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
    fi
    if ! command -v swift >/dev/null; then
        log "no Swift toolchain on PATH; trying Debian's swiftlang package"
        apt_install swiftlang || true
    fi
    command -v swift >/dev/null || die "Swift 6 is required (https://www.swift.org/install/linux/)"
}

# System libraries the package links against (SQLite for the controller, libcurl for
# Foundation's URLSession and --static-swift-stdlib builds) and the Fashion-MNIST dataset.
require_system_packages() {
    apt_install libsqlite3-dev libcurl4-openssl-dev dataset-fashion-mnist
}

# python_env REQUIREMENTS... : a virtualenv under .build-python with the given
# requirements installed; prints nothing, sets $BITFLEET_PYTHON.
python_env() {
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    local env="$BITFLEET_ROOT/.build-python"
    if [ ! -x "$env/bin/python" ]; then
        log "creating a Python environment in .build-python"
        python3 -m venv "$env" || die "python3 -m venv failed"
    fi
    local stamp="$env/.requirements"
    local wanted
    wanted="$(cat "$@" | sort -u)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        log "installing Python requirements: $(echo "$wanted" | tr '\n' ' ')"
        "$env/bin/pip" install -q --disable-pip-version-check $(printf -- '-r %s ' "$@") || die "pip install failed"
        echo "$wanted" > "$stamp"
    fi
    BITFLEET_PYTHON="$env/bin/python"
    export BITFLEET_PYTHON
}
