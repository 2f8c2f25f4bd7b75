#!/usr/bin/env bash
# Issue 15's GPU checks as one script, for a machine with a GPU (run from the repository root in
# a set-up virtual environment): `python -m bench perf gpu` (per architecture at 224 px, bf16,
# channels-last), then `suites/pets.yaml --smoke` on the GPU (its real batch sizes and GPUs,
# synthetic images, no download). Writes leaderboard/perf/gpu-<device>.{md,json} and
# leaderboard/perf/gpu-<device>-smoke.txt (wall time and the smoke verdict). OUT=dir overrides.
set -euo pipefail
out=${OUT:-leaderboard/perf}
mkdir -p "$out"
device=$(python -c "import torch; print(torch.cuda.get_device_name().replace(' ', '-'))")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -m bench perf gpu --out "$out"
mv "$out/gpu.md" "$out/gpu-$device.md"
mv "$out/gpu.json" "$out/gpu-$device.json"
start=$(date +%s)
set +e
python -m bench run suites/pets.yaml --smoke --fresh --out runs/pets-smoke-gpu > "$out/smoke.log" 2>&1
code=$?
set -e
{
  echo "suites/pets.yaml --smoke on $device: exit $code, $(( $(date +%s) - start )) s wall"
  grep -E "^smoke (passed|FAILED)|^FAILED" "$out/smoke.log" || tail -5 "$out/smoke.log"
} > "$out/gpu-$device-smoke.txt"
rm -f "$out/smoke.log"
cat "$out/gpu-$device.md" "$out/gpu-$device-smoke.txt"
