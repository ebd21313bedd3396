"""Evaluation harness: replay streams through models under one prequential protocol.

>>> from recinc_plugins.evaluation import Stream, compare  # the two entry points
"""

from .comparison import CompareInterrupted, CompareResult, compare
from .freshness import freshness
from .metrics import drift_points, event_metrics, paired_tests, rating_metrics, window_curves
from .prequential import ReplayConfig, ReplayRecord, replay
from .report import format_summary, protocol_text, write_report
from .stream import Stream

__all__ = [
    "CompareInterrupted",
    "CompareResult",
    "ReplayConfig",
    "ReplayRecord",
    "Stream",
    "compare",
    "drift_points",
    "event_metrics",
    "format_summary",
    "freshness",
    "paired_tests",
    "protocol_text",
    "rating_metrics",
    "replay",
    "window_curves",
    "write_report",
]
