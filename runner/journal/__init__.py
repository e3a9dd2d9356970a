"""The record: who got what, when, and what happened.

``store`` opens and migrates the database (``tables``, ``migrations``),
``runs``/``messages``/``queries`` write and read it, combined in
``journal.Journal``; ``writer`` is the single thread that batches the hot
writes; ``eventlog`` is the JSON Lines log and the listeners that show it;
``lock`` and ``schedule`` serve the daemon and ``status``. It may import the
model and the audience; never the providers, the engine or anything above.
"""
