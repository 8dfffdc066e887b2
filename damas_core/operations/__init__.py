"""Every tracker operation, written once over the storage contract.

One module per operation family, named after it: ``create``/``read``/``update``/
``upsert``/``delete`` in :mod:`.crud`, :mod:`.graph`, :mod:`.search`, :mod:`.publish`,
``lock``/``unlock`` in :mod:`.lock`, :mod:`.comment`, :mod:`.version`, and the
account helpers in :mod:`.users`. Each function takes the acting
:class:`~damas_core.tracker.Session` first.
"""
