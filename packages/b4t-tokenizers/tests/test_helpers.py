"""The bert4torch text helpers: segmentation, truncation, padding, augmentation, parallel map."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from b4t.tokenizers import (
    convert_to_unicode,
    lowercase_and_normalize,
    merge_segmentate,
    parallel_apply,
    parallel_apply_generator,
    sequence_padding,
    text_augmentation,
    text_segmentate,
    truncate_sequences,
    whitespace_tokenize,
)


def test_small_text_helpers():
    assert convert_to_unicode("x") == "x"
    assert convert_to_unicode("中".encode()) == "中"
    with pytest.raises(TypeError, match="int"):
        convert_to_unicode(3)
    assert whitespace_tokenize("  a \t b\n") == ["a", "b"]
    assert lowercase_and_normalize("Ça VA Émile") == "ca va emile"
    assert lowercase_and_normalize("KEEP Ça", never_split=["KEEP"]) == "KEEP ca"


def test_text_segmentate_respects_maxlen_and_keeps_text():
    text = "第一句。第二句比较长一些，有逗号。第三句！" * 3
    pieces = text_segmentate(text, 12, seps="。！，")
    assert all(len(p) <= 12 for p in pieces)
    assert "".join(pieces) == text
    assert text_segmentate("short", 10) == ["short"]
    cut = text_segmentate("abcdefghij", 4, seps="")
    assert cut == ["abcd", "efgh", "ij"]
    assert text_segmentate("abcdefghij", 4, seps="", truncate=False) == ["abcdefghij"]


def test_merge_segmentate():
    assert merge_segmentate(["ab", "cd", "efg", "h"], 5) == ["abcd", "efgh"]
    assert merge_segmentate(["ab", "cd"], 5, sep=" ") == ["ab cd"]
    assert merge_segmentate(["abcdef", "g"], 3) == ["abcdef", "g"]


def test_truncate_sequences_cuts_longest_first_in_place():
    a, b = list(range(6)), list(range(10, 13))
    out = truncate_sequences(6, -1, a, b)
    assert (a, b) == ([0, 1, 2], [10, 11, 12])
    assert out == [a, b]
    a, b = list(range(4)), list(range(10, 14))
    truncate_sequences(5, [0, -1], a, b)  # tie: the first is cut first
    assert (a, b) == ([2, 3], [10, 11, 12])
    c = [1, 2, 3]
    assert truncate_sequences(2, 0, c, None, []) == [[2, 3]]


def test_sequence_padding_lists_and_arrays():
    out = sequence_padding([[1, 2, 3], [4]])
    assert out.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert sequence_padding([[1, 2, 3], [4]], length=2, value=-1).tolist() == [[1, 2], [4, -1]]
    assert sequence_padding([[1, 2], [4]], mode="pre").tolist() == [[1, 2], [0, 4]]
    grid = sequence_padding([np.ones((2, 3)), np.ones((1, 1))], seq_dims=2)
    assert grid.shape == (2, 2, 3)
    assert grid[1].tolist() == [[1, 0, 0], [0, 0, 0]]
    feats = sequence_padding([np.ones((2, 4)), np.ones((3, 4))])
    assert feats.shape == (2, 3, 4) and feats[0, 2].sum() == 0
    with pytest.raises(ValueError, match="mode"):
        sequence_padding([[1]], mode="middle")
    with pytest.raises(ValueError, match="differ beyond"):
        sequence_padding([np.ones((2, 4)), np.ones((3, 5))])


def test_sequence_padding_torch_tensors():
    torch = pytest.importorskip("torch")
    out = sequence_padding([torch.tensor([1, 2, 3]), torch.tensor([4])], value=9, mode="pre")
    assert isinstance(out, torch.Tensor)
    assert out.tolist() == [[1, 2, 3], [9, 9, 4]]


def test_text_augmentation_strategies():
    text = "abcdefghij"
    deleted = text_augmentation(text, noise_len=3, strategy="delete", allow_dup=False, seed=0)
    assert len(deleted) == 7 and set(deleted) <= set(text)
    inserted = text_augmentation(
        text, ["X"], noise_len=2, strategy="insert", allow_dup=False, seed=1
    )
    assert len(inserted) == 12 and inserted.replace("X", "") == text
    replaced = text_augmentation(
        [text, text], ["#"], noise_p=0.3, strategy="replace", allow_dup=False, seed=2
    )
    assert [t.count("#") for t in replaced] == [3, 3]
    kept = text_augmentation(
        "keepxx", noise_len=6, strategy="delete", skip_words="keep", allow_dup=False, seed=3
    )
    assert kept == "keep"
    same = [text_augmentation(text, ["Y"], noise_len=2, seed=5) for _ in range(2)]
    assert same[0] == same[1]
    again = [text_augmentation(text, ["Y"], noise_len=2, seed=random.Random(5)) for _ in range(2)]
    assert again[0] == again[1] and again[0] != text
    with pytest.raises(ValueError, match="noise_dict"):
        text_augmentation(text, noise_len=1, strategy="insert")


def _square(x: int) -> int:
    return x * x


def _draw(_: int) -> float:
    return random.random()


@pytest.mark.parametrize("dummy", [True, False])
def test_parallel_apply_ordered_and_bounded(dummy):
    out = parallel_apply(
        _square, range(40), workers=2, max_queue_size=4, dummy=dummy, unordered=False
    )
    assert out == [i * i for i in range(40)]
    pairs = list(parallel_apply_generator(lambda x: -x, iter(range(30)), 2, 3, dummy=dummy))
    assert sorted(pairs) == [(i, -i) for i in range(30)]


def test_parallel_apply_callback_and_errors():
    seen: list[int] = []
    lock = threading.Lock()

    def keep(value: int) -> None:
        with lock:
            seen.append(value)

    assert parallel_apply(_square, range(10), 2, 2, callback=keep, dummy=True) is None
    assert sorted(seen) == sorted(i * i for i in range(10))
    with pytest.raises(ZeroDivisionError):
        parallel_apply(lambda x: 1 / x, [1, 0, 2], 2, 2, dummy=True)


def test_parallel_apply_seeded_workers():
    # One worker per fixed seed: the draws equal that seed's stream.
    out = parallel_apply(
        _draw, range(3), workers=1, max_queue_size=1, random_seeds=[7], unordered=False
    )
    expected = random.Random(7)
    assert out == [expected.random() for _ in range(3)]
    fresh = parallel_apply(_draw, range(4), workers=2, max_queue_size=2, unordered=False)
    assert len(set(fresh)) == 4  # reseeded from entropy: forked workers do not repeat


def test_bert4torch_snippets():
    from b4t.tokenizers import DottableDict, delete_arguments, get_kw, insert_arguments, is_string

    assert is_string("x") and not is_string(b"x") and not is_string(None)

    class Base:
        def __init__(self, a, b=1, **kwargs):
            self.a, self.b, self.rest = a, b, kwargs

    class Added(Base):
        @insert_arguments(scale=2)
        def __init__(self, a, **kwargs):
            super().__init__(a, **kwargs)

    class Removed(Base):
        @delete_arguments("b")
        def __init__(self, a, **kwargs):
            super().__init__(a, **kwargs)

    added = Added(1, scale=5, c=3)
    assert (added.scale, added.rest) == (5, {"c": 3})  # taken out of the keywords
    assert Added(1).scale == 2
    with pytest.raises(TypeError, match="Removed got an unexpected keyword argument 'b'"):
        Removed(1, b=2)
    assert get_kw(Base, {"a": 1, "b": 2, "c": 3, "self": 4}) == {"c": 3}

    d = DottableDict({"x": 1}, y=2)
    assert (d.x, d["y"]) == (1, 2)
    d.z = 3
    assert d["z"] == 3 and dict(d) == {"x": 1, "y": 2, "z": 3}
    d.allowDotting(False)
    with pytest.raises(AttributeError):
        _ = d.x
    d.allowDotting()
    assert d.x == 1


def test_helpers_edge_cases_as_bert4torch():
    assert text_segmentate("", 5) == [""]
    assert text_segmentate("  ", 5) == [""]
    # no noise asked for: unchanged, no noise_dict needed
    assert text_augmentation("abc", strategy="insert") == "abc"
    assert text_augmentation(["abc"], noise_len=0) == ["abc"]
    # never_split strings are kept inside words too, everything else lower-cased per char
    assert lowercase_and_normalize("aKEEPbÉ", never_split=["KEEP"]) == "aKEEPbe"
    assert lowercase_and_normalize("ΟΔΟΣ") == "οδοσ"
