"""The bot's cogs: each owns its slash commands, its buttons and its background tasks.

``imagine`` (/imagine, /cancel, the submit flow, result delivery), ``buttons`` (the job buttons, one DynamicItem
per behaviour), ``settings`` (/settings), ``status`` (/status), ``quota`` (/quota), ``forms`` (the forms and the
message menu), ``show`` (/show), ``prefer`` (/prefer) and ``help`` (/help).
"""
