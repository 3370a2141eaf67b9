# Sourced by gpu_check.sh and gpu_profile.sh on the GPU machine, from the repository root:
# the pure-Python packages that machine lacks, installed offline from the wheels carried in
# .whl/ (scripts/gpu_check.sh --fetch-wheels), this checkout on PYTHONPATH, and the shared
# data carried in .whl/data as GPUTRACK_DATA.
ROOT=$PWD
export PYTHONUNBUFFERED=1
if [ -z "${GPUTRACK_GPU_ENV:-}" ]; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gputrack-site \
      .whl/*.whl && export PYTHONPATH=/tmp/gputrack-site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  [ -d .whl/data ] && export GPUTRACK_DATA="$ROOT/.whl/data"
  export GPUTRACK_GPU_ENV=1  # once per call: gpu_check.sh runs gpu_profile.sh
fi
