"""File lists of the folds (rule file_list): written with a header, read back in order, a wrong file named."""

from __future__ import annotations

import pytest

from glaciermap.data.file_list import HEADER, read_file_lists, write_file_list


def test_lists_round_trip_in_order_and_concatenate(tmp_path):
    a, b, empty = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "empty.txt"
    write_file_list(["results/r/cubes/G2/2015.nc", "results/r/cubes/G1/2015.nc"], a)
    write_file_list(["results/r/cubes/G3/2015.nc"], b)
    write_file_list([], empty)
    assert a.read_text().splitlines()[0] == HEADER
    assert read_file_lists(a) == ["results/r/cubes/G2/2015.nc", "results/r/cubes/G1/2015.nc"]
    assert read_file_lists([a, empty, b]) == ["results/r/cubes/G2/2015.nc", "results/r/cubes/G1/2015.nc",
                                              "results/r/cubes/G3/2015.nc"]
    assert read_file_lists([empty]) == [] and read_file_lists([]) == []
    assert not list(tmp_path.glob(".*part*"))           # written atomically: no temporary file left


def test_a_file_that_is_not_a_list_is_named(tmp_path):
    cube = tmp_path / "2015.nc"
    cube.write_bytes(b"\x89HDF\r\n\x1a\n\x00\xff")
    with pytest.raises(ValueError, match=r"file list .*2015\.nc: its first line is not the glaciermap file-list header"):
        read_file_lists([str(cube)])
    hand = tmp_path / "hand.txt"
    hand.write_text("results/r/cubes/G1/2015.nc\n")      # a list without its header (hand-written or cut)
    with pytest.raises(ValueError, match="hand.txt"):
        read_file_lists(hand)


def test_a_path_that_cannot_be_listed_is_refused_and_nothing_is_written(tmp_path):
    out = tmp_path / "l.txt"
    with pytest.raises(ValueError, match="cannot be listed one a line"):
        write_file_list(["ok.nc", "two\nlines.nc"], out)
    assert not out.exists()
