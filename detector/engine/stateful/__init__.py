"""Stateful detections: first seen, Sigma correlations and suppression, over event time."""

from detector.engine.stateful.evaluator import DEFAULT_LATENESS, Stateful
from detector.engine.stateful.suppression import SuppressionSummary

__all__ = ["DEFAULT_LATENESS", "Stateful", "SuppressionSummary"]
