import re

import pytest

from bench import mutation


def test_every_module_and_test_file_exists():
    for name, (module, tests, limit) in mutation.MODULES.items():
        assert (mutation.ROOT / module).is_file(), name
        files = [t for t in tests if t.endswith(".py")]
        assert files and all((mutation.ROOT / t).is_file() for t in files), name
        assert limit is None or limit > 0


def test_config_reaches_cosmic_ray_as_written():
    tomllib = pytest.importorskip("tomllib")
    module, tests, _ = mutation.MODULES["golden.numerics"]
    cfg = tomllib.loads(mutation._config(module, tests, 60.0))["cosmic-ray"]
    assert cfg["module-path"] == "spec/golden/numerics.py"
    assert cfg["timeout"] == 60.0
    assert cfg["test-command"].endswith(
        "spec/golden/test_numerics.py -m 'not slow' -k 'not hypothesis and not error_bound'")
    # the filter joins the patterns and matches them at the start of an operator's name
    exclude = re.compile("|".join(cfg["filters"]["operators-filter"]["exclude-operators"]))
    binary, compare = "core/ReplaceBinaryOperator_", "core/ReplaceComparisonOperator_"
    for kept in [binary + "Add_Sub", binary + "LShift_RShift", binary + "BitOr_BitXor",
                 compare + "Lt_LtE", compare + "Eq_NotEq", compare + "Is_IsNot",
                 compare + "IsNot_Is", "core/NumberReplacer", "core/AddNot"]:
        assert not exclude.match(kept), kept
    for dropped in [binary + "Add_Pow", binary + "Sub_BitXor", binary + "BitOr_Mod",
                    compare + "Is_Eq", compare + "Eq_Is", compare + "LtE_IsNot"]:
        assert exclude.match(dropped), dropped


def test_score_counts_killed_over_judged():
    assert mutation._score({"killed": 3, "survived": 1, "incompetent": 5}) == 0.75
    assert mutation._score({"killed": 0, "survived": 0, "incompetent": 2}) == 0.0
