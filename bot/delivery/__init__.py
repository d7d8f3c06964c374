"""Turning engine events into Discord messages.

``router`` (Delivery) subscribes to the engine and hands each job's events to its ``tracker``, which
decides what the job's message shows and records deliveries; ``sender`` talks to Discord (the
interaction's webhook, else the channel, else a DM); ``address`` is what the bot stores with a job to
deliver it later. Modules import only downwards in that list, and none imports the cogs or the client.
"""
