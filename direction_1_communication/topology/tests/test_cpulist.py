"""cpulists ("0-3,8") and cpumasks ("000000ff,00000000") both ways, and their errors."""

from __future__ import annotations

import pytest

from sagellm.topology import TopologyParseError, format_cpulist, format_cpumask, parse_cpulist, parse_cpumask


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("", ()), ("0", (0,)), ("0-2,8", (0, 1, 2, 8)), ("0,1", (0, 1)), (" 4-5 , 1\n", (1, 4, 5))],
)
def test_parse_cpulist(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpulist(text) == cpus


def test_format_cpulist_is_the_kernels_spelling() -> None:
    assert format_cpulist((8, 0, 1, 2, 4)) == "0-2,4,8"
    assert format_cpulist(()) == ""
    assert parse_cpulist(format_cpulist(tuple(range(0, 224, 3)))) == tuple(range(0, 224, 3))


def test_cpumask_words_are_high_first() -> None:
    assert parse_cpumask("00000000,000fffff") == tuple(range(20))
    assert parse_cpumask("000000ff,fff00000") == tuple(range(20, 40))
    assert format_cpumask(tuple(range(20, 40))) == "000000ff,fff00000"
    assert format_cpumask(()) == "00000000"
    assert parse_cpumask(format_cpumask((0, 63, 64, 200))) == (0, 63, 64, 200)


@pytest.mark.parametrize("text", ["a-b", "3-1", "0-"])
def test_bad_cpulists_raise(text: str) -> None:
    with pytest.raises(TopologyParseError):
        parse_cpulist(text)


def test_bad_cpumask_raises() -> None:
    with pytest.raises(TopologyParseError):
        parse_cpumask("zz,00")
