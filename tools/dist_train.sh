#!/usr/bin/env bash
# Distributed training on one host: tools/dist_train.sh CONFIG NGPUS [tools/train.py options]
# One process per GPU via torchrun; mmengine wraps the model in DDP (--launcher pytorch).
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $0 CONFIG NGPUS [train.py options]" >&2
  exit 2
fi
CONFIG=$1
NGPUS=$2
shift 2
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$REPO:${PYTHONPATH:-}" exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes=1 --nproc_per_node="$NGPUS" --master_port="${PORT:-29500}" \
  "$REPO/tools/train.py" "$CONFIG" --launcher pytorch "$@"
