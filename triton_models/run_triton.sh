#!/usr/bin/env bash
# Runs the Triton Inference Server bundled in PyPI nvidia-pytriton (Triton venv,
# `make triton-venv`) with the given tritonserver arguments; used by
# systemd/triton.service. gateway/triton_launcher.py does the same from Python.
#
#   run_triton.sh --model-repository DIR [--grpc-port 8001 ...]
#
# Environment:
#   TRITON_VENV     the Triton venv (default: <this folder>/../.venv-triton)
#   TRITON_WORKDIR  where backends/python is assembled (default: systemd's
#                   $STATE_DIRECTORY, else ${TMPDIR:-/tmp}/asr-triton-<uid>)
# Without --model-control-mode the server runs in explicit mode and loads every
# model directory (one with a config.pbtxt) of the repository: common/ is not a model.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TRITON_VENV:-$here/../.venv-triton}"
python="$venv/bin/python"
if [ ! -x "$python" ]; then
  echo "run_triton.sh: Triton venv $venv not found: run make triton-venv" >&2
  exit 1
fi
read -r purelib libdir pyver < <("$python" -c 'import sys, sysconfig
print(sysconfig.get_paths()["purelib"], sysconfig.get_config_var("LIBDIR"), "%d.%d" % sys.version_info[:2])')
root="$purelib/pytriton/tritonserver"
if [ ! -x "$root/bin/tritonserver" ]; then
  echo "run_triton.sh: $root/bin/tritonserver missing (nvidia-pytriton not installed?): run make triton-venv" >&2
  exit 1
fi

state="${STATE_DIRECTORY:-}"
workdir="${TRITON_WORKDIR:-${state%%:*}}"
workdir="${workdir:-${TMPDIR:-/tmp}/asr-triton-$(id -u)}"
mkdir -p "$workdir/backends/python"
cp -f "$root/backends/python/libtriton_python.so" \
      "$root/backends/python/triton_python_backend_utils.py" \
      "$root/python_backend_stubs/$pyver/triton_python_backend_stub" \
      "$workdir/backends/python/"

# the stub needs the bundled libraries (else it hangs) and the venv's own libpython
export LD_LIBRARY_PATH="$purelib/nvidia_pytriton.libs:$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# the stub's interpreter takes the first python3 on PATH: the venv's
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
unset PYTHONPATH PYTHONHOME

args=("$@")
repository=""
control_given=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --model-repository=*) repository="${args[i]#*=}" ;;
    --model-repository) repository="${args[i + 1]:-}" ;;
    --model-control-mode | --model-control-mode=*) control_given=1 ;;
  esac
done
if [ "$control_given" = 0 ] && [ -n "$repository" ]; then
  args+=(--model-control-mode=explicit)
  for config in "$repository"/*/config.pbtxt; do
    [ -e "$config" ] || continue
    # opt-in models (load_by_default "false", e.g. tts_nemo) are loaded only when asked for
    grep -Eq 'key: *"load_by_default", *value: *\{ *string_value: *"false"' "$config" && continue
    args+=("--load-model=$(basename "$(dirname "$config")")")
  done
fi

# bytecode caches written now, not by the backend's first import inside a version folder:
# that write makes the next model load (a new version, SIGHUP) reload the version and drop
# its calls' sequences (gateway/triton_launcher.py precompile); best effort
if [ -n "$repository" ]; then
  "$python" -m compileall -q "$repository" >/dev/null 2>&1 || true
fi

# defaults first: a later argument of the caller's wins
exec "$root/bin/tritonserver" \
  --backend-directory="$workdir/backends" \
  --cache-directory="$root/caches" \
  --pinned-memory-pool-byte-size=0 \
  --cuda-memory-pool-byte-size=0:0 \
  --exit-timeout-secs=5 \
  "${args[@]}"
