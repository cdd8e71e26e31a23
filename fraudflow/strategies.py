"""The strategy registry: what each way of handling the imbalance is, in one place.

Training, evaluate, the figures, the plots data, verify, report and export read it. A network strategy trains with
the `train` params plus its own section under `networks` in params.yaml (dvc.yaml's `train` stages are one per key
there); logistic regression, the trees and the blend of the others have stages of their own. Adding a network
strategy is an entry here, its section in params.yaml, and its training code if it trains differently
(fraudflow/members.py); see docs/contributing.md.
"""

from dataclasses import dataclass
from pathlib import Path

from fraudflow.common import BLEND_DIR, PARAMS_FILE, PREDICTIONS_DIR, StageError, load_params

NETWORK, LOGISTIC, TREES, BLEND = "network", "logistic", "trees", "blend"


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: str  # NETWORK (stages.train, params networks.<name>), LOGISTIC, TREES or BLEND (a stage of its own)
    balanced_odds: bool = False  # trains at odds 1:1, so evaluate shifts its logits back to the real odds
    class_weights: bool = False  # each class carries half of the loss
    balanced_batches: bool = False  # 50/50 batches of networks.<name>.steps_per_epoch steps; output bias starts at 0
    loss: str = "binary_crossentropy"  # or "binary_focal_crossentropy" (params gamma, alpha)

    @property
    def stage(self) -> str:
        """The dvc.yaml stage that trains it."""
        return f"train@{self.name}" if self.kind == NETWORK else f"train_{self.name}"

    @property
    def has_members(self) -> bool:
        return self.kind != LOGISTIC

    @property
    def predictions(self) -> Path:
        """Its predictions file: the blend's apart, since its stage reads every other one's folder."""
        return (BLEND_DIR if self.kind == BLEND else PREDICTIONS_DIR) / f"{self.name}.parquet"


REGISTRY = {
    s.name: s
    for s in (
        Strategy("baseline", NETWORK),
        Strategy("weighted", NETWORK, balanced_odds=True, class_weights=True),
        Strategy("resampled", NETWORK, balanced_odds=True, balanced_batches=True),
        Strategy("focal", NETWORK, loss="binary_focal_crossentropy"),
        Strategy("logistic", LOGISTIC),  # the reference every other must beat
        Strategy("gbdt", TREES),  # what users would pick instead
        Strategy("blend", BLEND),  # the others' logits, weighted as the validation split says
    )
}
NETWORKS_SECTION = "networks"
# Colours of the strategies evaluated, in order: category10 (matplotlib's tab10), the scheme the plot templates use.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def the_kind(kind: str) -> Strategy:
    """The one strategy of a kind that has a stage of its own (LOGISTIC, TREES, BLEND)."""
    return next(s for s in REGISTRY.values() if s.kind == kind)


def network_params() -> dict:
    """params.yaml's `networks` section, {name: its own params}; every name a registered network strategy."""
    networks = load_params(NETWORKS_SECTION)
    for name in networks:
        if name not in REGISTRY or REGISTRY[name].kind != NETWORK:
            known = ", ".join(s.name for s in REGISTRY.values() if s.kind == NETWORK)
            raise StageError(
                f"{PARAMS_FILE}: {NETWORKS_SECTION}.{name}: not a network strategy of fraudflow/strategies.py ({known})"
            )
    return networks


def evaluated() -> list[Strategy]:
    """Every strategy the pipeline trains, in registry order: the networks params.yaml lists, and the others."""
    networks = network_params()
    return [s for s in REGISTRY.values() if s.kind != NETWORK or s.name in networks]


def colour(position: int) -> str:
    """The colour of the strategy at this position among those evaluated: the same in figures and charts."""
    return PALETTE[position % len(PALETTE)]
