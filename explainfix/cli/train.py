"""``explainfix train``: train a learned, fixed or fixed + pruned model from a YAML run config."""
from __future__ import annotations

import argparse
import json

HELP = "train a model (learned, spatially fixed, or fixed + ChannelPrune) from a YAML run config"

EXAMPLE = """\
example:
  explainfix train --config run.yaml --out runs/ghaar --set arm.init=ghaar --set epochs=50
  explainfix train --out runs/ghaar --resume             # continue a killed run (same config)
  torchrun --nproc-per-node 4 -m explainfix train --config run.yaml --out runs/ddp
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLE
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="run config (sections data, model, arm, prune, optim, schedule, runtime, explain); "
                             "default: the config.yaml of --out when resuming, else built-in defaults")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder of the run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=0.02 (repeatable; values are YAML)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last completed epoch")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import sys

    from explainfix.train import TrainingInterrupted, load_config, train

    config_source = args.config
    if config_source is None and args.resume and (Path(args.out) / "config.yaml").is_file():
        config_source = Path(args.out) / "config.yaml"
    config = load_config(config_source, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    try:
        result = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except TrainingInterrupted as err:
        print(f"explainfix train: {err}", file=sys.stderr)
        return 130
    monitor = result["monitor"]
    test = result.get("test") or {}
    summary = {k: test.get(k, {}).get(monitor["metric"].removeprefix("val_")) for k in ("best", "last")}
    print(f"finished {result['epochs']} epochs: best {monitor['metric']} {monitor['best_value']} at epoch "
          f"{monitor['best_epoch']}; test {json.dumps(summary)}; wrote {Path(args.out) / 'result.json'}")
    return 0
