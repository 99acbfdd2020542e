"""Conformance suite for :class:`sagellm.core.protocols.FusedKernel`.

A fused kernel replaces a chain of ops, so the one property that matters is
that it computes what the chain computes. Core stays torch-free: the
implementer supplies example calls, the unfused reference, and a closeness test.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.protocols import FusedKernel


class FusedKernelConformance:
    """Inherit and implement :meth:`make_kernel`, :meth:`example_calls`, :meth:`reference` and :meth:`close`."""

    def make_kernel(self) -> FusedKernel:
        raise NotImplementedError

    def example_calls(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """(args, kwargs) for ``apply``; cover ragged sizes, not only the fast path's favourite shapes."""
        raise NotImplementedError

    def reference(self, *args: Any, **kwargs: Any) -> Any:
        """What the unfused ops compute for the same call."""
        raise NotImplementedError

    def close(self, fused: Any, reference: Any) -> bool:
        raise NotImplementedError

    def test_implements_the_protocol(self) -> None:
        assert isinstance(self.make_kernel(), FusedKernel)

    def test_name_is_a_non_empty_string(self) -> None:
        name = self.make_kernel().name
        assert isinstance(name, str) and name.strip()

    def test_ops_name_what_apply_runs_and_serves_answers_a_bool(self) -> None:
        kernel = self.make_kernel()
        assert isinstance(kernel.ops, tuple) and kernel.ops and all(isinstance(op, str) for op in kernel.ops)
        for args, _kwargs in self.example_calls():
            assert args and args[0] in kernel.ops, f"example call of an op not in ops: {args[:1]}"
            assert isinstance(kernel.serves(*args[:3]), bool)
        assert kernel.serves("no-such-op-" + kernel.name) is False

    def test_computes_what_the_unfused_ops_compute(self) -> None:
        kernel, calls = self.make_kernel(), self.example_calls()
        assert calls, "give at least one example call"
        for args, kwargs in calls:
            assert self.close(kernel.apply(*args, **kwargs), self.reference(*args, **kwargs))

    def test_repeated_calls_agree(self) -> None:
        kernel = self.make_kernel()
        args, kwargs = self.example_calls()[0]
        assert self.close(kernel.apply(*args, **kwargs), kernel.apply(*args, **kwargs))
