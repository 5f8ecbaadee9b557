"""Named multi-day workloads: frozen specs (no I/O) and their registry."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from torta.errors import UnknownNameError

SERVEGEN_CITATION = ("Xiang et al., ServeGen: Workload Characterization and Generation of Large "
                     "Language Model Serving in Production, arXiv:2505.09999 (2025); data "
                     "alibaba/ServeGen@f891d118 data/language, Apache-2.0")
AZURE_CITATION = ("Patel et al., Splitwise, ISCA 2024; Azure/AzurePublicDataset "
                  "AzureLLMInferenceTrace_conv.csv, CC BY 4.0")

# ServeGen language class -> the LLM that serves it in TORTA's evaluation (../shared/DESIGN.md,
# Evaluation protocol): the largest class on the largest model so that model switching matters.
CLASS_MODEL: dict[str, str] = {
    "m-large": "llama2-70b",
    "m-mid": "llama2-13b",
    "m-small": "llama2-7b",
}


@dataclass(frozen=True)
class WorkloadSpec:
    """A multi-day workload synthesized from ServeGen per-client rates.

    `classes`: ServeGen classes included, each served by CLASS_MODEL[cls]. Arrivals: per client and
    10-min window a Gamma renewal process with the window's published inter-arrival CV (Poisson,
    CV 1, where the CV is missing), holding the window's scaled request count. Token lengths:
    drawn with replacement from `length_source`. Origins: follow-the-sun over the scenario's
    regions. Rates are scaled so the mean utilisation of the scenario's fleet is
    `target_utilisation`.
    """

    name: str
    classes: tuple[str, ...]
    length_source: str = "azure-2023-conv"
    target_utilisation: float = 0.6
    scenario: str = "abilene"
    days: int = 14
    slot_s: float = 900.0
    description: str = ""

    @property
    def stream(self) -> int:
        """Random-stream id of this workload: the same seed gives different draws per workload."""
        return zlib.crc32(self.name.encode())

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(CLASS_MODEL[c] for c in self.classes)

    @property
    def sources(self) -> tuple[str, ...]:
        return (
            *(f"servegen:language/{c}" for c in self.classes),
            f"lengths:{self.length_source}",
        )


WORKLOADS: dict[str, WorkloadSpec] = {
    s.name: s
    for s in (
        WorkloadSpec("servegen-large-14d", ("m-large",),
                     description="ServeGen m-large 14 d -> llama2-70b"),
        WorkloadSpec("servegen-mid-14d", ("m-mid",),
                     description="ServeGen m-mid 14 d -> llama2-13b"),
        WorkloadSpec("servegen-small-14d", ("m-small",),
                     description="ServeGen m-small 14 d -> llama2-7b"),
        WorkloadSpec("servegen-mix-14d", ("m-large", "m-mid", "m-small"),
                     description="ServeGen m-large + m-mid + m-small 14 d at once -> llama2-70b, "
                                 "-13b, -7b (the evaluation workload)"),
    )
}


def get_spec(name: str) -> WorkloadSpec:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UnknownNameError("workload", name, list(WORKLOADS)) from None


def list_workloads() -> list[WorkloadSpec]:
    return [WORKLOADS[k] for k in sorted(WORKLOADS)]
