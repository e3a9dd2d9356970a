"""The campaign as typed, immutable values: what a campaign file means.

``campaign`` holds the dataclasses every later layer reads (nothing after the
loader sees a YAML dict), ``timeparse`` the durations, rates and datetimes they
are written in, ``secrets`` the ``${VAR}`` references and the redactor that
keeps resolved values out of every output. The bottom layer: it imports nothing
of the runner but ``runner.errors``.
"""
