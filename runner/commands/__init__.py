"""The commands: one module per CLI command, each thin.

A command module has ``add_arguments(parser)`` and ``main(args) -> int`` (its
docstring is the command's help): it parses, builds the pieces, calls into the
layers below and prints the result. Output meant for people is written here and
only here (``console`` renders a run's events). Commands may import every layer;
only ``commands.sandbox`` imports ``runner.sandbox``.
"""
