"""From a campaign file to the model, or to every problem with it.

``yamlload`` reads YAML safely and keeps each node's line and column,
``schema`` validates against ``schemas/`` (shipped as package data),
``checker``/``sections``/``stepcheck``/``jinjacheck`` run the checks a schema
cannot express, ``build`` assembles the ``Campaign`` and ``load`` is the entry
point. It may import the model, the audience (template environment, phone
metadata) and the providers (their capabilities and option schemas); never the
journal, the engine or anything above.
"""
