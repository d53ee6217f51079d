"""``sparoa predictor generate|train|evaluate``: the threshold predictor's data, training and regret.

    sparoa predictor generate [--out predictors/data/thresholds.parquet] [--models M1,M2] [--heldout ...]
                              [--per-model 10] [--heldout-per-model 6] [--seed 0] [--force]
    sparoa predictor train [--arch transformer_lstm|pooled_mlp|both] [--data ...] [--epochs 60] [--out STEM]
                           [--val-models B1,B2] [--threads 1] [--force]
    sparoa predictor evaluate [--models M1,M2,...] [--json] [--checkpoint STEM] [--fresh]

``train`` refuses to replace an existing checkpoint (the shipped ones included) unless ``--force``.

Heavy imports (pandas, torch) happen inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="predictor_command", metavar="ACTION")
    sub.required = True

    g = sub.add_parser("generate", help="search the best thresholds in the simulator for many cases (Parquet)")
    g.add_argument("--out", default=None, help="Parquet file (default predictors/data/thresholds.parquet)")
    g.add_argument("--models", type=_csv, default=None,
                   help="comma-separated specs (default: the zoo models x variants of predictors.dataset)")
    g.add_argument("--heldout", type=_csv, default=None,
                   help="base models kept out of training (default mobilenet_v2,resnet50,vit_small)")
    g.add_argument("--per-model", type=int, default=10, help="hardware-state cases per training spec")
    g.add_argument("--heldout-per-model", type=int, default=6, help="cases per held-out spec")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--sim-seeds", type=int, default=2, help="simulator seeds per case (common to all candidates)")
    g.add_argument("--max-cases", type=int, default=None, help="stop after this many new cases (resume later)")
    g.add_argument("--force", action="store_true", help="start the file afresh instead of appending")

    t = sub.add_parser("train", help="train the Transformer-LSTM predictor and/or the pooled-MLP comparator")
    t.add_argument("--arch", choices=("transformer_lstm", "pooled_mlp", "both"), default="both")
    t.add_argument("--data", default=None, help="Parquet dataset (default predictors/data/thresholds.parquet)")
    t.add_argument("--out", default=None, help="checkpoint path stem (only with one --arch; default: the shipped one)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest at this model size)")
    t.add_argument("--val-models", type=_csv, default=(), help="training base models kept out for validation")
    t.add_argument("--force", action="store_true",
                   help="overwrite existing checkpoint files (needed to regenerate the shipped ones)")

    e = sub.add_parser("evaluate", help="per-model regret of predicted vs searched thresholds in the simulator")
    e.add_argument("--models", type=_csv, default=None,
                   help="specs: zoo names / variants, OpGraph JSON paths or file.py:function "
                        "(default: the checkpoint's held-out models with every variant)")
    e.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    e.add_argument("--checkpoint", default=None, help="predictor checkpoint stem (default: the shipped one)")
    e.add_argument("--mlp-checkpoint", default=None, help="comparator checkpoint stem (default: the shipped one)")
    e.add_argument("--data", default=None, help="dataset whose searched cases are reused (default: the shipped one)")
    e.add_argument("--fresh", action="store_true", help="search every case again instead of reusing the dataset")
    e.add_argument("--per-model", type=int, default=6, help="cases per model that the dataset does not hold")
    e.add_argument("--seed", type=int, default=0)


def _positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{option} must be a positive integer, got {value}")


def run(args: argparse.Namespace) -> int:
    cmd = args.predictor_command
    if cmd == "generate":
        from predictors.dataset import DEFAULT_DATASET, DEFAULT_HELDOUT, generate

        generate(args.out or DEFAULT_DATASET, models=args.models, heldout=tuple(args.heldout or DEFAULT_HELDOUT),
                 per_model=args.per_model, heldout_per_model=args.heldout_per_model, seed=args.seed,
                 n_seeds=args.sim_seeds, force=args.force, max_cases=args.max_cases)
        return 0
    if cmd == "train":
        from predictors.dataset import DEFAULT_DATASET
        from predictors.train import TrainConfig, check_outputs, checkpoint_stem, train

        archs = ("transformer_lstm", "pooled_mlp") if args.arch == "both" else (args.arch,)
        if args.out and len(archs) > 1:
            raise ValueError("--out needs a single --arch")
        _positive("--epochs", args.epochs)
        _positive("--threads", args.threads)
        if args.out is not None and not args.out.strip():
            raise ValueError("--out is empty")
        cfgs = []
        for arch in archs:
            kw = dict(arch=arch, data=str(args.data or DEFAULT_DATASET), out=args.out or "", seed=args.seed,
                      threads=args.threads, val_models=tuple(args.val_models))
            if args.epochs is not None:
                kw["epochs"] = args.epochs
            cfgs.append(TrainConfig(**kw))
        for cfg in cfgs:  # every output is checked before any training starts
            check_outputs(checkpoint_stem(cfg), args.force)
        for cfg in cfgs:
            arch = cfg.arch
            parts = ["sparoa", "predictor", "train", "--arch", arch, "--epochs", str(cfg.epochs), "--seed", str(cfg.seed),
                     "--threads", str(cfg.threads)]
            if args.data:
                parts += ["--data", args.data]
            if args.out:
                parts += ["--out", args.out]
            if cfg.val_models:
                parts += ["--val-models", ",".join(cfg.val_models)]
            if args.force:
                parts += ["--force"]
            train(cfg, command=" ".join(shlex.quote(p) for p in parts), force=args.force)
        return 0
    if cmd == "evaluate":
        from pathlib import Path

        from predictors.dataset import DEFAULT_DATASET
        from predictors.evaluate import evaluate, format_table

        _positive("--per-model", args.per_model)
        if args.data is not None and not Path(args.data).exists():
            raise FileNotFoundError(f"--data {args.data}: predictor dataset not found")
        doc = evaluate(args.models, checkpoint=args.checkpoint, mlp_checkpoint=args.mlp_checkpoint,
                       data=args.data or DEFAULT_DATASET, per_model=args.per_model, seed=args.seed, fresh=args.fresh,
                       log=None if args.json else (lambda s: print(s, file=sys.stderr)))
        print(json.dumps(doc, indent=1) if args.json else format_table(doc))
        return 0
    raise ValueError(f"unknown predictor action {cmd!r}")
