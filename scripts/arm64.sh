#!/usr/bin/env bash
# Run gfn_edge's device side on an emulated aarch64 board (Raspberry Pi 4/5, RK3399) from x86.
#
#   scripts/arm64.sh [--suite bookworm|bullseye] [--cpu cortex-a72|cortex-a76] [--extras onnx,tflite,openvino]
#                    [--rebuild] [--] COMMAND [ARGS...]
#
#   scripts/arm64.sh python -m pytest -m device tests/test_detector.py
#   scripts/arm64.sh --suite bullseye --extras onnx gfn-edge analyze --detector D --recognizer R photo.jpg
#
# What it builds, once, under $GFN_EDGE_ARM64_CACHE/<suite> (default ~/.cache/gfn-edge/arm64/<suite>):
#   rootfs/        Debian arm64 unpacked with mmdebstrap (python3 + libstdc++, no emulation needed to build)
#   rootfs-<cpu>/  hard-linked copy with that CPU's /proc/cpuinfo (onnxruntime reads it; qemu 7.2 would
#                  show the guest the host's x86 one and onnxruntime crashes on import)
#   site-<key>/    the project's built wheel + extras, installed from the host exactly as a board's
#                  `pip install gfn-edge[EXTRAS]` resolves them: aarch64 wheels for the rootfs's Python and
#                  every manylinux tag up to its glibc, binary wheels only
#   bin/           python, python3 and the package's console scripts (gfn-edge, ...), each a launcher
#                  that runs the aarch64 interpreter under qemu-aarch64-static with QEMU_CPU
# The wheel is rebuilt and reinstalled only when a packaged source file changed (not the README), so a second run costs
# seconds. COMMAND runs on the host with bin/ first on PATH, so `python` and `gfn-edge` are the
# emulated ones, and so is sys.executable inside them (subprocesses stay on aarch64).
# Timings under emulation say nothing about a board's speed.
set -euo pipefail

die() { printf 'arm64.sh: %s\n' "$*" >&2; exit 2; }
# pip's notes about a configured local index folder that lacks a package are noise here
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }
say() { [ -n "${ARM64_QUIET:-}" ] || printf 'arm64.sh: %s\n' "$*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=${ARM64_SUITE:-bookworm}
CPU=${ARM64_CPU:-cortex-a72}
EXTRAS=${ARM64_EXTRAS:-onnx,tflite,openvino}
REBUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE=$2; shift 2 ;;
        --cpu) CPU=$2; shift 2 ;;
        --extras) EXTRAS=$2; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --print-env) PRINT_ENV=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || [ -n "${PRINT_ENV:-}" ] || die "no command given (try: scripts/arm64.sh python -c 'import gfn_edge')"

case "$SUITE" in
    bookworm|bullseye|trixie) ;;
    *) die "unknown Debian suite '$SUITE' (bookworm: Raspberry Pi OS 12, Python 3.11; bullseye: older images, Python 3.9)" ;;
esac
case "$CPU" in
    cortex-a72) PART=0xd08; FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid" ;;
    cortex-a76) PART=0xd0b; FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs" ;;
    cortex-a53) PART=0xd03; FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid" ;;
    *) die "unknown CPU '$CPU' (cortex-a72: Pi 4 / RK3399; cortex-a76: Pi 5; cortex-a53: RK3399's little cores, Pi 3)" ;;
esac

# --- the host tools -------------------------------------------------------------------------------
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=("qemu-user-static (qemu-aarch64-static)")
command -v mmdebstrap >/dev/null || missing+=("mmdebstrap")
if [ "${#missing[@]}" -gt 0 ]; then
    die "missing host tools: ${missing[*]}. On Debian/Ubuntu: sudo apt-get install qemu-user-static mmdebstrap binfmt-support"
fi
HOST_PY=${ARM64_HOST_PYTHON:-python3}
"$HOST_PY" -m pip --version >/dev/null 2>&1 || die "the host Python ($HOST_PY) has no pip; set ARM64_HOST_PYTHON"

CACHE=${GFN_EDGE_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gfn-edge/arm64}/$SUITE
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one builder per suite at a time; runs after the build share the cache read-only

