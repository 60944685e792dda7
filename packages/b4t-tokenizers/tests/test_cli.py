"""``python -m b4t.tokenizers encode|decode`` and the no-torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from b4t.tokenizers import Tokenizer
from b4t.tokenizers._cli import main


def test_encode_decode_files(tmp_path, uncased_vocab, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Hello, World!\tSecond part\nplain line\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = [
        "encode",
        "--vocab",
        str(uncased_vocab),
        "--pair-sep",
        "\\t",
        "--segments",
        "--offsets",
        "--maxlen",
        "8",
        str(src),
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    tok = Tokenizer(str(uncased_vocab))
    ids, segments, offsets = tok.encode(
        "Hello, World!", "Second part", maxlen=8, return_offsets="span"
    )
    assert records[0] == {
        "ids": ids,
        "segment_ids": segments,
        "offsets": [list(o) for o in offsets],
    }
    assert records[1]["ids"] == tok.encode("plain line")[0]
    assert main(["decode", "--vocab", str(uncased_vocab), str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "hello, world second part",
        "plain line",
    ]  # maxlen cut "!"


def test_cased_flag_and_bad_input(tmp_path, uncased_vocab, chinese_vocab, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Hello\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["encode", "--vocab", str(chinese_vocab), "--cased", str(src), "-o", str(out)]) == 0
    assert (
        json.loads(out.read_text())["ids"]
        == Tokenizer(str(chinese_vocab), do_lower_case=False).encode("Hello")[0]
    )
    assert main(["encode", "--vocab", str(tmp_path / "missing.txt"), str(src)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ids": [1, "x"]}\n', encoding="utf-8")
    try:
        main(["decode", "--vocab", str(uncased_vocab), str(bad)])
    except SystemExit as exc:
        assert "line 1" in str(exc)
    else:
        raise AssertionError("a bad record must stop decode")


def test_module_runs_from_stdin(uncased_vocab):
    done = subprocess.run(
        [sys.executable, "-m", "b4t.tokenizers", "encode", "--vocab", str(uncased_vocab)],
        input="the cat\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["ids"] == Tokenizer(str(uncased_vocab)).encode("the cat")[0]


def test_import_does_not_import_torch_or_numpy():
    code = (
        "import sys; import b4t.tokenizers; "
        "print(sorted(m for m in ('torch', 'numpy', 'sentencepiece') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sentencepiece_model_round_trip(tmp_path, pypi_asset, capsys):
    pytest.importorskip("sentencepiece")
    model = pypi_asset("mistral-sentencepiece")
    src = tmp_path / "in.txt"
    src.write_text("Tokenizers map text to ids.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["encode", "--sp-model", str(model), str(src), "-o", str(out)]) == 0
    assert main(["decode", "--sp-model", str(model), str(out)]) == 0
    assert capsys.readouterr().out == "Tokenizers map text to ids.\n"
