"""The top-level package: what `from hiper import *` brings into a namespace."""
import builtins
import importlib

import hiper


def test_star_import_shadows_no_builtin():
    namespace: dict = {}
    exec("from hiper import *", namespace)
    exported = set(namespace) - {"__builtins__"}
    assert exported == set(hiper.__all__)
    assert exported & set(dir(builtins)) == set()


def test_every_exported_name_exists():
    assert [name for name in hiper.__all__ if not hasattr(hiper, name)] == []


def test_format_module_stays_reachable():
    from hiper import format as plan_execute_format

    assert plan_execute_format is importlib.import_module("hiper.format")
    assert plan_execute_format.__name__ == "hiper.format"
    assert callable(plan_execute_format.parse_turn)
