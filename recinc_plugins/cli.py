"""The ``recinc`` command: ``recinc compare | freshness | models | datasets | grid | tune |
audit-forget``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tabulate import tabulate

__all__ = ["build_parser", "main"]


def _cmd_models(args: argparse.Namespace) -> int:
    from .registry import list_models

    table = list_models(capabilities=True)
    yes_no = {True: "yes", False: "no"}
    table["installed"] = table["installed"].map(yes_no)
    for column in ("side_features", "context"):
        table[column] = table[column].map(yes_no)
    columns = ["name", "extra", "installed", "feedback", "update", "cold_start",
               "side_features", "context", "description"]
    headers = ["name", "extra", "installed", "feedback", "update", "cold start",
               "side features", "context", "description"]
    print(tabulate(table[columns].astype(object).where(table[columns].notna(), "-"),
                   headers=headers, tablefmt="simple", showindex=False))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import data_home, list_datasets

    table = list_datasets(args.data_home)
    table["present"] = table["present"].map({True: "yes", False: "no (downloads on first use)"})
    print(f"data home: {data_home(args.data_home)} (set RECINC_DATA_HOME or --data-home)")
    print(tabulate(table[["name", "present", "description"]], headers="keys", tablefmt="simple",
                   showindex=False))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation.cli import run_compare

    return run_compare(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recinc",
        description="Compare incremental recommenders on replayed interaction streams.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = sub.add_parser(
        "compare",
        help="replay a stream through models, test-then-learn, and report",
        description="Replay a timestamped stream through several models under one prequential "
                    "protocol (each step scored before it is learned) and print a summary.",
    )
    from .evaluation.cli import add_compare_arguments

    add_compare_arguments(compare)
    compare.set_defaults(func=_cmd_compare)

    fresh = sub.add_parser(
        "freshness",
        help="recall@K against the update interval, with learned and fresh context",
        description="Replay one stream through the models once per update interval and "
                    "context setting (each cell a compare) and print recall@K against the "
                    "interval: how often must the model learn, and how much does context "
                    "make up for?",
    )
    from .evaluation.freshness import add_freshness_arguments, run_freshness

    add_freshness_arguments(fresh)
    fresh.set_defaults(func=run_freshness)

    models = sub.add_parser("models", help="list the models, their extras, whether installed, "
                                           "and what they learn from and can do")
    models.set_defaults(func=_cmd_models)

    datasets = sub.add_parser("datasets", help="list the named datasets and the data home")
    datasets.add_argument("--data-home", default=None, help="folder holding the datasets")
    datasets.set_defaults(func=_cmd_datasets)

    from .grid.cli import add_grid_commands

    add_grid_commands(sub)

    audit = sub.add_parser(
        "audit-forget",
        help="look for any trace of forgotten users or items in a saved model file",
        description="Read a saved model file (without building the model or running code "
                    "from it) and report, per id, every place it is still found: the id maps, "
                    "every string and id table, the raw bytes. Exit status: 0 no trace, 1 a "
                    "trace was found, 2 the file is not a readable model file.",
    )
    from .audit import add_audit_arguments, run_audit

    add_audit_arguments(audit)
    audit.set_defaults(func=run_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, FileNotFoundError) as exc:
        print(f"recinc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a comparison (loading data, writing a report)
        print("recinc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
