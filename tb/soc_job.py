"""cocotb test module that runs :class:`accelpool.tb.soc.SocJob` s on the SoC (see :func:`accelpool.tb.soc.run_jobs`).

The job file (a pickle named by ``$ACCELPOOL_SOC_JOB``) holds the pool config document, the
jobs and where to write the list of :class:`accelpool.tb.soc.SocResult`. A run that faults or times
out is still a passing cocotb test: its result carries the diagnosis for the host to report.
"""

from __future__ import annotations

import os
import pickle

import cocotb

from accelpool.spec.config import parse_config
from accelpool.tb.soc import JOB_ENV, SocDriver


@cocotb.test()
async def run_jobs(dut):
    with open(os.environ[JOB_ENV], "rb") as f:
        spec = pickle.load(f)
    driver = SocDriver(dut, parse_config(spec["config"]))
    results = [await driver.execute(job) for job in spec["jobs"]]
    with open(spec["out"], "wb") as f:
        pickle.dump(results, f)
