"""The model's own chat template: a Jinja program stored with the tokenizer, rendered as HF does.

Where a template comes from (`templates_from_gguf`, `templates_near`):
  GGUF: the string `tokenizer.chat_template` (plus `tokenizer.chat_template.NAME` as named extras);
  a checkpoint folder: `chat_template.jinja` and `additional_chat_templates/*.jinja` when present,
  else `chat_template` in tokenizer_config.json (a string, or a list of {"name", "template"}).
How it is rendered (`apply_chat_template`, the signature of transformers' method of that name):
  jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loop-controls
  extension and a `{% generation %}` tag that renders its body; globals raise_exception (->
  TokenizerError), strftime_now(fmt) (local time), namespace, dict; filter tojson (json.dumps,
  ensure_ascii False); variables messages, tools, documents, add_generation_prompt, the special
  tokens (bos_token, eos_token, unk_token, pad_token, ...) and any extra keyword arguments.
Without a template: harmony for a vocabulary with harmony's markers (gpt-oss), else plain ChatML,
said once on stderr. Rules and sources: spec/chat-formats.md.
"""

import json
import sys
from datetime import datetime
from pathlib import Path

from ..errors import ArgumentError, TokenizerError

__all__ = ["apply_chat_template", "get_chat_template", "templates_from_gguf", "templates_near",
           "attach_gguf", "attach_near", "compile_template", "SPECIAL_TOKEN_NAMES"]

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_GGUF_SPECIAL_IDS = {"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
                     "unk_token": "tokenizer.ggml.unknown_token_id", "pad_token": "tokenizer.ggml.padding_token_id"}
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
_said_fallback = set()


# ---- where templates come from ----------------------------------------------------------------

