"""The official `openai` Python client against a running verinfer API (see conftest.py for the environment).

Covers what a dApp developer does with the client: models, chat and completions streaming and not, `n > 1`, `seed`,
`stop`, `max_tokens` / `max_completion_tokens`, `logprobs` / `top_logprobs` (parsed into the client's typed models), the request-id header and the receipt it leads to, and errors, each of
which must surface as the client's typed API error (never a parse or validation error of the client).
"""

import asyncio
import math
import os
import re
import time

import openai
import pytest

REQUEST_ID = re.compile(r"^0x[0-9a-f]{64}$")
FINISH = {"stop", "length"}


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


def verinfer_info(response) -> dict:
    """The `verinfer` object every generation response carries (an extra field to the client's models)."""
    info = (response.model_extra or {}).get("verinfer")
    assert isinstance(info, dict), f"no verinfer object in {response}"
    return info


def check_usage(usage, max_completion: int | None = None) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if max_completion is not None:
        assert 0 < usage.completion_tokens <= max_completion


def context_length(client: openai.OpenAI, model: str) -> int:
    card = client.models.retrieve(model)
    n = (card.model_extra or {}).get("max_model_len")
    assert isinstance(n, int) and n > 0, f"model card without max_model_len: {card}"
    return n


def long_text(client: openai.OpenAI, model: str) -> str:
    """A text of more tokens than the model's context (each word is at least one token)."""
    return " ".join(["overflow"] * (context_length(client, model) + 16))


def assert_api_error(exc: openai.APIStatusError, status: int, code: str | None, param: str | None,
                     type_: str = "invalid_request_error") -> None:
    assert exc.status_code == status, exc
    assert isinstance(exc.body, dict), f"error body not parsed: {exc.body!r}"
    assert exc.code == code, exc.body
    assert exc.param == param, exc.body
    assert exc.type == type_, exc.body
    assert isinstance(exc.body.get("message"), str) and exc.body["message"], exc.body
    assert not isinstance(exc, openai.APIResponseValidationError)


# ---------------------------------------------------------------------------------------------------------------
# models


def test_models_list_and_retrieve(client: openai.OpenAI, model: str) -> None:
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert model in ids
    for card in page.data:
        assert card.object == "model"
        assert isinstance(card.created, int)
        assert card.owned_by
    card = client.models.retrieve(model)
    assert card.id == model
    assert card.object == "model"
    assert context_length(client, model) > 0


def test_retrieve_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.status_code == 404
    assert isinstance(e.value.body, dict)


# ---------------------------------------------------------------------------------------------------------------
# chat


def test_chat(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "You are terse."}, *user("Hello there")],
        max_tokens=8,
        temperature=0,
    )
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == model
    assert isinstance(r.created, int)
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in FINISH
    check_usage(r.usage, 8)
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 8
    info = verinfer_info(r)
    assert REQUEST_ID.match(info["request_id"])
    assert info["receipt_url"].endswith(r.id)


def test_chat_stream_matches_non_stream_and_ends_with_usage(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, messages=user("Tell me a story"), max_completion_tokens=12, temperature=0)
    done = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.id == chunks[0].id and chunk.id.startswith("chatcmpl-")
        assert chunk.model == model
    # The usage chunk is last, with no choices; every other chunk has usage null.
    last = chunks[-1]
    assert last.choices == []
    check_usage(last.usage, 12)
    assert all(c.usage is None for c in chunks[:-1])
    body = [c for c in chunks[:-1] if c.choices]
    assert body[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in body)
    finish = [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason]
    assert finish == [done.choices[0].finish_reason]
    assert text == done.choices[0].message.content
    assert last.usage.completion_tokens == done.usage.completion_tokens
    assert last.usage.prompt_tokens == done.usage.prompt_tokens


