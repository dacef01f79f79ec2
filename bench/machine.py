"""What machine a benchmark ran on, printed beside every figure."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone


def machine_info() -> dict:
    info: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
    }
    try:
        cpuinfo = open("/proc/cpuinfo").read()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
        info["cpu_flags"] = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                             if f in flags]
        mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        info["memory_gb"] = round(int(mem.split()[1]) / 1024**2, 1)
    except (OSError, StopIteration):
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            info["gpu"] = out or None
        except (OSError, subprocess.TimeoutExpired):
            info["gpu"] = None
    else:
        info["gpu"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info
