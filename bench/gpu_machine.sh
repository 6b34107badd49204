#!/usr/bin/env bash
# Run THERE, on a lent GPU machine (one H200/H100, 16 cores), after bench/gpu_prepare.sh HERE; one call, since
# device time is short:  run(command="bash bench/gpu_machine.sh", carry=[".dev"], timeout_s=540)
# 1. the text encoder (all-MiniLM-L6-v2's shape, random weights) on the GPU: pages/s by batch
# 2. the late-interaction encoder at real size (ColQwen2, Qwen2-VL-2B inside, random weights, bf16): pages/s, FLOP
# 3. refman.pdf whole-process ingest at the defaults on every core vs LangChain, and by reader count
# 4. SigLIP image embedding (bench/gpu_siglip.py) and the VLM's prefill and decode (bench/gpu_vlm.py)
# Each step's output goes to $OUT/<step>.txt; a failing step does not stop the others; STEPS="colqwen vlm" picks.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{ nvidia-smi -L; nproc; free -g | head -2; python3 -c "import torch, transformers, pymupdf; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'pymupdf', pymupdf.VersionBind)"; } \
  2>&1 | tee "$OUT/machine.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/minilm.txt"
import shutil, torch
from pathlib import Path
from transformers import AutoConfig, AutoModel
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(".dev/minilm")).save_pretrained("/tmp/minilm")
for f in Path(".dev/minilm").iterdir():
    if f.name != "config.json":
        shutil.copy(f, "/tmp/minilm")
print("random-weight all-MiniLM-L6-v2 shape at /tmp/minilm")
PY
export PAGELENS_TEXT_ENCODER__MODEL=/tmp/minilm  # "the defaults" below: the shipped model's shape
mkdir -p ../shared/corpus/pdfs && cp -n .dev/R-intro.pdf ../shared/corpus/pdfs/  # where gpu_vlm.py looks
for step in ${STEPS:-text colqwen refman siglip vlm}; do
  case $step in
    text) timeout 120 python3 bench/text_encoder.py --pdf .dev/R-intro.pdf --model /tmp/minilm --batches 32,128,512 ;;
    colqwen) timeout 240 python3 bench/gpu_colqwen.py --pdf .dev/R-intro.pdf --pages 96 --batch 16 ;;
    refman) timeout 240 python3 bench/ingest_vs_langchain.py .dev/refman.pdf --langchain-python python3 --runs 2 \
              --workers 1,4,16 ;;
    siglip) timeout 120 python3 bench/gpu_siglip.py --seconds 8 ;;
    vlm) timeout 240 python3 bench/gpu_vlm.py ;;
  esac 2>&1 | grep -v -i warn | tee "$OUT/$step.txt"
done
