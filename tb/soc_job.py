"""cocotb test module that runs one :class:`tb.soc.SocJob` on the SoC (see :func:`tb.soc.run_job`).

The job file (a pickle named by ``$ACCELPOOL_SOC_JOB``) holds the pool config document, the
job and where to write the :class:`tb.soc.SocResult`. A run that faults or times out is
still a passing cocotb test: the result carries the diagnosis for the host to report.
"""

from __future__ import annotations

import os
import pickle

import cocotb

from hw.config import parse_config
from tb.soc import JOB_ENV, SocDriver


@cocotb.test()
async def run_job(dut):
    with open(os.environ[JOB_ENV], "rb") as f:
        spec = pickle.load(f)
    cfg = parse_config(spec["config"])
    result = await SocDriver(dut, cfg).execute(spec["job"])
    with open(spec["out"], "wb") as f:
        pickle.dump(result, f)
