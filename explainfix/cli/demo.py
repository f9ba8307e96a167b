"""``explainfix demo``: the main job on a built-in default.

Default (``--data nuclei-demo``): fixed and learned U-NetDs trained on one real DSB 2018 nucleus
image, ChannelPrune and fine-tune, and ``report.md`` (see :mod:`explainfix.demo`); ``--quick``
is the same pipeline shrunk to seconds of training.

With ``--data synthetic`` (or another saliency source) and ``--model NAME`` the earlier
no-training pipeline runs instead:

1. draws the fixed filter families (DCT-II basis, GHaar, Psine, GuidedSteer);
2. builds a model (default: ResNet50 with a 1-channel stem and 5 outputs, as for CheXpert),
   fixes every spatial convolution at a steered initialization (default GHaar) and
   re-estimates BatchNorm statistics;
3. explains it with ExplainSteer, without and with Eq. 4 saliency;
4. prunes it with ChannelPrune, saves it, loads it back in this process and checks
   that the loaded model gives the same outputs;
5. writes ``SUMMARY.md`` and ``summary.json`` next to the pictures.

Data: synthetic images (``--data synthetic``) unless ``--data`` names a real source
(see ``explainfix explain --help``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

HELP = "run the whole pipeline (fixed filters, ExplainSteer, ChannelPrune, save/load) on a built-in default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--quick", action="store_true", help="nuclei-demo shrunk to a few training steps per arm (tests)")
    parser.add_argument("--model", default=None,
                        help="model for the no-training pipeline (default resnet50; needs --data other than nuclei-demo)")
    parser.add_argument("--init", default="ghaar", help="fixed initialization (default ghaar)")
    parser.add_argument("--ratio", type=float, default=0.9, help="fraction of spatial kernels to zero (default 0.9)")
    parser.add_argument("--data", default="nuclei-demo",
                        help="nuclei-demo (default: train and compare arms on a real image) or a saliency source "
                             "such as synthetic for the no-training pipeline")
    parser.add_argument("--batches", type=int, default=4, help="minibatches for saliency (default 4)")
    parser.add_argument("--batch-size", type=int, default=4, help="minibatch size (default 4)")
    parser.add_argument("--image-size", type=int, default=64, help="synthetic image size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _first_input(loader) -> torch.Tensor:
    from explainfix.batches import split_batch

    return split_batch(next(iter(loader)))[0]


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.ratio < 1:
        raise ValueError(f"--ratio must lie in [0, 1), got {args.ratio}")
    if args.data == "nuclei-demo":
        if args.model not in (None, "unet_d"):
            raise ValueError("--data nuclei-demo trains U-NetD; give --data synthetic for another --model")
        from explainfix.demo import DemoSettings, run_demo

        settings = DemoSettings.quick() if args.quick else DemoSettings()
        settings = DemoSettings(**{**settings.__dict__, "prune_ratio": args.ratio})
        report = run_demo(args.out, seed=args.seed, progress=not args.no_progress, settings=settings)
        best = max(report["arms"], key=lambda r: r["held_out_dice_last"])
        warn = " (WARNING: synthetic fallback, see report)" if report["data"]["warnings"] else ""
        print(f"demo done in {report['wall_seconds']:.0f} s: best held-out Dice {best['held_out_dice_last']:.3f} "
              f"({best['arm']}), Otsu {report['otsu_dice']:.3f}{warn}; report: {Path(args.out) / 'report.md'}")
        return 0
    args.model = args.model or "resnet50"
    return _pipeline(args)


def _pipeline(args: argparse.Namespace) -> int:
    import explainfix as ef
    from explainfix.cli._common import check_out_folder, data_source, parse_data_spec, resolve_model
    from explainfix.explain.pictures import write_pictures
    from explainfix.figures import render_filter_figures
    from explainfix.fileio import atomic_write
    from explainfix.init import get_init

    if not 0 <= args.ratio < 1:
        raise ValueError(f"--ratio must lie in [0, 1), got {args.ratio}")
    if args.batches < 1 or args.batch_size < 1 or args.image_size < 1:
        raise ValueError("--batches, --batch-size and --image-size must be positive")
    out = check_out_folder(args.out)
    parse_data_spec(args.data)  # bad arguments fail before anything is written
    get_init(args.init)
    torch.manual_seed(args.seed)
    model, arch = resolve_model(args.model)  # the filter pictures draw from their own generators
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    print("1/4 fixed filter families")
    files += render_filter_figures(out / "filters", seed=args.seed)

    print(f"2/4 {args.model}: fixed '{args.init}' initialization")
    init = ef.initialize(model, args.init, seed=args.seed)
    loader, target = data_source(args.data, model, batches=args.batches, batch_size=args.batch_size,
                                 image_size=args.image_size, seed=args.seed)
    ef.calibrate_batchnorm(model, loader, max_batches=args.batches)
    model.eval()

    print("3/4 ExplainSteer")
    saliency = dict(target=target, max_batches=args.batches, progress=not args.no_progress)
    uniform = ef.explainsteer(model)
    salient = ef.explainsteer(model, loader, **saliency)
    files += write_pictures(uniform, salient, out / "explain", f"{args.model} ({args.init}, fixed)")

    print(f"4/4 ChannelPrune, ratio {args.ratio}")
    example = _first_input(loader)
    report = ef.channelprune(model, args.ratio, loader=loader, target=target, example_inputs=example,
                             seed=args.seed, progress=not args.no_progress)
    checkpoint = out / "model_pruned.pt"
    ef.save(model, checkpoint, arch=arch, meta={"init": init.method, "prune": report.to_dict()})
    reloaded = ef.load(checkpoint).eval()
    with torch.no_grad():
        same = torch.equal(model(example), reloaded(example))
    if not same:
        raise RuntimeError(f"{checkpoint} does not reproduce the pruned model's outputs")
    files.append(checkpoint)

    summary = {
        "model": args.model, "init": init.method, "seed": init.seed, "data": args.data,
        "spatial_layers": len(init.layers), "spatial_kernels": init.kernels, "fixed_parameters": init.parameters,
        "prune": report.to_dict(), "reloaded_outputs_identical": same,
        "files": [str(p.relative_to(out)) for p in files],
    }
    with atomic_write(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with atomic_write(out / "SUMMARY.md", "w") as f:
        f.write(_markdown(args, init, report, files, out))
    print(report.summary())
    print(f"reloaded {checkpoint}: outputs identical")
    print(f"wrote {len(files)} files and SUMMARY.md to {out}")
    return 0


def _markdown(args, init, report, files, out: Path) -> str:
    lines = [
        f"# ExplainFix demo: {args.model}",
        "",
        f"* fixed initialization **{init.method}** (seed {init.seed}): {len(init.layers)} spatial layers, "
        f"{init.kernels:,} kernels, {init.parameters:,} fixed weights",
        f"* ChannelPrune zeroed {report.kernels_zeroed_fraction:.1%} of the spatial kernels and kept "
        f"{report.params_kept:.1%} of the parameters",
        "",
        "```",
        report.summary(),
        "```",
        "",
        "## Pictures",
    ]
    lines += [f"![{p.stem}]({p.relative_to(out)})" for p in files if p.suffix == ".png"]
    return "\n".join(lines) + "\n"
