"""The audience and the message: who gets what text, and what it costs.

``sources`` streams CSV/JSONL rows, ``phones`` normalises numbers to E.164,
``recipient``/``recipients`` screen rows (invalid, opted out, duplicate,
``where``; ``numberset`` holds the numbers they look up, in bounded memory),
``templates`` renders Jinja in a sandbox, ``encoding`` counts GSM-7 and UCS-2
segments, and ``render``/``preview`` are the rendering pass that ``preview`` and
the engine share; ``failures`` groups the texts that cannot be rendered by
problem and variant. It may import only the model; never the providers, the
journal or the engine.
"""
