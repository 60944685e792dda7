"""b4t.generation beside bert4torch 0.2.5: ``AutoRegressiveDecoder`` (beam search and
random sampling, with and without states) on the same tiny predict function, and
``WebServing``'s seed API (``route``/``wraps``/``arguments``).

The predict function reads a fixed random table of logits, indexed by a hash of the
inputs and the ids generated so far, so both decoders see the same scores for the
same history. Where b4t differs on purpose the test asserts the difference (and
MIGRATION.md lists it).
"""

from __future__ import annotations

import inspect
import io
import json
import urllib.parse
from typing import Any

import bottle
import pytest
import torch

from b4t.generation import AutoRegressiveDecoder, WebServing

V, T = 12, 97  # vocabulary, table rows
NEVER = 99  # an end id the table can never produce
TABLE = torch.randn(T, V, generator=torch.Generator().manual_seed(0)) * 2


def history_key(inputs: list[torch.Tensor], output_ids: torch.Tensor) -> torch.Tensor:
    """(rows,) table row for each row's input and history (position-weighted)."""
    weights = torch.arange(1, output_ids.shape[1] + 1)
    mixed = inputs[0].sum(1) * 3 + (output_ids * weights).sum(1) + output_ids.shape[1] * 11
    return mixed % T


def decoder_class(base: type, rtype: str = "logits", states: str | None = None) -> type:
    """A decoder over TABLE; ``states`` picks how ``predict`` uses its states:

    - ``None``: no states;
    - ``'shared'``: a (1, V) bias computed from the inputs on the first call and
      reused (an encoder-output-like cache, the same for every row);
    - ``'per_row'``: a (rows, 1) running hash of each row's own tokens, so a row's
      scores are right only if its states follow it through reordering.
    """

    class Table(base):  # type: ignore[misc, valid-type]
        calls = 0

        @base.wraps(default_rtype=rtype, use_states=states is not None)
        def predict(self, inputs, output_ids, state):
            type(self).calls += 1
            if states is None:
                logits = TABLE[history_key(inputs, output_ids)]
                return logits if rtype == "logits" else torch.softmax(logits, -1)
            if states == "shared":
                if state is None:
                    state = TABLE[inputs[0][:1].sum(1) % T] * 0.5  # (1, V)
                logits = TABLE[history_key(inputs, output_ids)] + state
                return (logits if rtype == "logits" else torch.softmax(logits, -1)), state
            # per_row: hash(ids) = ((h * 7) + id) % T over the generated ids
            last = output_ids[:, -1:]
            state = last % T if state is None else (state * 7 + last) % T
            return TABLE[state[:, 0]], state

    return Table


def ids(tensors) -> list[list[int]]:
    return [t.tolist() for t in tensors]


def per_row_reference(base: type, topk: int, maxlen: int) -> list[int]:
    """Beam search whose scores recompute the per-row hash from ``output_ids`` (no states)."""

    class Recompute(base):  # type: ignore[misc, valid-type]
        @base.wraps(default_rtype="logits")
        def predict(self, inputs, output_ids, state):
            h = output_ids[:, 0] % T
            for j in range(1, output_ids.shape[1]):
                h = (h * 7 + output_ids[:, j]) % T
            return TABLE[h]

    return Recompute(start_id=0, end_id=NEVER, maxlen=maxlen).beam_search([[1]], topk=topk).tolist()


def encoder_decoder_class(base: type) -> type:
    """The T5-PEGASUS / BART title pattern: ``beam_search([encoder_output])`` with the
    encoder's ``(1, L, H)`` output as a tensor; ``predict`` checks that every row of the
    search sees a 3-d memory whose batch matches ``output_ids`` (as a T5 decoder layer
    unpacking ``(batch, length, hidden)`` does)."""
    proj = TABLE[:8]  # (8, V): hidden 8 -> vocabulary

    class Seq2Seq(base):  # type: ignore[misc, valid-type]
        @base.wraps(default_rtype="logits")
        def predict(self, inputs, output_ids, states):
            (memory,) = inputs
            if memory.dim() != 3 or memory.shape[0] != output_ids.shape[0]:
                raise ValueError(f"memory {tuple(memory.shape)}, ids {tuple(output_ids.shape)}")
            key = history_key([output_ids], output_ids)
            return memory.mean(1) @ proj + TABLE[key]

    return Seq2Seq


