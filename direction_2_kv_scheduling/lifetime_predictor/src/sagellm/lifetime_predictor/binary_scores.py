"""Scores of a yes/no prediction ("reused within T?") against what happened."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class BinaryScores:
    num: int
    positive_rate: float  # share of uses really reused within T
    accuracy: float
    balanced_accuracy: float  # mean of the recall of both classes: 0.5 for any constant answer
    precision: float
    recall: float
    majority_accuracy: float  # accuracy of always answering the commoner class
    auc: float  # ranking quality of the score, 0.5 = chance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(predicted: NDArray[np.bool_], actual: NDArray[np.bool_], ranking: NDArray[np.float64]) -> BinaryScores:
    """``ranking``: higher means likelier reused (for the AUC); ``predicted`` the hard answer."""
    num = len(actual)
    positives = int(actual.sum())
    true_pos = int((predicted & actual).sum())
    true_neg = int((~predicted & ~actual).sum())
    recall = true_pos / positives if positives else 0.0
    specificity = true_neg / (num - positives) if num > positives else 0.0
    return BinaryScores(
        num=num,
        positive_rate=positives / num if num else 0.0,
        accuracy=(true_pos + true_neg) / num if num else 0.0,
        balanced_accuracy=(recall + specificity) / 2,
        precision=true_pos / int(predicted.sum()) if predicted.any() else 0.0,
        recall=recall,
        majority_accuracy=max(positives, num - positives) / num if num else 0.0,
        auc=roc_auc(ranking, actual),
    )


def roc_auc(ranking: NDArray[np.float64], actual: NDArray[np.bool_]) -> float:
    """Mann-Whitney U / (pos x neg), ties counted half: the chance a reused use outranks a non-reused one."""
    positives = int(actual.sum())
    negatives = len(actual) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    _, inverse, counts = np.unique(ranking, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    rank_sum = float(mean_rank[inverse][actual].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