def test_chat_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI, model: str) -> None:
    chunks = list(client.chat.completions.create(model=model, messages=user("Hi"), max_tokens=4, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason in FINISH


def test_chat_n2_stream_and_non_stream_agree(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, messages=user("Pick a word"), max_tokens=10, temperature=0.9, seed=11, n=2)
    done = client.chat.completions.create(**args)
    assert [c.index for c in done.choices] == [0, 1]
    assert all(c.finish_reason in FINISH for c in done.choices)
    check_usage(done.usage, 20)
    texts = ["", ""]
    finish = [None, None]
    usage = None
    for chunk in client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            finish[c.index] = c.finish_reason or finish[c.index]
        usage = chunk.usage or usage
    assert texts == [c.message.content for c in done.choices]
    assert finish == [c.finish_reason for c in done.choices]
    assert usage.total_tokens == done.usage.total_tokens


def test_seed_makes_sampling_reproducible(client: openai.OpenAI, model: str) -> None:
    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model=model, messages=user("Say something random"), max_tokens=16, temperature=1.0, top_p=0.95,
            seed=seed,
        )
        return r.choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    # Sampling does depend on the seed: some other seed gives another text.
    assert any(sample(s) != first for s in (1, 2, 3, 4)), "four seeds gave the same sampled text"


def test_max_completion_tokens_caps_the_output(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(model=model, messages=user("Count"), max_completion_tokens=1, temperature=0)
    assert r.usage.completion_tokens == 1 or r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens <= 1


def test_async_client_streams(base_url: str, api_key: str, model: str) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120) as c:
            done = await c.chat.completions.create(model=model, messages=user("Async"), max_tokens=6,
                                                   temperature=0)
            text = ""
            async for chunk in await c.chat.completions.create(model=model, messages=user("Async"), max_tokens=6,
                                                               temperature=0, stream=True):
                text += "".join(ch.delta.content or "" for ch in chunk.choices)
            return text, done.choices[0].message.content

    streamed, done = asyncio.run(run())
    assert streamed == done


# ---------------------------------------------------------------------------------------------------------------
# completions


def test_completion_and_stream(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, prompt="The quick brown fox", max_tokens=10, temperature=0)
    done = client.completions.create(**args)
    assert done.id.startswith("cmpl-")
    assert done.object == "text_completion"
    assert done.model == model
    assert len(done.choices) == 1 and done.choices[0].index == 0
    assert done.choices[0].finish_reason in FINISH
    check_usage(done.usage, 10)
    verinfer_info(done)

    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    check_usage(chunks[-1].usage, 10)
    assert chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    text = "".join(c.choices[0].text for c in chunks[:-1] if c.choices)
    assert text == done.choices[0].text
    assert all(c.id == done.id or c.id.startswith("cmpl-") for c in chunks)


def test_completion_n2(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, prompt="Once upon a time", max_tokens=6, temperature=0.8, seed=5, n=2)
    done = client.completions.create(**args)
    assert [c.index for c in done.choices] == [0, 1]
    texts = ["", ""]
    for chunk in client.completions.create(**args, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == [c.text for c in done.choices]
    again = client.completions.create(**args)
    assert [c.text for c in again.choices] == texts


def test_completion_max_tokens(client: openai.OpenAI, model: str) -> None:
    r = client.completions.create(model=model, prompt="Numbers:", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens <= 3
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 3


def test_stop_string_ends_the_text(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, prompt="A long answer:", max_tokens=24, temperature=0)
    full = client.completions.create(**args).choices[0].text
    assert len(full) >= 4, f"greedy text too short to cut with a stop string: {full!r}"
    stop = full[len(full) // 2: len(full) // 2 + 2]
    expected = full[: full.index(stop)]
    for form in (stop, [stop, "\u2603never\u2603"]):  # a bare string (what the client sends for one) and a list
        r = client.completions.create(**args, stop=form)
        assert r.choices[0].text == expected, (form, full)
        assert r.choices[0].finish_reason == "stop"
        streamed = "".join(c.choices[0].text for c in client.completions.create(**args, stop=form, stream=True)
                           if c.choices)
        assert streamed == expected
    # Chat honours stop too.
    chat_args = dict(model=model, messages=user("A long answer"), max_tokens=24, temperature=0)
    chat_full = client.chat.completions.create(**chat_args).choices[0].message.content
    if len(chat_full) >= 4:
        cut = chat_full[len(chat_full) // 2: len(chat_full) // 2 + 2]
        r = client.chat.completions.create(**chat_args, stop=[cut])
        assert r.choices[0].message.content == chat_full[: chat_full.index(cut)]
        assert r.choices[0].finish_reason == "stop"


# ---------------------------------------------------------------------------------------------------------------
# request ids and receipts


def wait_for_receipt(http, rid: str, done: set, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, receipt = http.get(f"/receipts/{rid}")
        assert status == 200, receipt
        if receipt["status"] in done or time.monotonic() > deadline:
            return receipt
        time.sleep(0.5)


def test_request_id_header_and_receipt(client: openai.OpenAI, http, model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=user("Receipt please"),
                                                           max_tokens=5, temperature=0, n=2)
    assert raw.status_code == 200
    request_id = raw.headers.get("x-verinfer-request-id")
    assert request_id and REQUEST_ID.match(request_id), raw.headers
    completion = raw.parse()
    assert verinfer_info(completion)["request_id"] == request_id

    receipt = wait_for_receipt(http, completion.id, {"executed", "posted", "final"}, 30)
    assert receipt["object"] == "verinfer.receipt"
    assert receipt["id"] == completion.id
    assert receipt["request_id"] == request_id
    assert receipt["model"] == model
    assert receipt["prompt_tokens"] == completion.usage.prompt_tokens
    assert len(receipt["choices"]) == 2
    assert receipt["status"] in {"executed", "posted", "final"}, receipt
    # The same receipt by the 0x request id.
    status, by_request_id = http.get(f"/receipts/{request_id}")
    assert status == 200
    assert by_request_id["id"] == completion.id

    if os.environ.get("VERINFER_EXPECT_FINAL") == "1":
        # A devnet posts the batch within seconds and finalizes it after its short challenge window.
        receipt = wait_for_receipt(http, completion.id, {"final", "invalid"}, 90)
        assert receipt["status"] == "final", receipt
        batch_roots = set()
        for choice in receipt["choices"]:
            assert choice["status"] == "final", choice
            assert isinstance(choice["batch"], int), choice
            assert isinstance(choice["leaf_index"], int), choice
            assert isinstance(choice["merkle_proof"], list), choice
            assert choice["leaf_count"] >= 1 and len(choice["merkle_proof"]) >= 0
            assert choice["l1_tx"] and choice["leaf_hash"] and choice["signature"], choice
            assert choice["trace_root"] and choice["executor"], choice
            batch_roots.add(choice["batch_root"])
        assert None not in batch_roots


def test_stream_carries_the_request_id_header(client: openai.OpenAI, model: str) -> None:
    raw = client.completions.with_raw_response.create(model=model, prompt="Header", max_tokens=3, stream=True)
    request_id = raw.headers.get("x-verinfer-request-id")
    assert request_id and REQUEST_ID.match(request_id), raw.headers
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    chunks = list(raw.parse())
    assert chunks and all(c.id.startswith("cmpl-") for c in chunks)


def test_unknown_receipt_is_an_openai_error(http) -> None:
    status, body = http.get("/receipts/0x" + "00" * 32)
    assert status == 404
    error = body["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "not_found"


# ---------------------------------------------------------------------------------------------------------------
# errors: each one is the client's typed error with the server's code, param and type


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=user("Hi"), max_tokens=4)
    assert_api_error(e.value, 404, "model_not_found", "model")
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-9", prompt="Hi", max_tokens=4)
    assert_api_error(e.value, 404, "model_not_found", "model")
    # A streaming request fails before any chunk, the same way.
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=user("Hi"), max_tokens=4, stream=True)
    assert_api_error(e.value, 404, "model_not_found", "model")


def test_bad_parameter_is_bad_request_with_param(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=user("Hi"), max_tokens=4, temperature=5)
    assert_api_error(e.value, 400, "decimal_above_max_value", "temperature")
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt="Hi", max_tokens=4, top_p=0)
    assert_api_error(e.value, 400, "decimal_below_min_value", "top_p")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=user("Hi"), max_tokens=4, n=0)
    assert_api_error(e.value, 400, "integer_below_min_value", "n")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=user("Hi"), max_tokens=4, stream=True,
                                       temperature=5)
    assert_api_error(e.value, 400, "decimal_above_max_value", "temperature")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=[], max_tokens=4)
    assert_api_error(e.value, 400, "empty_array", "messages")


def test_bad_key_is_authentication_error(base_url: str, model: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="sk-not-a-key", max_retries=0, timeout=30) as c:
        with pytest.raises(openai.AuthenticationError) as e:
            c.models.list()
        assert_api_error(e.value, 401, "invalid_api_key", None)
        with pytest.raises(openai.AuthenticationError) as e:
            c.chat.completions.create(model=model, messages=user("Hi"), max_tokens=4, stream=True)
        assert_api_error(e.value, 401, "invalid_api_key", None)


def test_prompt_over_the_context_is_bad_request(client: openai.OpenAI, model: str) -> None:
    text = long_text(client, model)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=user(text), max_tokens=4)
    assert_api_error(e.value, 400, "context_length_exceeded", "messages")
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=text, max_tokens=4)
    assert_api_error(e.value, 400, "context_length_exceeded", "prompt")
    # A short prompt whose max_tokens does not fit is refused the same way.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model, messages=user("Hi"),
                                       max_tokens=context_length(client, model) + 1)
    assert e.value.code == "context_length_exceeded"


