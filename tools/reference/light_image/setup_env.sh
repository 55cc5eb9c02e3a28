#!/usr/bin/env bash
# Build the recording venv for MobileSAM / HQ-SAM (see README.md next to this script).
# usage: setup_env.sh VENV MOBILESAM_SRC
#   MOBILESAM_SRC: a checkout of github.com/ChaoningZhang/MobileSAM at commit
#   34bbbfdface3c18e5221aa7de6032d7220c6c6a1 (the `mobile_sam` package and setup.py are enough).
# Needs python3.11 with CPU torch 2.13.0 installed system-wide (the venv reuses it), g++, and the
# shared oracle's torchvision CPU-kernel build (../../../../shared/oracle/sam3/build_tvops.sh).
set -euo pipefail
V=$1; SRC=$2
SHARED=${SHARED:-$(cd "$(dirname "$0")/../../../../shared" && pwd)}
python3 -m venv --system-site-packages "$V"
P="$V/bin/pip"
"$P" install -q --no-deps segment-anything-hq==0.3 "$SRC"
# timm and torchvision as plain Python packages: their declared deps would pull CUDA torch
"$P" install -q --no-deps timm==1.0.15 torchvision==0.28.0
SP=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -f "$SP/torchvision/_C.so" "$SP/torchvision/image.so"
bash "$SHARED/oracle/sam3/build_tvops.sh" "$V" "$SHARED/oracle/sam3/tv_cpu_kernels"
"$V/bin/python" -c "import mobile_sam, segment_anything_hq, torchvision.ops; print('ok')"