def test_tensor_inputs_keep_their_shape_as_in_the_seed(b4t_seed) -> None:
    """0.2.5 adds a batch dim to lists, tuples and arrays only; a tensor goes in as it is."""
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    memory = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(3))
    kwargs = {"start_id": 0, "end_id": 3, "maxlen": 8}
    for topk in (1, 3):
        theirs = encoder_decoder_class(seed_base)(**kwargs).beam_search([memory], topk=topk)
        ours = encoder_decoder_class(AutoRegressiveDecoder)(**kwargs).beam_search([memory], topk)
        assert ours.tolist() == theirs.tolist()
    # the same memory as a nested list gets the batch dim (both), as an array too (b4t)
    theirs = encoder_decoder_class(seed_base)(**kwargs).beam_search([memory[0].tolist()], 2)
    ours = encoder_decoder_class(AutoRegressiveDecoder)(**kwargs)
    assert ours.beam_search([memory[0].tolist()], 2).tolist() == theirs.tolist()
    assert ours.beam_search([memory[0].numpy()], 2).tolist() == theirs.tolist()
    # random_sample: 0.2.5 calls torch.tensor([tensor]), which raises for a (1, L, H) tensor;
    # b4t passes it as beam_search does (MIGRATION.md); its draws equal 0.2.5's on the
    # list form (which 0.2.5 batches)
    with pytest.raises(ValueError, match="only one element tensors"):
        encoder_decoder_class(seed_base)(**kwargs).random_sample([memory], 2)
    torch.manual_seed(11)
    theirs_sampled = encoder_decoder_class(seed_base)(**kwargs).random_sample(
        [memory[0].tolist()], 3
    )
    torch.manual_seed(11)
    ours_sampled = encoder_decoder_class(AutoRegressiveDecoder)(**kwargs).random_sample([memory], 3)
    assert ids(ours_sampled) == ids(theirs_sampled)


# =================================================================== beam search


@pytest.mark.parametrize("rtype", ["logits", "probas"])
@pytest.mark.parametrize("states", [None, "shared"])
@pytest.mark.parametrize(
    ("start_id", "end_id", "topk", "maxlen", "temperature", "min_ends"),
    [
        (None, 3, 1, 8, 1.0, 1),
        (None, 3, 3, 8, 1.0, 1),
        (1, 3, 4, 10, 0.7, 1),
        (None, 5, 3, 12, 1.5, 2),
        (2, NEVER, 2, 6, 1.0, 1),
    ],
)
def test_beam_search_equals_the_seed(
    b4t_seed, rtype, states, start_id, end_id, topk, maxlen, temperature, min_ends
) -> None:
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    kwargs = {"start_id": start_id, "end_id": end_id, "maxlen": maxlen}
    for inputs in ([[1, 2, 3]], [[4, 4], [7, 0]]):
        seed_rtype = rtype
        if rtype == "probas" and temperature != 1:  # 0.2.5 calls torch.power, which is absent
            with pytest.raises(AttributeError, match="power"):
                decoder_class(seed_base, rtype, states)(**kwargs).beam_search(
                    inputs, topk, temperature=temperature
                )
            seed_rtype = "logits"  # probas ** (1/T) renormalised == softmax(logits / T)
        theirs = decoder_class(seed_base, seed_rtype, states)(**kwargs).beam_search(
            inputs, topk, temperature=temperature, min_ends=min_ends
        )
        ours = decoder_class(AutoRegressiveDecoder, rtype, states)(**kwargs).beam_search(
            inputs, topk, temperature=temperature, min_ends=min_ends
        )
        assert ours.tolist() == theirs.tolist()


def test_beam_search_states_follow_the_beams(b4t_seed) -> None:
    """0.2.5 passes states on unchanged while beams are reordered, so per-row states
    (a KV cache) end up scoring another beam's history; b4t reorders them with the rows."""
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    kwargs = {"start_id": 0, "end_id": NEVER, "maxlen": 8}
    for topk in (2, 3, 4):
        truth = per_row_reference(AutoRegressiveDecoder, topk, 8)
        assert truth == per_row_reference(seed_base, topk, 8)  # the reference agrees on both
        ours = decoder_class(AutoRegressiveDecoder, states="per_row")(**kwargs)
        assert ours.beam_search([[1]], topk).tolist() == truth
    theirs = decoder_class(seed_base, states="per_row")(**kwargs).beam_search([[1]], 3).tolist()
    assert theirs != per_row_reference(seed_base, 3, 8)  # 0.2.5 scored misaligned states


