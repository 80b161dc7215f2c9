"""Schedule edits applied to source text: add (into a block or a new one), replace, remove."""

from __future__ import annotations

from zhenwu_cc.schedule_edit import Edit, directives

SRC = """kernel k(x: f32[4]) -> f32[4] {
    y = exp(x)
    return y
}
"""
WITH = SRC + """
schedule k {
    tile y [4]   // a comment stays
    buffers 2
}
"""


def test_directives_as_written():
    ds = directives(WITH, "k.zk", "k")
    assert [(d.text, d.line, d.col) for d in ds] == [("tile y [4]", 7, 5), ("buffers 2", 8, 5)]
    assert directives(WITH, "k.zk", "other") == []


def test_add_to_an_existing_block():
    out = Edit("k", "buffers 1").apply(WITH)
    assert out.endswith("    buffers 2\n    buffers 1\n}\n")


def test_add_creates_a_block():
    assert Edit("k", "buffers 1").apply(SRC) == SRC + "\nschedule k {\n    buffers 1\n}\n"


def test_add_into_a_one_line_block():
    out = Edit("k", "buffers 1").apply(SRC + "schedule k { tile y [4] }\n")
    assert out.endswith("schedule k { tile y [4] \n    buffers 1\n}\n")


def test_replace_and_remove_keep_the_rest():
    tile, buffers = directives(WITH, "k.zk", "k")
    assert "    tile y [2]   // a comment stays\n" in Edit("k", "tile y [2]", tile).apply(WITH)
    removed = Edit("k", "", buffers).apply(WITH)
    assert "buffers" not in removed and "tile y [4]" in removed


def test_edit_records():
    tile = directives(WITH, "k.zk", "k")[0]
    assert Edit("k", "tile y [2]", tile).to_dict() == {
        "action": "replace", "kernel": "k", "line": "tile y [2]", "old": "tile y [4]",
        "at_line": 7}
    assert Edit("k", "buffers 1").to_dict()["action"] == "add"
    assert Edit("k", "", tile).text() == "remove `tile y [4]` (line 7)"
