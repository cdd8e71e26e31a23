"""fraudflow's library: what the stages in stages/ share.

Importing it (every stage does, first) pins the settings that change the bytes of the results, before numpy or
TensorFlow is loaded. Each is set only where the environment does not set it already: a value you set yourself
wins, and may change the results' last bits. What each pin costs and changes is measured by
`benchmarks/benchmark.py --only pins`; what still differs between machines is in docs/reproducibility.md.
"""

import os
import platform

PINNED = {
    # TensorFlow's thread pools: the intra-op count sets how its kernels split their sums (1 and 2 threads give
    # different bits); by default both follow the machine's cores.
    "TF_NUM_INTRAOP_THREADS": "2",
    "TF_NUM_INTEROP_THREADS": "2",
    # oneDNN: no graph rewrites, and its kernels capped at AVX2 (otherwise picked by processor).
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
if platform.machine().lower() in ("x86_64", "amd64"):
    # numpy: no AVX-512 loops, so every AVX2 processor runs the same ones (AVX-512's float64 log differs from
    # the others in the last bit, which changed clean's LogAmount between processors).
    PINNED["NPY_DISABLE_CPU_FEATURES"] = "X86_V4 AVX512_ICL AVX512_SPR"

for name, value in PINNED.items():
    os.environ.setdefault(name, value)
