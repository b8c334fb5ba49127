"""Work spread over forked processes: dbluigi.forked."""

from __future__ import annotations

import os

import pytest

from dbluigi import forked

pytestmark = [pytest.mark.unit, pytest.mark.forks]  # run alone when threads exist (conftest)


def test_results_come_in_order_from_the_children() -> None:
    parent = os.getpid()
    results = list(forked.map_ranges(lambda s, e: (list(range(s, e)), os.getpid()), 10, chunk=3))
    assert [r for r, _ in results] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert parent not in {pid for _, pid in results}


def test_a_child_that_dies_ends_the_results_early() -> None:
    def dies_at_six(start: int, end: int) -> int:
        if start == 6:
            os._exit(1)
        return start

    got = list(forked.map_ranges(dies_at_six, 12, chunk=3))
    assert got == [0, 3][: len(got)]
