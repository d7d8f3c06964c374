"""The Discord front door: discord.py on top of the engine.

Imports go one way: ``client`` → ``cogs`` → ``delivery`` → ``components`` / ``render``
(``replies``, ``inline``, ``installs`` and ``settings`` are leaves beside them). Nothing here imports the admin
panel; the service that runs both is the ``imagine`` package.
"""
