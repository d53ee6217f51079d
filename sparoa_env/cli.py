"""The ``sparoa`` command. Each subcommand lives in ``sparoa_env/commands/<name>.py`` with two functions,
``register(subparsers)`` (adds its argparse parser) and ``run(args) -> int``; modules are imported only
when their command runs, so ``sparoa graph`` never pays for tianshou and ``sparoa --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from sparoa_env.commands import seed_int

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "graph": ("sparoa_env.commands.graph", "extract a model's operator graph (rho, I, FLOPs, bytes); table, JSON or rho-I plot"),
    "graphs": ("sparoa_env.commands.graphs", "regenerate or check the shipped OpGraph JSON files"),
    "profiles": ("sparoa_env.commands.profiles", "list the shipped SoC profiles and their provenance"),
    "run": ("sparoa_env.commands.run", "run a model under a placement plan on this machine (HybridEngine) and print measured figures"),
    "profile": ("sparoa_env.commands.profile", "time a model's ops and passes on this machine and write a trace (Parquet)"),
    "calibrate": ("sparoa_env.commands.calibrate", "fit a SoC profile to traces and print the fit's error"),
    "fidelity": ("sparoa_env.commands.fidelity", "run models for real under K plans and compare with the simulator"),
    "loom": ("sparoa_env.commands.loom", "SparseLoom: build the zoo, estimator, optimizer, preloader, evaluate vs baselines"),
    "demo": ("sparoa_env.commands.demo", "the main job on built-in defaults (what `make demo` runs)"),
    "train": ("sparoa_env.commands.train", "train a SAC placement policy (Tianshou) on a SparOA environment"),
    "evaluate": ("sparoa_env.commands.evaluate", "run a policy and the baselines on the same seeds; table or JSON"),
    "plan": ("sparoa_env.commands.plan", "write the placement a trained policy makes (Plan JSON)"),
    "scenarios": ("sparoa_env.commands.scenarios", "the scenario suite: power modes x background load x switches"),
    "sim2real": ("sparoa_env.commands.sim2real", "train in the sim, measure the policy on hardware, fine-tune there; sim vs measured"),
    "predictor": ("sparoa_env.commands.predictor", "threshold predictor: generate data in the sim, train, evaluate regret"),
    "deploy": ("sparoa_env.commands.deploy", "serve a model while the policy re-plans from live telemetry (HybridEngine)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparoa", description="sparoa-env: operator placement and sparse-variant "
                                     "selection for DNN inference on edge SoCs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _register(module, p)
    return parser


def _register(module: str, parser: argparse.ArgumentParser) -> None:
    # Argument definitions are cheap to import: each command module keeps its heavy imports inside run().
    importlib.import_module(module).register(parser)
    _seeds_are_non_negative(parser)


def _seeds_are_non_negative(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # argparse keeps no public list; this attribute is stable since 2.7
        if action.dest == "seed" and action.type is int:
            action.type = seed_int
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _seeds_are_non_negative(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:  # bad input: one clear line, no traceback
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"sparoa {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
