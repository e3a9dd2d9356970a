"""Carrying out a campaign: steps at their times, each message exactly once.

``run`` is the one entry point (``run_campaign``) shared by ``run`` and the
daemon; ``context`` holds what a run carries (options, context, step results);
``scheduler`` turns step timing into APScheduler jobs and windows; ``steps``
holds one module per step kind; a send goes ``plan`` -> ``dispatch`` (with
``ratelimit``, ``retry``, ``tally``, ``progress``). It may import the journal,
the loader's model, the audience and the providers' contract
(``providers.base``), never a concrete provider, the daemon or the commands.
"""
