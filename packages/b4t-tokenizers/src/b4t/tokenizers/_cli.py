"""``python -m b4t.tokenizers encode|decode``: JSON-lines preprocessing from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m b4t.tokenizers",
        description="Encode text lines to JSON lines of ids, or decode them back.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("encode", "text lines -> JSON lines {ids[, segment_ids][, offsets]}"),
        ("decode", "JSON lines (a list of ids or {ids: [...]}) -> text lines"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        source = cmd.add_mutually_exclusive_group(required=True)
        source.add_argument("--vocab", help="WordPiece vocab.txt")
        source.add_argument("--sp-model", help="SentencePiece .model file")
        cmd.add_argument("--cased", action="store_true", help="do not lower-case (WordPiece)")
        cmd.add_argument("input", nargs="?", default="-", help="input file (default: stdin)")
        cmd.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    enc = sub.choices["encode"]
    enc.add_argument("--maxlen", type=int, default=None, help="most ids per line")
    enc.add_argument(
        "--pair-sep", default=None, help="split each line into a text pair at this string"
    )
    enc.add_argument("--segments", action="store_true", help="also write segment_ids")
    enc.add_argument("--offsets", action="store_true", help="also write character offsets")
    return parser


def _tokenizer(args: argparse.Namespace):  # -> TokenizerBase
    if args.vocab is not None:
        from b4t.tokenizers._bert import Tokenizer

        return Tokenizer(args.vocab, do_lower_case=not args.cased)
    from b4t.tokenizers._sentencepiece import SpTokenizer

    return SpTokenizer(args.sp_model)


def _open(path: str, mode: str, std: TextIO) -> TextIO:
    return std if path == "-" else open(path, mode, encoding="utf-8")


def _encode(tokenizer, args: argparse.Namespace, src: TextIO, dst: TextIO) -> None:
    sep = args.pair_sep.encode().decode("unicode_escape") if args.pair_sep else None
    for line in src:
        line = line.rstrip("\n").rstrip("\r")
        first, second = line, None
        if sep is not None and sep in line:
            first, _, second = line.partition(sep)
        out = tokenizer.encode(
            first, second, maxlen=args.maxlen, return_offsets="span" if args.offsets else False
        )
        record: dict = {"ids": out[0]}
        if args.segments:
            record["segment_ids"] = out[1]
        if args.offsets:
            record["offsets"] = [list(span) for span in out[2]]
        dst.write(json.dumps(record) + "\n")


def _decode(tokenizer, src: TextIO, dst: TextIO) -> None:
    for number, line in enumerate(src, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"line {number}: not JSON ({exc})") from None
        ids = record.get("ids") if isinstance(record, dict) else record
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise SystemExit(f"line {number}: expected a list of ints or {{'ids': [...]}}")
        dst.write(tokenizer.decode(ids) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        tokenizer = _tokenizer(args)
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    src = _open(args.input, "r", sys.stdin)
    dst = _open(args.output, "w", sys.stdout)
    try:
        if args.command == "encode":
            _encode(tokenizer, args, src, dst)
        else:
            _decode(tokenizer, src, dst)
    except (ValueError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dst is not sys.stdout:
            dst.close()
        if src is not sys.stdin:
            src.close()
    return 0
