"""cocotb tests of the layout engine on a scratchpad (run through accelpool.tb.harness.run_cocotb).

Random IM2COL and TRANSPOSE EXECs (:func:`accelpool.tb.layout_ref.im2col_case`,
:func:`accelpool.tb.layout_ref.transpose_case`), each on a fresh random memory image: the whole image
read back must equal :func:`accelpool.tb.layout_ref.reference` (so row padding and everything else
outside the destination is untouched) and every EXEC must take
:func:`accelpool.sched.cost.layout.cycles` cycles. The command stream stalls at random.
"""

import cocotb
import numpy as np

from accelpool.spec.units.layout import MemCommand, MemFunc
from accelpool.sched.cost.layout import cycles
from accelpool.tb.cocotb_unit import UnitTB
from accelpool.tb.harness import tb_params
from accelpool.tb.layout_ref import im2col_case, reference, transpose_case


@cocotb.test()
async def random_execs(dut):
    p = tb_params()
    wb = p["word_bits"] // 8
    tb = UnitTB(dut, word_bytes=wb, addr_width=(p["depth"] - 1).bit_length(), stall=0.3,
                seed=p["seed"])
    await tb.reset()
    rng = np.random.default_rng(p["seed"])
    limit = p["depth"] * wb
    done = 0
    while done < p["cases"]:
        func, args, end = (im2col_case if done % 2 == 0 else transpose_case)(rng, wb)
        size = -(-(end + 16) // wb) * wb
        if size > limit:
            continue
        image = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        await tb.load(0, image)
        t = await tb.execute(MemCommand.const({"func": func, "args": args}).as_value().value)
        assert t == cycles(func, **args), f"{func.name} {args}: {t} cycles"
        got = await tb.read(0, size)
        assert got == reference(image, func, args), f"{func.name} {args}"
        done += 1
    dut._log.info(f"{done} EXECs ({MemFunc.IM2COL.name}, {MemFunc.TRANSPOSE.name}) match")