def check_chat_logprobs(choice, k: int, greedy: bool) -> list:
    """The typed `choice.logprobs.content` is well formed; returns it."""
    assert choice.logprobs is not None, "logprobs were asked for"
    content = choice.logprobs.content
    assert content, "one entry per generated token"
    for entry in content:
        assert entry.logprob <= 0.0
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        top = entry.top_logprobs
        assert len(top) == k
        assert all(a.logprob >= b.logprob for a, b in zip(top, top[1:])), "sorted by probability"
        assert sum(math.exp(t.logprob) for t in top) <= 1.0 + 1e-6
        if top:
            assert entry.logprob <= top[0].logprob + 1e-9
            same = [t for t in top if t.bytes == entry.bytes]
            if same:
                assert abs(same[0].logprob - entry.logprob) < 1e-6
        if greedy and top:
            assert top[0].bytes == entry.bytes, "greedy decoding picks the most likely token"
    return content


def test_chat_logprobs_stream_and_non_stream(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, messages=user("Tell me a story"), max_tokens=10, temperature=0,
                logprobs=True, top_logprobs=5)
    done = client.chat.completions.create(**args)
    content = check_chat_logprobs(done.choices[0], 5, greedy=True)
    if done.choices[0].finish_reason == "length":
        assert len(content) == done.usage.completion_tokens
    streamed = []
    for chunk in client.chat.completions.create(**args, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None and c.logprobs.content:
                streamed.extend(c.logprobs.content)
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in content]
    plain = client.chat.completions.create(model=model, messages=user("Hi"), max_tokens=3)
    assert plain.choices[0].logprobs is None


