#!/usr/bin/env bash
# The local AI Factory, on a fresh Debian 12 machine, as root:
#
#   ./bootstrap.sh            install everything, start cluster + hub, print the URL and logins
#   ./bootstrap.sh test       the same, then run the whole test suite in both profiles
#                             (what .ci/run calls)
#   ./bootstrap.sh site-demo  install everything, start the local factory in the site profile
#                             (Debian's PostgreSQL, a real OpenID provider, a site file)
#
# Idempotent: run it again and it installs nothing new and starts only what is not running.
# Environment: AIFACTORY_HOME (state, default /var/lib/aifactory),
#              AIFACTORY_VENV (the hub's and jobs' Python environment, default /opt/aifactory/venv).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

VENV="${AIFACTORY_VENV:-/opt/aifactory/venv}"
export AIFACTORY_HOME="${AIFACTORY_HOME:-/var/lib/aifactory}"
MODE="${1:-up}"

say() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap.sh: run as root (it installs packages, creates users, starts daemons)" >&2
    exit 1
fi
case "$MODE" in up|test|site-demo) ;; *) echo "usage: $0 [up|test|site-demo]" >&2; exit 2 ;; esac

# systemd: its systemd-analyze verify checks the units of `workbench site units` in the tests
APT_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server mariadb-client sudo python3-venv systemd
              python3-dev chromium procps ca-certificates postgresql
              acl     # setfacl/getfacl: the datasets' access rules (workbench.catalogue.fsaccess)
              prometheus)  # promtool and a Prometheus for the metrics tests (deploy/prometheus)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing Debian packages: ${missing[*]}"
    apt-get update -q
    # the packages' own services are not used: the workbench starts its daemons itself
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" prometheus "* ]]; then
        # Debian's package starts its own Prometheus on :9090 where it can (init script or
        # systemd) and enables it at boot: the workbench needs only its binaries
        if [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
            /etc/init.d/prometheus stop >/dev/null || true
        fi
        update-rc.d prometheus disable >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then systemctl disable --now prometheus || true; fi
    fi
fi

if ! command -v configurable-http-proxy >/dev/null; then
    say "Installing configurable-http-proxy (npm)"
    npm install -g --no-fund --no-audit configurable-http-proxy@5
fi

# The environment jobs run in must be readable by every user: under /opt, from Debian's python.
if [ ! -x "$VENV/bin/python" ]; then
    say "Creating $VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
say "Installing the workbench into $VENV"
"$VENV/bin/pip" install -q --upgrade ".[test]"
chmod -R a+rX "$(dirname "$VENV")"
# the site-demo's OpenID provider (npm oidc-provider, pinned in workbench/demo/oidc)
"$VENV/bin/python" -c 'from workbench.demo.oidc import install; install()'

if [ "$MODE" = site-demo ]; then
    say "Starting the local AI Factory (site-demo profile)"
    exec "$VENV/bin/workbench" up --profile site-demo
fi
say "Starting the local AI Factory"
"$VENV/bin/workbench" up --profile demo

if [ "$MODE" = test ]; then
    say "Running the test suite (demo profile)"
    set +e
    "$VENV/bin/python" -m pytest tests -p no:cacheprovider --ignore=tests/site
    rc=$?
    if [ "$rc" = 0 ]; then
        say "Running the site profile's tests (site-demo: PostgreSQL, OpenID provider)"
        "$VENV/bin/workbench" up --profile site-demo >/dev/null &&
            "$VENV/bin/python" -m pytest tests/site -p no:cacheprovider
        rc=$?
        "$VENV/bin/workbench" up --profile demo >/dev/null || rc=1
    fi
    set -e
    if [ "$rc" != 0 ]; then
        say "Tests failed (exit $rc): cluster state and logs"
        "$VENV/bin/workbench" status || true
        for f in "$AIFACTORY_HOME"/log/*.log "$AIFACTORY_HOME"/munge/munged.log; do
            [ -f "$f" ] || continue
            printf '\n---- %s (last 60 lines)\n' "$f"
            tail -n 60 "$f"
        done
    fi
    exit "$rc"
fi
