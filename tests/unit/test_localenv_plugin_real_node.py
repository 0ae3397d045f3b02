"""The pytest plugin's handling of the real node: tests that ask for it are marked, their
modules run after every other module, and tests that do not ask never take the lock."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

MODULES = {
    "test_a_uses_node.py": "def test_real(real_node):\n    pass\n\ndef test_plain_in_same_module():\n    pass\n",
    "test_b_plain.py": "def test_one():\n    pass\n\ndef test_two():\n    pass\n",
    "test_c_plain.py": "def test_three():\n    pass\n",
}


def test_real_node_modules_run_last_and_are_marked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{name.removesuffix(".py"): body for name, body in MODULES.items()})
    result = pytester.runpytest_inprocess("-p", "localenv.pytest_plugin", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "test_b_plain.py::test_one", "test_b_plain.py::test_two", "test_c_plain.py::test_three",
        "test_a_uses_node.py::test_real", "test_a_uses_node.py::test_plain_in_same_module",
    ]
    deselected = pytester.runpytest_inprocess("-p", "localenv.pytest_plugin", "--collect-only", "-q",
                                              "-m", "not real_node")
    kept = [line for line in deselected.outlines if "::" in line]
    assert "test_a_uses_node.py::test_real" not in kept and len(kept) == 4
