"""sqlglot (and YAML's parser), loaded the first time something of it is used.

Importing sqlglot takes about 0.08 s, a quarter of a no-op build, which never needs it
when every file is in the parse cache. Modules that use sqlglot here and there (quoting a
name, rewriting a statement) import it from this module instead:
``from dbluigi.lazy import exp, sqlglot``. The names stand for the real modules (type
checkers see those); the first attribute read imports the module, and each attribute
read is then kept on the stand-in, so later reads cost what a module's do. ``yaml`` is
the same for the YAML seed reader: a build of CSV seeds never loads it.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any


class _Lazy(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and inspect probe dunders: do not import
            raise AttributeError(attr)
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)
        return value


if TYPE_CHECKING:
    import sqlglot as sqlglot
    import yaml as yaml
    from sqlglot import errors as errors
    from sqlglot import exp as exp
    from sqlglot import tokens as tokens
else:
    sqlglot = _Lazy("sqlglot")
    exp = _Lazy("sqlglot.expressions")
    tokens = _Lazy("sqlglot.tokens")
    errors = _Lazy("sqlglot.errors")
    yaml = _Lazy("yaml")
