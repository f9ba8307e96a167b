#!/usr/bin/env bash
# GPU run of issue 11 (H100/H200, PyTorch preinstalled, no internet), <= 10 min.
# Device call must carry .whl/ (torch-pruning 1.6.1 wheel):
#   run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=600)
set -uo pipefail
OUT=${OUT:-out/bench}; mkdir -p "$OUT"
PY=${PY:-python}
$PY -m pip install --no-index --no-deps .whl/*.whl >"$OUT/pip.log" 2>&1 || echo "wheel install failed" | tee -a "$OUT/pip.log"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import torch;print(torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/env.txt"
M=resnet50,densenet121,efficientnet_b0,unet_d
# paper setting: 1x320x320, batch 4, fp32 (eager), then batch 32 bf16 channels-last; budget per model
timeout 200 $PY benchmarks/bench_train_step.py --models $M --batch 4 --size 320 --steps 60 --warmup 10 \
  --budget-s 30 --out "$OUT/train_step_b4_fp32.json" >"$OUT/table_b4_fp32.md" 2>"$OUT/log_b4_fp32.txt"
timeout 220 $PY benchmarks/bench_train_step.py --models $M --batch 32 --size 320 --amp bf16 --channels-last \
  --steps 40 --warmup 8 --budget-s 35 --out "$OUT/train_step_b32_bf16.json" >"$OUT/table_b32_bf16.md" 2>"$OUT/log_b32_bf16.txt"
# CUDA graphs for every arm alike (remaining budget)
timeout 150 $PY benchmarks/bench_train_step.py --models resnet50,densenet121,efficientnet_b0 --batch 4 --size 320 \
  --compile reduce-overhead --steps 40 --warmup 10 --budget-s 20 --out "$OUT/train_step_b4_graphs.json" \
  >"$OUT/table_b4_graphs.md" 2>"$OUT/log_b4_graphs.txt"
cat "$OUT"/table_*.md
