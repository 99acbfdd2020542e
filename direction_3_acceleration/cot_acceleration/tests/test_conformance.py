"""The probe accelerator passes core's CoTAccelerator suite, built directly and through the registry."""

from __future__ import annotations

from sagellm.core.config import CoTAccelerationSection
from sagellm.core.protocols import CoTAccelerator
from sagellm.core.registry import create_cot_accelerator
from sagellm.core.testing import CoTAcceleratorConformance
from sagellm.cot_acceleration import AnswerProbeAccelerator


class TestAnswerProbeConformance(CoTAcceleratorConformance):
    def make_accelerator(self) -> CoTAccelerator:
        return AnswerProbeAccelerator()


class TestAnswerProbeFromRegistry(CoTAcceleratorConformance):
    def make_accelerator(self) -> CoTAccelerator:
        return create_cot_accelerator(CoTAccelerationSection(implementation="probe"))


class TestDynasorLikeSettings(CoTAcceleratorConformance):
    """Three stable probes, any confidence above zero, a fixed interval: the suite holds for other settings too."""

    def make_accelerator(self) -> CoTAccelerator:
        return AnswerProbeAccelerator(stable_probes=3, confidence=0.01, probe_every=32, min_probe_gap=32)


def test_registry_passes_the_section_options() -> None:
    built = create_cot_accelerator(CoTAccelerationSection(implementation="probe", options={"esc_window": 8}))
    assert isinstance(built, AnswerProbeAccelerator) and built.esc_window == 8
