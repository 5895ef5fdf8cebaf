"""`geosleuth history export`: a chat's answers as a case file, read from the bots' store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import get_args

from bot.chat.places import place_name
from bot.chat.store import Platform, RecordedAnswer, Store, StoreError
from bot.config import AppConfig
from bot.render.export import FORMATS, read_case, render


def add_history_parser(commands: argparse._SubParsersAction) -> None:
    history = commands.add_parser("history", help="what the chat bots have answered")
    actions = history.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="a chat's answers as GeoJSON, KML or CSV",
        description="Write every answer a chat has had as a case file for map tools: each"
                    " located photo or album with its position, uncertainty circle,"
                    " confidence, votes, time, who asked and the matched references with their"
                    " credits. GeoJSON and KML hold the located answers; CSV every answer."
                    " Reads the bots' database ([store] path); never creates one.")
    export.add_argument("--chat", required=True, metavar="ID",
                        help="a Telegram chat id, a Discord channel id, or dm:USER_ID for a"
                             " Discord user's DM history")
    export.add_argument("--platform", choices=get_args(Platform),
                        help="the chat's platform; needed only when both have a chat with this"
                             " id (default: the one that has answers)")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the file here (default: standard output)")
    export.set_defaults(handler=run_history_export)


def run_history_export(args: argparse.Namespace, config: AppConfig) -> int:
    path = config.store.path
    if not path.is_file():
        raise StoreError(f"there is no bot database at {path}: set [store] path to the one the"
                         " bots use")
    platform, records = asyncio.run(_records(path, args.chat, args.platform))
    where = f"{platform} chat {args.chat}" if platform else f"chat {args.chat}"
    case = read_case(f"GeoSleuth: {where}", records, place_name)
    data = render(case, args.format)
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        args.output.write_bytes(data)
    if not case.answers:
        print(f"geosleuth: {where} has no answers", file=sys.stderr)
    if case.skipped:
        print(f"geosleuth: {case.skipped} kept answers could not be read and are left out",
              file=sys.stderr)
    return 0


async def _records(path: Path, chat_id: str,
                   platform: Platform | None) -> tuple[Platform | None, list[RecordedAnswer]]:
    """The chat's answers, on `platform` or on the one platform that has that chat (None:
    neither has)."""
    async with await Store.open(path) as store:
        if platform is not None:
            return platform, await store.answers_for_export(platform, chat_id)
        found = {p: await store.answers_for_export(p, chat_id) for p in get_args(Platform)}
    having = [p for p, records in found.items() if records]
    if len(having) > 1:
        raise StoreError(f"chat {chat_id} has answers on {' and '.join(having)}: choose one"
                         " with --platform")
    return (having[0], found[having[0]]) if having else (None, [])