def test_min_len_forbids_the_end_token_instead_of_skipping_the_check(b4t_seed) -> None:
    """0.2.5's ``minlen`` only postpones the end check, so an end token chosen early stays
    inside the output and decoding goes on; b4t never picks ``end_id`` before ``minlen``."""
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    first = int(
        TABLE[
            history_key([torch.tensor([[1, 2, 3]])], torch.empty((1, 0), dtype=torch.long))
        ].argmax()
    )
    kwargs = {"start_id": None, "end_id": first, "maxlen": 6, "minlen": 3}
    theirs = decoder_class(seed_base)(**kwargs).beam_search([[1, 2, 3]], 1).tolist()
    ours = decoder_class(AutoRegressiveDecoder)(**kwargs).beam_search([[1, 2, 3]], 1).tolist()
    assert theirs[0] == first  # the greedy first token is the end token, kept by 0.2.5
    assert first not in ours[:2] and ours != theirs
    unconstrained = {**kwargs, "minlen": 1}  # without minlen both stop at once
    assert decoder_class(seed_base)(**unconstrained).beam_search([[1, 2, 3]], 1).tolist() == [first]
    assert decoder_class(AutoRegressiveDecoder)(**unconstrained).beam_search(
        [[1, 2, 3]], 1
    ).tolist() == [first]


# =================================================================== random sampling


@pytest.mark.parametrize("states", [None, "shared"])
@pytest.mark.parametrize(
    ("start_id", "end_id", "n", "maxlen", "temperature", "min_ends"),
    [
        (None, 3, 4, 8, 1.0, 1),
        (1, 3, 6, 10, 0.8, 1),
        (None, 5, 5, 12, 1.3, 2),
        (None, NEVER, 3, 5, 1.0, 1),
    ],
)
def test_random_sample_without_filters_draws_the_same_ids_for_one_seed(
    b4t_seed, states, start_id, end_id, n, maxlen, temperature, min_ends
) -> None:
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    kwargs = {"start_id": start_id, "end_id": end_id, "maxlen": maxlen}
    results = []
    for base in (seed_base, AutoRegressiveDecoder):
        torch.manual_seed(1234)
        decoder = decoder_class(base, "logits", states)(**kwargs)
        results.append(
            ids(decoder.random_sample([[1, 2, 3]], n, temperature=temperature, min_ends=min_ends))
        )
    assert results[0] == results[1]


def filtered_first_token(topk: int | None, topp: float | None) -> torch.Tensor:
    """The first step's sampling distribution written out: softmax, top-k, then top-p."""
    probas = torch.softmax(
        TABLE[history_key([torch.tensor([[1, 2, 3]])], torch.empty((1, 0), dtype=torch.long))][0],
        -1,
    )
    order = probas.argsort(descending=True)
    keep = torch.zeros(V, dtype=torch.bool)
    kept = order[:topk] if topk is not None else order
    if topp is not None:
        mass = probas[kept] / probas[kept].sum()
        count = int((mass.cumsum(0) < topp).sum()) + 1
        kept = kept[:count]
    keep[kept] = True
    out = torch.where(keep, probas, torch.zeros_like(probas))
    return out / out.sum()


@pytest.mark.parametrize(("topk", "topp"), [(4, None), (None, 0.8), (5, 0.7)])
def test_random_sample_with_topk_topp_has_the_seed_distribution_not_its_draws(
    b4t_seed, topk, topp
) -> None:
    """Both sample from the same filtered distribution (checked against the formula over
    4000 first tokens), but 0.2.5 draws from the sorted top-k list row by row, b4t over the
    whole vocabulary with the filtered tokens zeroed, in one batched call: a fixed torch
    seed gives other ids."""
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    expected = filtered_first_token(topk, topp)
    draws = {}
    for base in (seed_base, AutoRegressiveDecoder):
        torch.manual_seed(7)
        decoder = decoder_class(base)(start_id=None, end_id=NEVER, maxlen=1)
        first = torch.tensor(
            [s[0].item() for s in decoder.random_sample([[1, 2, 3]], 4000, topk=topk, topp=topp)]
        )
        freq = torch.bincount(first, minlength=V).float() / len(first)
        assert set(first.unique().tolist()) == set(expected.nonzero().flatten().tolist())
        assert (freq - expected).abs().sum() / 2 < 0.04  # total variation distance
        draws[base] = first[:50].tolist()
    assert draws[seed_base] != draws[AutoRegressiveDecoder]


