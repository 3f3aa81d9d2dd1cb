"""Print the versions pip would install for the GPU stack (`make check-gpu-install`), from a `pip install --dry-run
--report` JSON report: a pin that cannot co-install fails in pip's resolver here, before anyone reaches a cluster.

    python scripts/check_gpu_install.py REPORT.json
"""

import json
import sys


PACKAGES = ("vllm", "torch", "transformers", "trl", "deepspeed", "accelerate", "flash-attn")


def main(path: str) -> int:
    with open(path) as handle:
        report = json.load(handle)
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    for name in PACKAGES:
        if name in versions:
            print(f"{name:14s}{versions[name]}")
    print(f"({len(versions)} packages in all; the full list is in {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
