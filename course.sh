#!/usr/bin/env bash
# The course in one command.
#
#   ./course.sh                 set up .venv (first run only), then open the course in JupyterLab
#   ./course.sh --headless      same, without a browser, listening on 127.0.0.1 only
#                               (open the printed http://127.0.0.1:8888/lab/tree/notebooks/00_setup.ipynb?token=...)
#   ./course.sh --port 8899     choose the port (default: JupyterLab's, 8888 or the next free one)
#   ./course.sh --setup-only    only install
#   ./course.sh --no-setup      use the environment as it is (skip the install check)
#   ./course.sh test [ARGS]     set up the same way, then run the test suite (ARGS go to pytest;
#                               paths first replace the default tests/ and notebooks/)
#   ./course.sh test --fast [ARGS]  the fast tier (a couple of minutes): tests/ without the tests
#                               marked slow, trained, notebook or hub (pyproject.toml; CONTRIBUTING.md)
#   ./course.sh browser-test    set up, install the Debian chromium package if it is missing (apt-get,
#                               as root or through sudo), then run tests/test_browser.py: Chromium
#                               drives the `vlmstudy demo` Voila app; screenshots in runs/browser-test/
#
# Environment: VLMSTUDY_VENV (default .venv) is the virtual environment to use; PYTHON (default
# python3, 3.10 or newer) creates it; VLMSTUDY_TORCH (default torch==2.13.0) and
# VLMSTUDY_TORCH_INDEX (default: none, i.e. PyPI) choose the PyTorch build, see below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV="${VLMSTUDY_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# PyTorch first, on its own. On this course's reference machines torch==2.13.0 resolves to the
# local CPU-only wheel (~200 MB); the course runs its tiny models on a CPU. On a machine with an
# NVIDIA GPU install the CUDA build instead (from PyPI on Linux, or e.g.
# VLMSTUDY_TORCH_INDEX=https://download.pytorch.org/whl/cu128). To force the small CPU build
# elsewhere: VLMSTUDY_TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_SPEC="${VLMSTUDY_TORCH:-torch==2.13.0}"
TORCH_INDEX="${VLMSTUDY_TORCH_INDEX:-}"
EXTRAS="test,serve,demo"
# the test command (README.md shows it as `.venv/bin/python <PYTEST_ARGS>`; a test keeps them equal)
PYTEST_ARGS="-m pytest -q tests notebooks --nbval-lax --nbval-current-env"
# ./course.sh test --fast: the tiers it leaves out (markers registered in pyproject.toml)
FAST_MARKERS="not slow and not trained and not notebook and not hub"

die() { echo "course.sh: $*" >&2; exit 1; }

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.10 or newer (or set PYTHON=...)"
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || die "$("$PYTHON" -V 2>&1) is too old; the course needs Python 3.10 or newer (set PYTHON=python3.11 ...)"
        echo "course.sh: creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # install once, and again whenever pyproject.toml or the torch choice changes
    local stamp="$VENV/.vlmstudy-setup" want
    want="$(cat pyproject.toml; echo "$TORCH_SPEC $TORCH_INDEX $EXTRAS")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "course.sh: installing PyTorch ($TORCH_SPEC), then vlmstudy[$EXTRAS] into $VENV"
    if [ -n "$TORCH_INDEX" ]; then
        "$VENV/bin/python" -m pip install --extra-index-url "$TORCH_INDEX" "$TORCH_SPEC"
    else
        "$VENV/bin/python" -m pip install "$TORCH_SPEC"
    fi
    "$VENV/bin/python" -m pip install -e ".[$EXTRAS]"
    printf '%s' "$want" > "$stamp"
}

mode=lab
do_setup=1
headless=0
port=""
if [ "${1:-}" = "test" ]; then
    mode=test
    shift
elif [ "${1:-}" = "browser-test" ]; then
    mode=browser
    shift
else
    while [ $# -gt 0 ]; do
        case "$1" in
            --headless) headless=1 ;;
            --port) [ $# -ge 2 ] || die "--port needs a number"; port="$2"; shift ;;
            --port=*) port="${1#--port=}" ;;
            --setup-only) mode=setup ;;
            --no-setup) do_setup=0 ;;
            -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown option $1 (see ./course.sh --help)" ;;
        esac
        shift
    done
fi

if [ "$do_setup" = 1 ]; then
    setup
fi
[ -x "$VENV/bin/python" ] || die "no environment at $VENV; run ./course.sh --setup-only first"

case "$mode" in
    setup)
        echo "course.sh: $VENV is ready. Start the course with ./course.sh"
        ;;
    test)
        # offline, whatever the shell says: the suite uses only the shipped tiny models
        export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
        if [ "${1:-}" = "--fast" ]; then
            shift
            fast_paths=(tests)
            if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
                fast_paths=()  # paths given: run those instead
            fi
            exec "$VENV/bin/python" -m pytest -q "${fast_paths[@]}" -m "$FAST_MARKERS" "$@"
        fi
        pytest_args="$PYTEST_ARGS"
        if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
            pytest_args="${PYTEST_ARGS/ tests notebooks/}"  # paths given: run those instead
        fi
        # shellcheck disable=SC2086  # word splitting of the arguments is intended
        exec "$VENV/bin/python" $pytest_args "$@"
        ;;
    browser)
        # the system Chromium, never a Playwright browser download (tests/test_browser.py)
        if [ -z "${VLMSTUDY_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
            command -v apt-get >/dev/null || die "the browser test needs Chromium: install it with your package manager and set VLMSTUDY_CHROMIUM=/path/to/chromium"
            echo "course.sh: installing the chromium package (apt-get)"
            if [ "$(id -u)" = 0 ]; then
                apt-get update && apt-get install -y --no-install-recommends chromium
            elif command -v sudo >/dev/null; then
                sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium
            else
                die "installing chromium needs root: run 'apt-get install chromium' as root, then ./course.sh browser-test"
            fi
        fi
        export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLMSTUDY_BROWSER_TEST=required
        exec "$VENV/bin/python" -m pytest -q -rs tests/test_browser.py "$@"
        ;;
    lab)
        # the whole repository is the root (notebooks/, exercises/, ...). 00_setup opens first:
        # it is the server's default URL, so the URL printed for --headless opens it too (a file
        # argument would only reach the browser jupyter starts; the printed /lab URL opened the Launcher)
        args=(lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks/00_setup.ipynb)
        if [ "$headless" = 1 ]; then
            args+=(--no-browser --ip 127.0.0.1)
        fi
        if [ "$(id -u)" = 0 ]; then
            args+=(--allow-root)  # containers often run as root; JupyterLab refuses that by default
        fi
        if [ -n "$port" ]; then
            args+=(--port "$port" --ServerApp.port_retries=0)
        fi
        exec "$VENV/bin/jupyter" "${args[@]}"
        ;;
esac