def test_decoder_signatures_match_the_seed(b4t_seed) -> None:
    seed_base = b4t_seed["snippets"].AutoRegressiveDecoder
    for name in ("__init__", "beam_search", "random_sample", "wraps"):
        theirs = inspect.signature(getattr(seed_base, name)).parameters
        ours = inspect.signature(getattr(AutoRegressiveDecoder, name)).parameters
        positional = [(p.name, p.default) for p in ours.values() if p.kind is not p.KEYWORD_ONLY]
        assert positional == [(p.name, p.default) for p in theirs.values()], name


# =================================================================== WebServing


def call_endpoint(
    endpoint, query: dict[str, Any] | None = None, form: dict[str, Any] | None = None
):
    """Run a bottle callback in-process on a fake request; ``(status, json body)``."""
    body = urllib.parse.urlencode(form or {}).encode()
    environ = {
        "REQUEST_METHOD": "POST" if form is not None else "GET",
        "PATH_INFO": "/f",
        "QUERY_STRING": urllib.parse.urlencode(query or {}),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    bottle.request.bind(environ)
    bottle.response.bind()
    text = endpoint()
    return bottle.response.status_code, json.loads(text)


def echo(text: str, n: int = 1) -> dict[str, Any]:
    return {"text": text * n, "n": n}


def fail(text: str) -> None:
    raise ValueError(f"no {text}")


ARGS = {"text": (None, True), "n": (int, False)}


def test_web_serving_answers_like_the_seed_on_success(b4t_seed) -> None:
    seed_web = b4t_seed["snippets"].WebServing(port=8864)
    ours = WebServing(port=8864)
    for method, query, form in [
        ("GET", {"text": "ab", "n": "3"}, None),
        ("GET", {"text": "\u4f60\u597d"}, None),
        ("POST", None, {"text": "xy", "n": "2"}),
    ]:
        theirs = call_endpoint(seed_web.wraps(echo, ARGS, method), query, form)
        assert call_endpoint(ours.wraps(echo, ARGS, method), query, form) == theirs
        assert theirs[0] == 200 and theirs[1]["code"] == 0


def test_web_serving_errors_are_http_statuses_with_the_seed_body(b4t_seed) -> None:
    """0.2.5 answers a missing argument or a raising function with HTTP 200 (``code`` 1 / 2
    in the body) and an ill-typed argument with bottle's HTML 500; b4t keeps the body and
    its ``code`` but answers 400 / 500 (a 500's ``desc`` keeps the exception's text in the
    server's log, not in the answer), and an ill-typed argument is a JSON 400."""
    seed_web = b4t_seed["snippets"].WebServing()
    ours = WebServing()
    status, body = call_endpoint(seed_web.wraps(echo, ARGS), {"n": "2"})
    assert (status, body) == (200, {"code": 1, "desc": 'lack of "text" argument', "data": {}})
    assert call_endpoint(ours.wraps(echo, ARGS), {"n": "2"}) == (400, body)

    status, body = call_endpoint(seed_web.wraps(fail, {"text": (None, True)}), {"text": "x"})
    assert (status, body) == (200, {"code": 2, "desc": "no x", "data": {}})
    status, body = call_endpoint(ours.wraps(fail, {"text": (None, True)}), {"text": "x"})
    assert (status, body["code"], body["data"]) == (500, 2, {})
    assert "internal server error" in body["desc"] and "no x" not in body["desc"]

    with pytest.raises(ValueError):  # the seed's converter error escapes to bottle (HTML 500)
        call_endpoint(seed_web.wraps(echo, ARGS), {"text": "a", "n": "two"})
    status, body = call_endpoint(ours.wraps(echo, ARGS), {"text": "a", "n": "two"})
    assert status == 400 and body["code"] == 1 and '"n"' in body["desc"]


def test_web_serving_binds_localhost_by_default(b4t_seed) -> None:
    """0.2.5 binds every interface with paste; b4t binds 127.0.0.1 with waitress unless
    told otherwise (``host='0.0.0.0'``, ``server='paste'``)."""
    seed_web = b4t_seed["snippets"].WebServing()
    assert (seed_web.host, seed_web.port, seed_web.server) == ("0.0.0.0", 8000, "paste")
    ours = WebServing()
    assert (ours.host, ours.port, ours.server) == ("127.0.0.1", 8000, "auto")
    theirs = inspect.signature(b4t_seed["snippets"].WebServing.route).parameters
    assert list(inspect.signature(WebServing.route).parameters)[: len(theirs)] == list(theirs)
    theirs = inspect.signature(b4t_seed["snippets"].WebServing.wraps).parameters
    assert list(inspect.signature(WebServing.wraps).parameters)[: len(theirs)] == list(theirs)
