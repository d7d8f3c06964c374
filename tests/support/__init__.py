"""Shared test support code (the local Discord API emulator lives in :mod:`discord_emulator`)."""