def test_chat_logprobs_n2_sampled(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, messages=user("Pick a word"), max_tokens=8, temperature=1.0, seed=21, n=2,
                logprobs=True, top_logprobs=2)
    done = client.chat.completions.create(**args)
    lists = [check_chat_logprobs(c, 2, greedy=False) for c in done.choices]
    again = client.chat.completions.create(**args)
    assert [[e.model_dump() for e in check_chat_logprobs(c, 2, greedy=False)] for c in again.choices] == \
        [[e.model_dump() for e in l] for l in lists], "seeded runs give the same logprobs"


def test_completion_logprobs(client: openai.OpenAI, model: str) -> None:
    args = dict(model=model, prompt="The quick brown fox", max_tokens=8, temperature=0, logprobs=3)
    done = client.completions.create(**args)
    lp = done.choices[0].logprobs
    assert lp is not None
    n = len(lp.tokens)
    assert n > 0 and len(lp.token_logprobs) == n and len(lp.top_logprobs) == n and len(lp.text_offset) == n
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0.0
        assert token in top, "the generated token is among the top entries"
        assert len(top) <= 4
        assert abs(max(top.values()) - top[token]) < 1e-9, "greedy: the generated token is the most likely"
    streamed = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in client.completions.create(**args, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                for field in streamed:
                    streamed[field].extend(getattr(c.logprobs, field))
    assert streamed == {f: getattr(lp, f) for f in streamed}
