"""Subcommands of the ``sparoa`` CLI: one module each, with ``register(parser)`` and ``run(args)``."""
