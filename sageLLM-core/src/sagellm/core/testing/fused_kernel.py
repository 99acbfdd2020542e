"""Conformance suite for :class:`sagellm.core.protocols.FusedKernel` and its op groups.

A fused kernel replaces a chain of ops, so the one property that matters is
that it computes what the chain computes. Core stays torch-free: the
implementer supplies example calls of its ops, the unfused reference, and
a closeness test; the suite calls each op through its typed group method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagellm.core.protocols import FusedKernel
from sagellm.core.protocols.acceleration import KERNEL_OP_GROUPS

ExampleCall = tuple[str, tuple[Any, ...], dict[str, Any]]


class FusedKernelConformance:
    """Inherit and implement :meth:`make_kernel`, :meth:`example_calls`, :meth:`reference` and :meth:`close`."""

    def make_kernel(self) -> FusedKernel:
        raise NotImplementedError

    def example_calls(self) -> list[ExampleCall]:
        """(op, args, kwargs) per call; cover every op and ragged sizes, not only the fast path's favourites.

        Fresh buffers with the same values on every call (seed them): ops that
        write in place are run on one set and their reference on another.
        """
        raise NotImplementedError

    def reference(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """What the unfused ops compute for the same call."""
        raise NotImplementedError

    def close(self, fused: Any, reference: Any) -> bool:
        raise NotImplementedError

    def written(self, op: str, returned: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What a call produced, for :meth:`close`: its return value, or what an in-place op wrote."""
        return returned

    # ------------------------------------------------------------------ helpers
    def _groups(self, kernel: FusedKernel) -> list[type[Any]]:
        return [group for group in KERNEL_OP_GROUPS if isinstance(kernel, group)]

    def _op(self, kernel: FusedKernel, op: str) -> Callable[..., Any]:
        """The typed method behind ``op``, found through the group that names it."""
        group = next((g for g, ops in KERNEL_OP_GROUPS.items() if op in ops), None)
        assert group is not None, f"{op!r} is in no op group"
        assert isinstance(kernel, group), f"{op!r} needs {group.__name__}"
        method: Callable[..., Any] = getattr(kernel, op)
        return method

    # -------------------------------------------------------------------- tests
    def test_implements_the_protocol_and_at_least_one_group(self) -> None:
        kernel = self.make_kernel()
        assert isinstance(kernel, FusedKernel)
        assert self._groups(kernel), f"implements none of {[g.__name__ for g in KERNEL_OP_GROUPS]}"

    def test_name_is_a_non_empty_string(self) -> None:
        name = self.make_kernel().name
        assert isinstance(name, str) and name.strip()

    def test_ops_are_exactly_the_groups_it_implements(self) -> None:
        kernel = self.make_kernel()
        implemented = {op for group in self._groups(kernel) for op in KERNEL_OP_GROUPS[group]}
        assert isinstance(kernel.ops, tuple) and set(kernel.ops) == implemented

    def test_serves_answers_a_bool_and_refuses_unknown_ops(self) -> None:
        kernel = self.make_kernel()
        for op, args, _kwargs in self.example_calls():
            assert op in kernel.ops, f"example call of an op not in ops: {op}"
            assert isinstance(kernel.serves(op, *args[:2]), bool)
        assert kernel.serves("no-such-op-" + kernel.name) is False

    def test_every_op_has_an_example(self) -> None:
        kernel = self.make_kernel()
        assert set(kernel.ops) <= {op for op, _args, _kwargs in self.example_calls()}

    def test_computes_what_the_unfused_ops_compute(self) -> None:
        kernel = self.make_kernel()
        for (op, args, kwargs), (_, ref_args, ref_kwargs) in zip(
            self.example_calls(), self.example_calls(), strict=True
        ):
            fused = self.written(op, self._op(kernel, op)(*args, **kwargs), args, kwargs)
            reference = self.written(op, self.reference(op, *ref_args, **ref_kwargs), ref_args, ref_kwargs)
            assert self.close(fused, reference), f"{op} differs from its reference"

    def test_repeated_calls_agree(self) -> None:
        kernel = self.make_kernel()
        for (op, args, kwargs), (_, again, again_kwargs) in zip(
            self.example_calls(), self.example_calls(), strict=True
        ):
            first = self.written(op, self._op(kernel, op)(*args, **kwargs), args, kwargs)
            second = self.written(op, self._op(kernel, op)(*again, **again_kwargs), again, again_kwargs)
            assert self.close(first, second), op
