"""Per-role NATS users for one deployment: ``python -m engine.remote.auth_config --worker gpu0 --worker gpu1``.

Writes, into --out (default ./data/nats-auth, readable by its owner only):
- ``nats-server.conf``: the users and what each may do (``scripts/nats-server.sh`` loads it when present);
- ``bot.env``: NATS_USER/NATS_PASSWORD/NATS_PREFIX for the bot host's .env;
- ``worker-NAME.env``: the same plus WORKER_NAME for each GPU worker's .env.

The bot user may do anything (it declares and owns the streams). A worker user may only: pull from its model's
consumer and ack what it took, read the Object Store (sources) and write its images, publish results, progress
and taken notices, put its own heartbeat key, hear cancels, and receive replies on its own inbox
(``_INBOX.<name>``). It cannot declare, change or delete a stream or consumer, read the jobs stream or other
workers' replies (so it sees no prompt it did not take), publish a cancel, or write another worker's heartbeat.
Passwords never appear on a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from pathlib import Path

from engine.remote import wire

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def worker_permissions(names: wire.Names, worker: str) -> dict[str, dict[str, list[str]]]:
    """What the worker user ``worker`` may publish and subscribe to."""
    jobs, images, beats = names.jobs_stream, f"OBJ_{names.images_bucket}", f"KV_{names.workers_bucket}"
    publish = [
        "$JS.API.INFO",
        f"$JS.API.CONSUMER.INFO.{jobs}.*", f"$JS.API.CONSUMER.MSG.NEXT.{jobs}.*", f"$JS.ACK.{jobs}.>",
        f"{names.results_subject}.>", f"{names.prefix}.progress.*", f"{names.prefix}.taken.*",
        f"$JS.API.STREAM.INFO.{beats}", f"$KV.{names.workers_bucket}.{worker}",
        "$JS.API.STREAM.NAMES",  # the Object Store's reader looks its stream up by subject (names only)
        f"$JS.API.STREAM.INFO.{images}", f"$JS.API.STREAM.MSG.GET.{images}", f"$JS.API.DIRECT.GET.{images}.>",
        f"$JS.API.CONSUMER.CREATE.{images}", f"$JS.API.CONSUMER.CREATE.{images}.>",
        f"$JS.API.CONSUMER.DELETE.{images}.>", f"$JS.API.STREAM.PURGE.{images}",
        f"$O.{names.images_bucket}.C.>", f"$O.{names.images_bucket}.M.>", f"$JS.FC.{images}.>",
    ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [f"_INBOX.{worker}.>", names.cancel_subject]}}


def server_config(names: wire.Names, passwords: dict[str, str], bot: str = "bot") -> str:
    """The ``authorization`` block of nats-server.conf for the bot user and each worker user in ``passwords``."""
    users = []
    for user, password in passwords.items():
        entry: dict[str, object] = {"user": user, "password": password}
        if user != bot:
            entry["permissions"] = worker_permissions(names, user)
        users.append(entry)
    # nats-server's configuration format accepts JSON values
    return ("# Written by python -m engine.remote.auth_config; keep it private (it holds the passwords).\n"
            f"authorization {{\n  users = {json.dumps(users, indent=2)}\n}}\n")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write(out: Path, workers: list[str], prefix: str = "imagine") -> dict[str, Path]:
    """Write the server configuration and one env file per user into ``out``; returns the paths by user."""
    bad = [w for w in workers if not NAME_RE.match(w) or w == "bot"]
    if bad or not workers or len(set(workers)) != len(workers):
        raise ValueError(f"worker names must be distinct, not 'bot', and letters, digits, _ or - only: {workers}")
    names = wire.Names(prefix)
    passwords = {user: secrets.token_urlsafe(24) for user in ["bot", *workers]}
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    _write_private(out / "nats-server.conf", server_config(names, passwords))
    paths = {}
    for user, password in passwords.items():
        lines = [f"NATS_USER={user}", f"NATS_PASSWORD={password}", f"NATS_PREFIX={prefix}"]
        if user != "bot":
            lines.append(f"WORKER_NAME={user}")
        paths[user] = out / ("bot.env" if user == "bot" else f"worker-{user}.env")
        _write_private(paths[user], "\n".join(lines) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point: write the files and say where they went (never the passwords)."""
    parser = argparse.ArgumentParser(description="Per-role NATS users for the bot host and its GPU workers.")
    parser.add_argument("--worker", action="append", default=[], help="a GPU worker's name (repeat for each)")
    parser.add_argument("--prefix", default=os.environ.get("NATS_PREFIX", "imagine"), help="NATS_PREFIX")
    parser.add_argument("--out", type=Path, default=Path("data/nats-auth"))
    args = parser.parse_args(argv)
    try:
        paths = write(args.out, args.worker, args.prefix)
    except ValueError as exc:
        print(f"error: {exc}; e.g. --worker gpu0 --worker gpu1", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'nats-server.conf'} (scripts/nats-server.sh loads it)")
    for user, path in paths.items():
        where = "the bot host's .env" if user == "bot" else f"the .env of worker {user}"
        print(f"wrote {path}: append it to {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