# --- the Debian arm64 root filesystem --------------------------------------------------------------
FS=$CACHE/rootfs
if [ ! -x "$FS/usr/bin/python3" ]; then
    say "building the $SUITE arm64 root filesystem in $FS (mmdebstrap, about 20 s)"
    rm -rf "$FS" "$FS.tmp" "$CACHE"/rootfs-*
    mmdebstrap --quiet --variant=extract --architectures=arm64 --include=python3,libstdc++6,libgomp1 \
        "$SUITE" "$FS.tmp" "deb ${ARM64_DEBIAN_MIRROR:-http://deb.debian.org/debian} $SUITE main" >&2 \
        || die "mmdebstrap could not build the $SUITE arm64 root filesystem (mirror: \$ARM64_DEBIAN_MIRROR)"
    mv "$FS.tmp" "$FS"
fi
PYVER=$(basename "$(readlink -f "$FS/usr/bin/python3")"); PYVER=${PYVER#python}
LIBC=$(find "$FS/lib" "$FS/usr/lib" -name libc.so.6 2>/dev/null | head -1)
GLIBC=$([ -n "$LIBC" ] && grep -a -o -m1 'release version 2\.[0-9]*' "$LIBC" | head -1 | cut -d' ' -f3)
[ -n "$PYVER" ] && [ -n "$GLIBC" ] || die "cannot read the Python or glibc version of $FS (delete it to rebuild)"

CPUFS=$CACHE/rootfs-$CPU
if [ ! -f "$CPUFS/proc/cpuinfo" ]; then
    rm -rf "$CPUFS"
    cp -al "$FS" "$CPUFS"
    mkdir -p "$CPUFS/proc"
    for ((i = 0; i < $(nproc); i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 0\n\n' \
            "$i" "$FEATURES" "$PART"
    done >"$CPUFS/proc/cpuinfo"
fi

# --- the project's wheel, installed the way a board's pip would --------------------------------------
WHEELS=$CACHE/../wheels
mkdir -p "$WHEELS"
SRC_HASH=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard -- pyproject.toml gfn_edge runtimes export calib 2>/dev/null \
    | xargs -0 sha1sum 2>/dev/null | sha1sum | cut -c1-16)
WHEEL=$(ls "$WHEELS"/*-"$SRC_HASH".whl.path 2>/dev/null | head -1 || true)
if [ "$REBUILD" = 1 ] || [ -z "$WHEEL" ] || [ ! -f "$(cat "$WHEEL")" ]; then
    say "building the gfn-edge wheel (python -m build --wheel)"
    "$HOST_PY" -m build --version >/dev/null 2>&1 || die "the host Python has no 'build' (pip install build)"
    out=$WHEELS/$SRC_HASH
    rm -rf "$out"
    had_build=0; [ -e "$ROOT/build" ] && had_build=1
    "$HOST_PY" -m build --wheel --outdir "$out" "$ROOT" >"$CACHE/build.log" 2>&1 \
        || { tail -20 "$CACHE/build.log" >&2; die "python -m build --wheel failed (log: $CACHE/build.log)"; }
    [ "$had_build" = 1 ] || rm -rf "$ROOT/build"  # setuptools' scratch folder, unless it was already there
    WHEEL=$WHEELS/wheel-$SRC_HASH.whl.path
    ls "$out"/gfn_edge-*.whl >"$WHEEL"
fi
WHEEL_FILE=$(cat "$WHEEL")

PYTAG=cp${PYVER/./}
PLATFORMS=(--platform manylinux2014_aarch64)
for ((m = 17; m <= ${GLIBC#*.}; m++)); do PLATFORMS+=(--platform "manylinux_2_${m}_aarch64"); done
PIP_TARGET_ARGS=("${PLATFORMS[@]}" --python-version "$PYVER" --implementation cp --abi "$PYTAG" --only-binary=:all:)
# pytest and psutil: what the device tests need beside the package itself. pip --target judges
# environment markers by the host's Python, so the backports older Pythons need (pytest's
# exceptiongroup and tomli; tomli also reads the door app's TOML) are named here.
TEST_REQS=${ARM64_TEST_REQUIREMENTS:-pytest psutil}
[ "${PYVER#3.}" -ge 11 ] || TEST_REQS="$TEST_REQS exceptiongroup tomli"
DEPS_KEY=$(printf '%s|%s|%s|%s' "$PYVER" "$GLIBC" "$EXTRAS" "$TEST_REQS" | sha1sum | cut -c1-12)
SITE=$CACHE/site-$DEPS_KEY
if [ ! -f "$SITE/.deps-done" ]; then
    say "installing gfn-edge[$EXTRAS] for aarch64 $PYTAG, glibc $GLIBC into $SITE"
    rm -rf "$SITE"
    # shellcheck disable=SC2086
    PIP_CONSTRAINT= "$HOST_PY" -m pip install --quiet --no-warn-conflicts --target "$SITE" "${PIP_TARGET_ARGS[@]}" \
        "gfn_edge[$EXTRAS] @ file://$WHEEL_FILE" $TEST_REQS 2>&1 | quiet_pip >&2 \
        || die "pip could not install gfn-edge[$EXTRAS] for aarch64 Python $PYVER / glibc $GLIBC (see above)"
    rm -rf "$SITE/bin"
    touch "$SITE/.deps-done"
fi
# The package itself goes to a folder of its own per source state, first on sys.path: a rebuilt
# wheel never replaces files under a run that is still using the previous one.
PKG=$CACHE/pkg-$SRC_HASH
if [ ! -f "$PKG/.done" ]; then
    rm -rf "$PKG"
    "$HOST_PY" -m pip install --quiet --no-deps --no-warn-conflicts --target "$PKG" "${PIP_TARGET_ARGS[@]}" "$WHEEL_FILE" 2>&1 | quiet_pip >&2 \
        || die "pip could not install $WHEEL_FILE"
    rm -rf "$PKG/bin"
    # A checkout's gfn_edge/ folder is not the package (runtimes/, export/ ... are mapped in by
    # pyproject.toml), and `python -m`/`-c` put the working directory first on sys.path: import the
    # installed wheel's gfn_edge before that happens, so the wheel is what runs, from any directory.
    cat >"$PKG/sitecustomize.py" <<'EOF'
"""Written by scripts/arm64.sh: the installed gfn-edge wheel, never a checkout's source folder."""
import gfn_edge  # noqa: F401
EOF
    touch "$PKG/.done"
fi

# --- launchers ------------------------------------------------------------------------------------
BIN=$CACHE/bin-$CPU-$DEPS_KEY-$SRC_HASH
QEMU=$(command -v qemu-aarch64-static)
if [ ! -x "$BIN/python" ] || [ "$BIN/python" -ot "${BASH_SOURCE[0]}" ]; then
    rm -rf "$BIN"; mkdir -p "$BIN"
    # -0 makes the guest's argv[0], hence sys.executable, this launcher: a subprocess of the emulated
    # Python runs emulated too, with no binfmt_misc registration needed.
    cat >"$BIN/python" <<EOF
#!/bin/sh
export QEMU_CPU="\${QEMU_CPU:-$CPU}" PYTHONPATH="$PKG:$SITE\${GFN_EDGE_ARM64_PYTHONPATH:+:\$GFN_EDGE_ARM64_PYTHONPATH}"
unset QEMU_LD_PREFIX PYTHONHOME
exec "$QEMU" -L "$CPUFS" -0 "$BIN/python" "$CPUFS/usr/bin/python$PYVER" "\$@"
EOF
    chmod +x "$BIN/python"
    ln -s python "$BIN/python3"
    # console scripts from the installed wheel's entry points
    sed -n '/^\[console_scripts\]/,/^\[/p' "$PKG"/gfn_edge-*.dist-info/entry_points.txt | grep '=' | while IFS='= ' read -r name target; do
        module=${target%%:*}; func=${target#*:}
        printf '#!/bin/sh\nexec "%s" -c "import sys; from %s import %s as main; sys.argv[0] = \\"%s\\"; sys.exit(main())" "$@"\n' \
            "$BIN/python" "$module" "$func" "$name" >"$BIN/$name"
        chmod +x "$BIN/$name"
    done
fi
flock -u 9

export PATH="$BIN:$PATH" QEMU_CPU="$CPU" GFN_EDGE_ARM64_SUITE="$SUITE" GFN_EDGE_ARM64_CPU="$CPU"
unset VIRTUAL_ENV PYTHONHOME
if [ -n "${PRINT_ENV:-}" ]; then
    printf 'PYTHON=%s\nSUITE=%s\nCPU=%s\nPYTHON_VERSION=%s\nGLIBC=%s\nSITE=%s\nPACKAGE=%s\nWHEEL=%s\n' "$BIN/python" "$SUITE" "$CPU" "$PYVER" "$GLIBC" "$SITE" "$PKG" "$WHEEL_FILE"
    [ $# -gt 0 ] || exit 0
fi
say "$SUITE arm64 (Python $PYVER, glibc $GLIBC) on emulated $CPU: $*"
exec "$@"
