"""Cold-start protocols: how a dataset is split into training data and the four scenarios' tasks.

``base`` holds the data model (:class:`ProtocolConfig`, :class:`TaskSet`, :class:`Split`,
:class:`Protocol`), ``cold_start`` the generic existing/new construction, ``presets`` its named
configurations (``cold-random``, ``temporal``, ``melu``) and ``predefined`` the protocol of a
dataset's own folds. Protocols, built-in or from another package, are declared as
``bench.protocols`` entry points naming a factory that takes the suite's ``[protocol]`` table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.errors import RegistryError
from bench.protocol.base import (
    SCENARIOS,
    Protocol,
    ProtocolConfig,
    Split,
    SupportSize,
    TaskSet,
)
from bench.registry import Registry

PROTOCOL_GROUP = "bench.protocols"

ProtocolFactory = Callable[[dict[str, Any] | None], Protocol]


def _check_factory(name: str, obj: Any) -> None:
    if not callable(obj):
        raise RegistryError(f"protocol {name!r} resolves to {obj!r}, which is not callable")


PROTOCOLS: Registry[ProtocolFactory] = Registry("protocol", _check_factory, PROTOCOL_GROUP)


def make_protocol(name: str, overrides: dict[str, Any] | None = None) -> Protocol:
    """Build the registered protocol ``name`` with parameter overrides from a suite."""
    factory = PROTOCOLS.get(name)
    params = {k: v for k, v in (overrides or {}).items() if k != "name"}
    protocol = factory(params)
    if not isinstance(protocol, Protocol):
        raise RegistryError(f"protocol {name!r} built {protocol!r}, which is not a Protocol")
    return protocol


__all__ = [
    "PROTOCOLS",
    "SCENARIOS",
    "Protocol",
    "ProtocolConfig",
    "Split",
    "SupportSize",
    "TaskSet",
    "make_protocol",
]
