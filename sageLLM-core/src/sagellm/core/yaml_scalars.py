"""YAML as configuration is read: PyYAML's safe loader without YAML 1.1's base-60 numbers.

PyYAML follows YAML 1.1, where ``2:4`` is the sexagesimal integer 124 and
``1:30.5`` the float 90.5. Configuration values look like that on purpose --
a sparsity pattern (``pattern: 2:4``), a ratio -- and a user who writes them
means the string. YAML 1.2 dropped base 60; this loader drops it too and
resolves everything else as ``yaml.safe_load`` does.
"""

from __future__ import annotations

import re
from typing import IO, Any

import yaml

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_WITHOUT_BASE_60 = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT_WITHOUT_BASE_60 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class ConfigYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose numbers never come from ``N:M`` text."""


ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigYamlLoader.add_implicit_resolver(_INT_TAG, _INT_WITHOUT_BASE_60, list("-+0123456789"))
ConfigYamlLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_WITHOUT_BASE_60, list("-+0123456789."))


def load_yaml(stream: str | IO[str]) -> Any:
    """Parse one YAML document the way configuration is read (``2:4`` stays the string "2:4")."""
    return yaml.load(stream, Loader=ConfigYamlLoader)  # noqa: S506 -- a SafeLoader subclass
