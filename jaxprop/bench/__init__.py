"""The benchmark (``jaxprop bench``): its cases (:mod:`.cases`), the NumPy and PyTorch peers it
times jaxprop against (:mod:`.peers`), side-by-side timing (:mod:`.timing`) and the report
(:mod:`.report`: table, plot, files).

May import: ``experiments``, ``training``, ``registry``, ``models``, ``check``, ``model``, ``nn``,
``util``.
"""

from jaxprop.bench.cases import matmul_peak_gflops, run_bench, xla_flops
from jaxprop.bench.peers import numpy_grad_tanh_softmax, numpy_mlp_grad
from jaxprop.bench.report import format_table, write_report
from jaxprop.bench.timing import compile_time, time_side_by_side

__all__ = [
    "compile_time",
    "format_table",
    "matmul_peak_gflops",
    "numpy_grad_tanh_softmax",
    "numpy_mlp_grad",
    "run_bench",
    "time_side_by_side",
    "write_report",
    "xla_flops",
]