def _templates_value(value, where):
    """A template field as str or {name: str}; a list of {"name", "template"} becomes a dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        out = {}
        for k, item in enumerate(value):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                    and isinstance(item.get("template"), str)):
                raise TokenizerError(f"{where}[{k}]: expected {{\"name\": str, \"template\": str}}, found {item!r:.80}")
            out[item["name"]] = item["template"]
        return out
    raise TokenizerError(f"{where}: expected a Jinja template string or a list of named templates, "
                         f"found {type(value).__name__}")


def templates_from_gguf(metadata):
    """The chat template(s) in GGUF metadata: str, {name: str} (with "default"), or None."""
    default = metadata.get("tokenizer.chat_template")
    if default is not None and not isinstance(default, str):
        raise TokenizerError(f"tokenizer.chat_template: expected a string, found {type(default).__name__}")
    prefix = "tokenizer.chat_template."
    named = {k[len(prefix):]: v for k, v in metadata.items() if k.startswith(prefix) and isinstance(v, str)}
    if not named:
        return default
    if default is not None:
        named["default"] = default
    return named


def templates_near(folder):
    """The chat template(s) stored in a checkpoint folder (see the module docstring), or None."""
    folder = Path(folder)
    found = {}
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        found["default"] = _read_text(jinja)
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        for f in sorted(extra.glob("*.jinja")):
            found[f.name[:-len(".jinja")]] = _read_text(f)
    if found:
        return found["default"] if list(found) == ["default"] else found
    cfg = _tokenizer_config(folder)
    return _templates_value(cfg.get("chat_template"), f"{folder / 'tokenizer_config.json'}: chat_template")


def _read_text(path):
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path}: expected a UTF-8 Jinja template, found {exc}") from None


def _tokenizer_config(folder):
    p = Path(folder) / "tokenizer_config.json"
    if not p.is_file():
        return {}
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{p}: expected JSON, found {exc}") from None
    if not isinstance(cfg, dict):
        raise TokenizerError(f"{p}: expected a JSON object, found {type(cfg).__name__}")
    return cfg


def attach_gguf(tokenizer, metadata):
    """Set tokenizer.chat_template and tokenizer.special_tokens_map from GGUF metadata; returns it."""
    tokenizer.chat_template = templates_from_gguf(metadata)
    names = {}
    for name, key in _GGUF_SPECIAL_IDS.items():
        i = metadata.get(key)
        if i is not None and 0 <= int(i) < tokenizer.vocab_size:
            try:
                tok = tokenizer.id_to_token(int(i))
            except Exception:  # an id without a token: the name stays unset
                continue
            names[name] = tok if isinstance(tok, str) else tok.decode("utf-8", "replace")
    tokenizer.special_tokens_map = names
    return tokenizer


def attach_near(tokenizer, folder):
    """Set tokenizer.chat_template and tokenizer.special_tokens_map from files in `folder`; returns it."""
    tokenizer.chat_template = templates_near(folder)
    cfg = _tokenizer_config(folder)
    names = {}
    for name in SPECIAL_TOKEN_NAMES:
        v = cfg.get(name)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            names[name] = v
    tokenizer.special_tokens_map = names
    return tokenizer


def _special_tokens_map(tokenizer):
    names = getattr(tokenizer, "special_tokens_map", None)
    if names is not None:
        return dict(names)
    names = {}  # a tokenizer built otherwise: bos / eos from its ids
    if getattr(tokenizer, "bos_id", None) is not None:
        names["bos_token"] = tokenizer.id_to_token(tokenizer.bos_id)
    if getattr(tokenizer, "eos_ids", ()):
        names["eos_token"] = tokenizer.id_to_token(tokenizer.eos_ids[0])
    return {k: v for k, v in names.items() if isinstance(v, str)}


# ---- rendering --------------------------------------------------------------------------------

def _jinja():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:
        raise TokenizerError("chat template: expected the `jinja2` package to render the model's template, "
                             "found it missing: pip install 'refimpl[text]'") from None
    return jinja2


_compiled = {}


def compile_template(source):
    """The template `source` compiled in the sandboxed environment described in the module docstring."""
    if not isinstance(source, str):
        raise ArgumentError(f"chat_template: expected a Jinja template string, found {type(source).__name__}")
    got = _compiled.get(source)
    if got is not None:
        return got
    jinja2 = _jinja()

    class GenerationTag(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` marks an assistant reply; rendered as its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class SafeNamespace(jinja2.utils.Namespace):
        """jinja's namespace refusing attribute names that begin with an underscore."""

        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                _check_attr(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            _check_attr(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    def _check_attr(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat template: namespace attribute {name!r} begins with '_'")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    class MakeDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, namespace=SafeNamespace,
                       dict=MakeDict())
    try:
        tmpl = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise TokenizerError(f"chat template: expected valid Jinja, found a syntax error at line {exc.lineno}: "
                             f"{exc.message}") from None
    if len(_compiled) > 32:
        _compiled.clear()
    _compiled[source] = tmpl
    return tmpl


def _plain(value):
    """Template data rebuilt from plain JSON-like types; anything else becomes "<TypeName>"."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return _plain(value.item())  # a NumPy scalar
    return f"<{type(value).__name__}>"


def _normalize(chat, where):
    chat = getattr(chat, "messages", chat)
    if not isinstance(chat, (list, tuple)):
        raise ArgumentError(f"{where}: expected a list of message dicts, found {type(chat).__name__}")
    out = []
    for i, m in enumerate(chat):
        if not isinstance(m, dict):
            raise ArgumentError(f"{where}[{i}]: expected a dict with role and content, found {type(m).__name__}")
        m = {k: v for k, v in _plain(m).items() if v is not None}  # a None field is left out
        reasoning = next((m[k] for k in _REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def get_chat_template(tokenizer, chat_template=None, tools=None):
    """The template source to use: a name among the model's templates, a template given, or the model's
    ("tool_use" when tools are given and the model has one, else "default"). None: no template."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):
        if chat_template is not None and chat_template in own:
            return own[chat_template]
        if chat_template is None:
            if tools is not None and "tool_use" in own:
                return own["tool_use"]
            if "default" in own:
                return own["default"]
            raise ArgumentError(f"chat_template: the model has several chat templates and none is named "
                                f"'default'; pass one of {sorted(own)}")
    if chat_template is not None:
        return chat_template
    return own


def _fallback(tokenizer, messages, add_generation_prompt):
    """No template anywhere: harmony for a harmony vocabulary (gpt-oss), else plain ChatML."""
    from .chat import render_chatml, render_harmony

    specials = getattr(tokenizer, "special_tokens", {}) or {}
    harmony = "<|start|>" in specials and "<|message|>" in specials
    name = getattr(tokenizer, "name", "") or "this tokenizer"
    if name not in _said_fallback:
        _said_fallback.add(name)
        fmt = "harmony (gpt-oss)" if harmony else "ChatML"
        print(f"refimpl: {name} has no chat template; using {fmt}", file=sys.stderr, flush=True)
    if harmony:
        return render_harmony(messages, add_generation_prompt=add_generation_prompt)
    msgs = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in messages]
    return render_chatml(msgs, add_generation_prompt=add_generation_prompt, default_system=None)


def _render_one(tmpl, source, chat, *, tools, documents, add_generation_prompt, continue_final_message,
                variables):
    jinja2 = _jinja()
    final_message, continue_key = None, None
    if continue_final_message:
        if not chat:
            raise ArgumentError("continue_final_message: expected a conversation with a final message, found none")
        continue_key = continue_final_message if isinstance(continue_final_message, str) else "content"
        final_message = chat[-1].get(continue_key)
        if final_message is None:
            raise ArgumentError(f"continue_final_message: expected the final message to have {continue_key!r}, "
                                f"found {sorted(chat[-1])}")
        fields = [continue_key]
        if continue_key in _REASONING_FIELDS:
            fields = [f for f in _REASONING_FIELDS if chat[-1].get(f) == final_message]
        if not any(f in source for f in fields):
            raise ArgumentError(f"continue_final_message: expected the template to read {continue_key!r}, "
                                f"found no such field in it")
        if isinstance(final_message, (list, tuple)):
            for block in reversed(final_message):
                if isinstance(block, dict) and "text" in block:
                    final_message = block["text"]
                    block["text"] = block["text"] + _CONTINUE_TAG
                    break
            else:
                raise ArgumentError("continue_final_message: expected a text block in the final message, found none")
        else:
            for f in fields:
                chat[-1][f] = chat[-1][f] + _CONTINUE_TAG
    try:
        text = tmpl.render(messages=chat, tools=tools, documents=documents,
                           add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as exc:  # raise_exception, sandbox refusals, undefined calls
        raise TokenizerError(f"chat template: {exc.message or type(exc).__name__}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError) as exc:
        raise TokenizerError(f"chat template: rendering failed with {type(exc).__name__}: {exc}") from None
    if continue_final_message:
        tag = _CONTINUE_TAG.strip()
        if str(final_message).strip() not in text or tag not in text:
            raise TokenizerError("continue_final_message: expected the final message in the rendered chat, "
                                 "found the template dropped part of it")
        at = text.rindex(tag)
        text = text[:at] if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()
    return text


def apply_chat_template(tokenizer, conversation, tools=None, documents=None, chat_template=None,
                        add_generation_prompt=False, continue_final_message=False, tokenize=True,
                        sanitize_control_tokens=False, padding=False, truncation=False, max_length=None,
                        return_tensors=None, return_dict=True, return_assistant_tokens_mask=False,
                        tokenizer_kwargs=None, **kwargs):
    """A conversation (or a batch of them) rendered by the model's chat template, as transformers does.

    conversation: [{"role", "content", ...}, ...] (keys with value None are left out), or a list of
    such lists (a batch: a list comes back). chat_template: a template string, or the name of one of
    the model's templates. Extra keyword arguments are template variables (they override the special
    tokens of the same name). tokenize=False: the text. tokenize=True: the ids (the text encoded
    with every special token matched, no BOS added); return_dict=True (transformers' default) wraps
    them as {"input_ids": ..., "attention_mask": ...}; return_tensors="np" gives [1, T] arrays.
    Refused with ArgumentError: an empty conversation, continue_final_message together with
    add_generation_prompt, and the options refimpl does not provide (padding, truncation,
    sanitize_control_tokens, return_assistant_tokens_mask, tokenizer_kwargs, callable tools).
    """
    for name, val in (("padding", padding), ("truncation", truncation), ("sanitize_control_tokens",
                      sanitize_control_tokens), ("return_assistant_tokens_mask", return_assistant_tokens_mask)):
        if val:
            raise ArgumentError(f"{name}: not provided by refimpl's apply_chat_template; found {val!r}")
    if tokenizer_kwargs:
        raise ArgumentError(f"tokenizer_kwargs: not provided by refimpl's apply_chat_template; "
                            f"found {tokenizer_kwargs!r}")
    if max_length is not None:
        raise ArgumentError(f"max_length: not provided by refimpl's apply_chat_template (no truncation); "
                            f"found {max_length!r}")
    if return_tensors not in (None, "np"):
        raise ArgumentError(f"return_tensors: expected None or 'np', found {return_tensors!r}")
    if continue_final_message and add_generation_prompt:
        raise ArgumentError("continue_final_message and add_generation_prompt: expected at most one of them, "
                            "found both (continue the last message, or open a new assistant turn)")
    if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
        raise ArgumentError("conversation: expected at least one message, found an empty list")
    if not isinstance(conversation, (list, tuple)) and not hasattr(conversation, "messages"):
        raise ArgumentError(f"conversation: expected a list of message dicts, found {type(conversation).__name__}")
    batched = isinstance(conversation, (list, tuple)) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
    chats = [_normalize(c, f"conversation[{k}]") for k, c in enumerate(conversation)] if batched \
        else [_normalize(conversation, "conversation")]
    if tools is not None:
        if not isinstance(tools, (list, tuple)) or not all(isinstance(t, dict) for t in tools):
            raise ArgumentError("tools: expected a list of JSON-schema dicts (refimpl does not turn functions into "
                                f"schemas), found {tools!r:.80}")
        tools = _plain(list(tools))
    if documents is not None:
        if not isinstance(documents, (list, tuple)) or not all(isinstance(d, dict) for d in documents):
            raise ArgumentError(f"documents: expected a list of dicts (title, text), found {documents!r:.80}")
        documents = _plain(list(documents))

    source = get_chat_template(tokenizer, chat_template, tools)
    if source is None:
        texts = [_fallback(tokenizer, c, add_generation_prompt) for c in chats]
    else:
        tmpl = compile_template(source)
        variables = _plain({**_special_tokens_map(tokenizer), **kwargs})
        texts = [_render_one(tmpl, source, c, tools=tools, documents=documents,
                             add_generation_prompt=add_generation_prompt,
                             continue_final_message=continue_final_message, variables=variables) for c in chats]
    if not tokenize:
        return texts if batched else texts[0]
    ids = [tokenizer.encode(t, allowed_special="all") for t in texts]
    if return_tensors == "np":
        import numpy as np

        if len({len(x) for x in ids}) > 1:
            raise ArgumentError("return_tensors='np': expected conversations of one token length (refimpl does not "
                                "pad), found lengths " + ", ".join(str(len(x)) for x in ids))
        arr = np.asarray(ids, dtype=np.int64)
        return {"input_ids": arr, "attention_mask": np.ones_like(arr)} if return_dict else arr
    out = ids if batched else ids[0]
    if return_dict:
        mask = [[1] * len(x) for x in ids] if batched else [1] * len(ids[0])
        return {"input_ids": out, "attention_mask": mask}
    return out
