"""Chat formats: ChatML (SmolLM2's GGUF chat_template) and OpenAI harmony (gpt-oss).

A message is a dict: {"role": str, "content": str} plus, for harmony, optional "name" (a tool's
name; for other roles rendered as role:name), "recipient", "channel" and "content_type".
Rules and sources: spec/chat-formats.md.
"""

import re

from ..errors import ArgumentError, TokenizerError

__all__ = ["SMOLLM2_DEFAULT_SYSTEM", "render_chatml", "render_harmony", "parse_harmony",
           "harmony_system_content", "HARMONY_ROLES", "HARMONY_STOP_TOKENS"]

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

HARMONY_ROLES = ("system", "developer", "user", "assistant", "tool")
HARMONY_STOP_TOKENS = ("<|return|>", "<|call|>")  # a completion ends at either
_START, _END, _MESSAGE, _CHANNEL, _CONSTRAIN, _RETURN, _CALL = (
    "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>")
_MARKERS = (_START, _END, _MESSAGE, _CHANNEL, _CONSTRAIN, _RETURN, _CALL)
_MARKER_RE = re.compile("|".join(re.escape(m) for m in _MARKERS))
_ASCII_WS = re.compile(r"[ \t\n\f\r]+")


def _check_messages(messages, *, fields=("role", "content"), optional=()):
    if not isinstance(messages, (list, tuple)):
        raise ArgumentError(f"messages: expected a list of dicts, found {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ArgumentError(f"messages[{i}]: expected a dict with role and content, found {type(m).__name__}")
        for f in fields:
            if not isinstance(m.get(f), str):
                raise ArgumentError(f"messages[{i}].{f}: expected a str, found {m.get(f)!r}")
        for f in optional:
            if m.get(f) is not None and not isinstance(m[f], str):
                raise ArgumentError(f"messages[{i}].{f}: expected a str or None, found {m[f]!r}")


def render_chatml(messages, *, add_generation_prompt=True, default_system=SMOLLM2_DEFAULT_SYSTEM):
    """ChatML as SmolLM2-135M-Instruct's GGUF tokenizer.chat_template renders it.

    For each message: "<|im_start|>" + role + "\\n" + content + "<|im_end|>\\n"; before the first
    message, when its role is not "system", "<|im_start|>system\\n" + default_system +
    "<|im_end|>\\n" (no messages: no system block); then "<|im_start|>assistant\\n" when
    add_generation_prompt. default_system=None never inserts a system block.
    """
    _check_messages(messages)
    if default_system is not None and not isinstance(default_system, str):
        raise ArgumentError(f"default_system: expected a str or None, found {default_system!r}")
    out = []
    for i, m in enumerate(messages):
        if i == 0 and m["role"] != "system" and default_system is not None:
            out.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def harmony_system_content(*, model_identity="You are ChatGPT, a large language model trained by OpenAI.",
                           knowledge_cutoff="2024-06", current_date=None, reasoning_effort="medium",
                           channels=("analysis", "commentary", "final"), channel_required=True,
                           function_tools=False):
    """The text of a harmony system message without tool namespaces (openai/harmony SystemContent).

    Sections joined by a blank line: identity, "Knowledge cutoff: ..", "Current date: .." (lines of
    one section); "Reasoning: low|medium|high"; "# Valid channels: a, b, c." + " Channel must be
    included for every message." (+ a line routing function tools to commentary). None drops a part.
    """
    if reasoning_effort not in (None, "low", "medium", "high"):
        raise ArgumentError(f"reasoning_effort: expected 'low', 'medium', 'high' or None, found {reasoning_effort!r}")
    sections = []
    top = [s for s in (model_identity,
                       f"Knowledge cutoff: {knowledge_cutoff}" if knowledge_cutoff else None,
                       f"Current date: {current_date}" if current_date else None) if s]
    if top:
        sections.append("\n".join(top))
    if reasoning_effort:
        sections.append(f"Reasoning: {reasoning_effort}")
    if channels:
        head = f"# Valid channels: {', '.join(channels)}."
        if channel_required:
            head += " Channel must be included for every message."
        if function_tools:
            head += "\nCalls to these tools must go to the commentary channel: 'functions'."
        sections.append(head)
    return "\n\n".join(sections)


def _harmony_message(m, i):
    role = m["role"]
    if role not in HARMONY_ROLES:
        raise ArgumentError(f"messages[{i}].role: expected one of {HARMONY_ROLES}, found {role!r}")
    name = m.get("name")
    if role == "tool":
        if not name:
            raise ArgumentError(f"messages[{i}].name: expected the tool's name (a tool message is headed by it), "
                                f"found {name!r}")
        head = name
    else:
        head = role + (f":{name}" if name else "")
    recipient, channel, ctype = m.get("recipient"), m.get("channel"), m.get("content_type")
    if recipient and recipient != "all":
        head += f" to={recipient}"
    if channel:
        head += _CHANNEL + channel
    if ctype:
        head += " " + ctype  # "<|constrain|>json" renders as " <|constrain|>json"
    end = _CALL if role == "assistant" and recipient else _END
    return f"{_START}{head}{_MESSAGE}{m['content']}{end}"


def render_harmony(messages, *, add_generation_prompt=True, drop_analysis=True, next_role="assistant"):
    """A conversation in OpenAI's harmony format (gpt-oss).

    Each message: <|start|>{role or tool name}[:name][ to={recipient}][<|channel|>{channel}]
    [ {content_type}]<|message|>{content}<|end|>, ending with <|call|> instead when an assistant
    message has a recipient (a tool call). content_type "<|constrain|>json" renders as
    " <|constrain|>json". drop_analysis (harmony's auto_drop_analysis, on by default): when the
    last assistant message is on channel "final", analysis-channel messages before the first
    "final" message are left out. add_generation_prompt appends "<|start|>" + next_role.
    """
    _check_messages(messages, optional=("name", "recipient", "channel", "content_type"))
    if not isinstance(next_role, str) or not next_role:
        raise ArgumentError(f"next_role: expected a role name, found {next_role!r}")
    keep = list(enumerate(messages))
    if drop_analysis:
        last_asst = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
        first_final = next((k for k, m in keep if m.get("channel") == "final"), None)
        if last_asst is not None and last_asst.get("channel") == "final":
            keep = [(k, m) for k, m in keep if not (k < first_final and m.get("channel") == "analysis")]
    out = [_harmony_message(m, k) for k, m in keep]
    if add_generation_prompt:
        out.append(_START + next_role)
    return "".join(out)


def _items_from_ids(ids, tokenizer):
    if tokenizer is None:
        raise ArgumentError("tokenizer: expected a Tokenizer to read token ids, found None")
    items, run = [], []
    for k, t in enumerate(ids):
        if tokenizer.is_special(t) and tokenizer.id_to_token(t) in _MARKERS:
            if run:
                items.append(("text", tokenizer.decode(run)))
                run = []
            items.append(("marker", tokenizer.id_to_token(t)))
        else:
            run.append(t)
    if run:
        items.append(("text", tokenizer.decode(run)))
    return items


def _items_from_text(text):
    items, pos = [], 0
    for m in _MARKER_RE.finditer(text):
        if m.start() > pos:
            items.append(("text", text[pos:m.start()]))
        items.append(("marker", m.group()))
        pos = m.end()
    if pos < len(text):
        items.append(("text", text[pos:]))
    return items


def _parse_header(header, role):
    """(role, name, channel, recipient, content_type) from a header string, as openai/harmony reads it."""
    channel = None
    idx = header.find(_CHANNEL)
    if idx >= 0:
        after = header[idx + len(_CHANNEL):]
        m = re.search(r"\s|<", after)
        end = m.start() if m else len(after)
        channel = after[:end]
        if not channel:
            raise TokenizerError(f"harmony header {header!r}: expected a channel name after <|channel|>, found none")
        header = header[:idx] + after[end:]
    header = header.strip()
    if _CONSTRAIN in header:
        header = header.replace(_CONSTRAIN, " " + _CONSTRAIN).strip()
    parts = [p for p in _ASCII_WS.split(header) if p]
    name = None
    if role is None:
        if not parts:
            raise TokenizerError("harmony header: expected a role, found an empty header")
        if parts[0] in HARMONY_ROLES:
            role = parts[0]
        else:  # a tool speaks under its own name ("functions.get_weather", "browser.search")
            role, name = "tool", parts.pop(0)
    if parts and parts[0] == role:
        parts.pop(0)
    recipient = ctype = None
    if parts:
        n = len(parts)
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif n == 1:
            recipient = last
        else:
            ctype = last
            raw = parts.pop()
            recipient = raw[3:] if raw.startswith("to=") else raw
    if parts:
        raise TokenizerError(f"harmony header: expected role, recipient, channel and content type only, found "
                             f"{' '.join(parts)!r} as well")
    return role, name, channel, recipient, ctype


def parse_harmony(text_or_ids, *, tokenizer=None, role=None, strict=True):
    """Messages of a harmony text or token-id sequence.

    Returns [{"role", "name", "channel", "recipient", "content_type", "content"}, ...]. A message
    ends at <|end|>, <|return|> or <|call|>; a message still open at the end of the input (a
    truncated completion) is returned with the content so far. When the input does not begin
    with <|start|>, it is a completion after "<|start|>{role}" (role defaults to "assistant").
    Headers are read as openai/harmony does: the channel is the word after <|channel|>; of the
    remaining words after the role, a last word "to=X" is the recipient, else a lone word is the
    recipient, else the last word is the content type and the one before it the recipient.
    Token ids need `tokenizer` (special ids of the harmony markers are the delimiters).
    strict: raise TokenizerError on text outside messages; False skips it.
    """
    if isinstance(text_or_ids, str):
        items = _items_from_text(text_or_ids)
    else:
        try:
            ids = list(text_or_ids)
        except TypeError:
            raise ArgumentError(f"text_or_ids: expected a str or a sequence of token ids, found "
                                f"{type(text_or_ids).__name__}") from None
        items = _items_from_ids(ids, tokenizer)
    if role is not None and role not in HARMONY_ROLES:
        raise ArgumentError(f"role: expected one of {HARMONY_ROLES} or None, found {role!r}")

    messages = []
    state, header, content, head_role = "start", [], [], None
    if items and items[0] != ("marker", _START):
        state, head_role = "header", role or "assistant"

    def close():
        r, name, channel, recipient, ctype = _parse_header("".join(header), head_role)
        messages.append({"role": r, "name": name, "channel": channel, "recipient": recipient,
                         "content_type": ctype, "content": "".join(content)})

    for kind, val in items:
        if state == "start":
            if (kind, val) == ("marker", _START):
                state, header, content, head_role = "header", [], [], None
            elif strict and not (kind == "text" and not val.strip()):
                raise TokenizerError(f"harmony: expected <|start|> before a message, found {val[:40]!r}")
        elif state == "header":
            if kind == "marker" and val == _MESSAGE:
                state = "content"
            elif kind == "text" or val in (_CHANNEL, _CONSTRAIN):
                header.append(val)
            elif strict:
                raise TokenizerError(f"harmony: expected <|message|> to end the header {''.join(header)!r}, "
                                     f"found {val}")
            else:
                state = "start"
        else:  # content
            if kind == "marker" and val in (_END, _RETURN, _CALL):
                close()
                state = "start"
            elif kind == "marker" and val == _START:
                if strict:
                    raise TokenizerError(f"harmony: expected <|end|>, <|return|> or <|call|> to end a message, "
                                         f"found <|start|> after {''.join(content)[-40:]!r}")
                close()
                state, header, content, head_role = "header", [], [], None
            else:
                content.append(val)
    if state == "content":
        close()
    elif state == "header" and strict and header:
        raise TokenizerError(f"harmony: expected <|message|> after the header {''.join(header)!r}, found the end")
    return messages
