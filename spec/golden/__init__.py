"""The golden arithmetic: the units' exact arithmetic in numpy (BF16/FP32 rounding, INT8
requantization, activation approximations, convolution, sparse products).

Written from the arithmetic's specification (IEEE 754, ONNX operator semantics), never
from the RTL; RTL results must match it bit for bit. :mod:`accelpool.sched.reference`
runs a whole micro-op DAG with it.
"""
