"""Which tables share a copy task and a work file (worker/jobs/grouping.py)."""

from __future__ import annotations

from worker.core.model import TablePlan
from worker.jobs.grouping import group_small_tables, units

MB = 1024 * 1024


def plan(name: str, size_bytes: int, index: int) -> TablePlan:
    return TablePlan(name=name, file=f"{index:05d}.db", columns=[], key=["id"],
                     key_kind="primary_key", key_types=["bigint"], key_positions=[0],
                     create_sql="", insert_sql="", size_bytes=size_bytes)


def tables(sizes: dict[str, int]) -> list[TablePlan]:
    return [plan(name, size, n) for n, (name, size) in enumerate(sizes.items())]


def test_big_tables_alone_first_then_small_ones_in_groups_of_a_shared_file():
    plans = tables({"big": 50 * MB, **{f"s{i:03d}": 8192 for i in range(250)}, "huge": 900 * MB})
    found = group_small_tables(plans, table_bytes=MB, max_tables=60)
    assert found[:2] == [["big"], ["huge"]]
    groups = found[2:]
    assert [len(g) for g in groups] == [50, 50, 50, 50, 50]  # within max_tables, evened out
    assert [name for g in groups for name in g] == [f"s{i:03d}" for i in range(250)]
    by_name = {p.name: p for p in plans}
    for group in groups:
        assert len({by_name[n].file for n in group}) == 1
    assert len({by_name[g[0]].file for g in groups}) == 5
    assert by_name["big"].file == "00000.db"  # a big table keeps its own file
    assert sorted(units(plans)) == sorted(found)  # the same units, read back from the files


def test_a_few_small_tables_are_spread_over_several_groups_for_the_processes():
    plans = tables({f"s{i}": 0 for i in range(40)})
    groups = group_small_tables(plans, table_bytes=MB, max_tables=100)
    assert [len(g) for g in groups] == [10, 10, 10, 10]


def test_grouping_off_or_one_small_table_leaves_every_table_alone():
    for sizes, table_bytes in (({"a": 0, "b": 0}, 0), ({"a": 0, "b": 5 * MB}, MB)):
        plans = tables(sizes)
        assert group_small_tables(plans, table_bytes=table_bytes, max_tables=100) == [
            [name] for name in sizes]
        assert [p.file for p in plans] == ["00000.db", "00001.db"]
