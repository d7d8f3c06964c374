"""The service as operators run it: wires the engine, the Discord bot and the admin panel together.

``bot`` and ``admin_ui`` do not know each other; this package is the only place that imports both.
"""
