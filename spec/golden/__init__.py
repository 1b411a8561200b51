"""The golden reference: the micro-op DAG run in numpy with the hardware's exact arithmetic.

Written from the arithmetic's specification (IEEE 754, ONNX operator semantics), never
from the RTL; RTL results must match it bit for bit.
"""
