"""Arguments and runner for ``recinc compare`` (filled in by the harness)."""

from __future__ import annotations

import argparse


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="synthetic", help="dataset name or path")


def run_compare(args: argparse.Namespace) -> int:
    raise NotImplementedError("the evaluation harness is being built (issue 3)")
