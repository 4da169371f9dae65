"""benchmarks/bench_prompt_waste.py: the two counts behind issue 32's prefix-KV and padding verdicts, by hand."""

import numpy as np

from tests.script_loader import load_script

_mod = load_script("benchmarks/bench_prompt_waste.py")
common_prefix, padding_ratio = _mod.common_prefix, _mod.padding_ratio


def test_common_prefix_is_the_longest_prefix_all_rows_share():
    assert common_prefix([[1, 2, 3, 9], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5, 6], [5, 6]]) == 2
    assert common_prefix([[1, 2], [2, 1]]) == 0


def test_padding_ratio_pads_each_batch_to_its_longest_row():
    lengths = np.array([1, 3, 2, 2])
    assert padding_ratio(lengths, [[0, 1], [2, 3]]) == (2 * 3 + 2 * 2) / 8
    assert padding_ratio(lengths, [[0], [1], [2], [3]]) == 1.0
