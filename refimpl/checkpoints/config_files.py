"""Readers of model configurations into ModelConfig, the released models' presets, parameter counts.

- `config_from_hf(d)`: a Hugging Face `config.json` dict (model_type gpt2, llama, mistral, qwen2,
  qwen3, mixtral, gpt_oss), transformers v4 (`rope_scaling`, top-level `rope_theta`) and v5
  (`rope_parameters` holding rope_theta and rope_type) spellings.
- `config_from_openai_gpt_oss(d)`: OpenAI's original gpt-oss `config.json` (`original/` folder).
- `load_config(path)`: a config.json file or a directory holding one; detects the format.
- `PRESETS`: name -> ModelConfig of released models.
- `count_parameters(cfg)`: total / active / per-component parameter counts.

Every problem raises ConfigError naming the file (or `source`), the field, expected vs found.
The rules and their public sources are in spec/checkpoints.md.
"""

import json
import math
import os
import re

from ..model.config import MAX_LAYERS, ModelConfig
from ..errors import ConfigError
from .._files import open_regular

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
HF_MODEL_TYPES = ("gpt2",) + LLAMA_FAMILY + ("mixtral", "gpt_oss")
OPENAI_GPT_OSS_KEYS = ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                       "intermediate_size", "swiglu_limit", "head_dim", "num_attention_heads",
                       "num_key_value_heads", "sliding_window", "initial_context_length", "rope_theta",
                       "rope_scaling_factor", "rope_ntk_alpha", "rope_ntk_beta")
YARN_FALLBACKS = ("error", "max_position_embeddings")
_MISSING = object()


class _Reader:
    """Typed field access on a config dict; every failure names the source and the field."""

    def __init__(self, d, source):
        self.source = source or "config"
        if not isinstance(d, dict):
            self.fail("config", "a JSON object", f"{type(d).__name__}")
        self.d = d

    def fail(self, field, expected, found):
        raise ConfigError(f"{self.source}: {field}: expected {expected}, found {found}")

    def get(self, key, kind, default=_MISSING, *, d=None, prefix=""):
        d = self.d if d is None else d
        field = prefix + key
        if key not in d or (d[key] is None and default is not _MISSING):
            if default is _MISSING:
                self.fail(field, f"a {kind} (required field)", "nothing (missing)")
            return default
        return self.check(field, d[key], kind)

    def check(self, field, v, kind):
        if kind == "int":
            if isinstance(v, float) and v.is_integer() and abs(v) <= 2 ** 53:  # 4.0 -> 4; 1e308 stays a float
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool):
                self.fail(field, "an integer", repr(v))
        elif kind == "pos_int":
            v = self.check(field, v, "int")
            if v < 1:
                self.fail(field, "an integer >= 1", repr(v))
        elif kind == "float":
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                self.fail(field, "a finite number", repr(v))
            v = float(v)
        elif kind == "layers":
            v = self.check(field, v, "pos_int")
            if v > MAX_LAYERS:
                self.fail(field, f"a layer count in 1..{MAX_LAYERS}", repr(v))
        elif kind == "pos_float":
            v = self.check(field, v, "float")
            if v <= 0:
                self.fail(field, "a number > 0", repr(v))
        elif kind == "bool":
            if not isinstance(v, bool):
                self.fail(field, "true or false", repr(v))
        elif kind == "str":
            if not isinstance(v, str):
                self.fail(field, "a string", repr(v))
        elif kind == "dict":
            if not isinstance(v, dict):
                self.fail(field, "an object", repr(v))
        elif kind == "list":
            if not isinstance(v, list):
                self.fail(field, "a list", repr(v))
        else:  # pragma: no cover
            raise AssertionError(kind)
        return v

    def token_ids(self):
        bos = self.get("bos_token_id", "int", None)
        eos = self.d.get("eos_token_id")
        if eos is None:
            eos = ()
        elif isinstance(eos, list):
            eos = tuple(self.check(f"eos_token_id[{i}]", e, "int") for i, e in enumerate(eos))
        else:
            eos = (self.check("eos_token_id", eos, "int"),)
        return bos, eos


# ModelConfig field -> the field as each file format spells it (messages name what the user wrote)
HF_SPELLING = {"num_kv_heads": "num_key_value_heads", "num_heads": "num_attention_heads",
               "num_layers": "num_hidden_layers", "norm_eps": "rms_norm_eps", "num_experts": "num_local_experts",
               "experts_per_token": "num_experts_per_tok"}
GPT2_SPELLING = {"hidden_size": "n_embd", "num_heads": "n_head", "num_kv_heads": "n_head", "num_layers": "n_layer",
                 "intermediate_size": "n_inner", "max_position_embeddings": "n_positions",
                 "norm_eps": "layer_norm_epsilon"}
OPENAI_SPELLING = {"num_kv_heads": "num_key_value_heads", "num_heads": "num_attention_heads",
                   "num_layers": "num_hidden_layers",
                   "max_position_embeddings": "initial_context_length * rope_scaling_factor"}


def respell(message, spelling):
    """`message` with every ModelConfig field name (a whole word) replaced by its spelling in the
    user's file, in one pass (so "num_heads" never turns into a name that is then replaced again)."""
    if not spelling:
        return message
    pattern = re.compile(r"(?<!\w)(" + "|".join(sorted(map(re.escape, spelling), key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: spelling[m.group(1)], message)


def _build(r, spelling=HF_SPELLING, **kw):
    """ModelConfig(**kw); its own contradiction errors get the source prefixed and name the fields
    as the file spells them."""
    try:
        return ModelConfig(**kw)
    except ConfigError as exc:
        msg = str(exc)
        own = f"{kw.get('name') or 'config'}: "
        if msg.startswith(own):
            msg = msg[len(own):]
        raise ConfigError(f"{r.source}: {respell(msg, spelling)}") from None


# ---------------------------------------------------------------------------------------- RoPE

def _rope_dict(r, *, max_pos, missing_yarn_original_max):
    """(rope_theta, canonical rope_scaling or None) from rope_theta / rope_scaling / rope_parameters."""
    scaling = r.get("rope_scaling", "dict", None)
    params = r.get("rope_parameters", "dict", None)
    layer_types = r.d.get("layer_types")
    if params is not None and isinstance(layer_types, list) and params and set(params) <= set(layer_types):
        # transformers v5 per-layer-type dicts: one RoPE is all ModelConfig holds
        subs = [r.check(f"rope_parameters.{k}", v, "dict") for k, v in params.items()]
        if any(s != subs[0] for s in subs[1:]):
            r.fail("rope_parameters", "one RoPE setting shared by every layer type", repr(params))
        params = subs[0]
    if scaling is not None and params is not None:
        for k in set(scaling) & set(params):
            if scaling[k] != params[k]:
                r.fail(f"rope_parameters.{k}", f"the value in rope_scaling ({scaling[k]!r}) when both are given",
                       repr(params[k]))
    merged = {**(params or {}), **(scaling or {})}
    where = "rope_scaling" if scaling is not None else "rope_parameters"
    theta = r.get("rope_theta", "pos_float", None)
    for field, sub in (("rope_parameters", params), ("rope_scaling", scaling)):
        t = r.get("rope_theta", "pos_float", None, d=sub or {}, prefix=field + ".")
        if t is not None and theta is not None and t != theta:
            r.fail(f"{field}.rope_theta", f"the rope_theta given elsewhere ({theta})", t)
        theta = t if t is not None else theta
    if "type" in merged and "rope_type" in merged and merged["type"] != merged["rope_type"]:
        r.fail(f"{where}.type", f"the same as rope_type ({merged['rope_type']!r})", repr(merged["type"]))
    rtype = merged.get("rope_type", merged.get("type", "default"))
    rtype = r.check(f"{where}.rope_type", rtype, "str")

    def g(key, kind, default=_MISSING):
        return r.get(key, kind, default, d=merged, prefix=where + ".")

    def original_max():
        v = g("original_max_position_embeddings", "pos_int", None)
        if v is None:
            v = r.get("original_max_position_embeddings", "pos_int", None)
        if v is None:
            if missing_yarn_original_max == "max_position_embeddings":
                return max_pos
            r.fail(f"{where}.original_max_position_embeddings",
                   f"the pre-training context length for rope_type {rtype!r} (HF would fall back to "
                   f"max_position_embeddings={max_pos} and compute different frequencies; pass "
                   "missing_yarn_original_max='max_position_embeddings' to do the same)", "nothing (missing)")
        return v

    if rtype == "default":
        return theta, None
    if rtype == "linear":
        return theta, {"rope_type": "linear", "factor": g("factor", "pos_float")}
    if rtype == "llama3":
        return theta, {"rope_type": "llama3", "factor": g("factor", "pos_float"),
                       "low_freq_factor": g("low_freq_factor", "pos_float"),
                       "high_freq_factor": g("high_freq_factor", "pos_float"),
                       "original_max_position_embeddings": original_max()}
    if rtype == "yarn":
        for k in ("mscale", "mscale_all_dim"):
            if merged.get(k):
                r.fail(f"{where}.{k}", "absent (DeepSeek-style YaRN magnitude scaling is not supported)", merged[k])
        out = {"rope_type": "yarn", "factor": g("factor", "pos_float"),
               "beta_fast": g("beta_fast", "pos_float", 32.0), "beta_slow": g("beta_slow", "pos_float", 1.0),
               "original_max_position_embeddings": original_max(), "truncate": g("truncate", "bool", True)}
        af = g("attention_factor", "pos_float", None)
        if af is not None:
            out["attention_factor"] = af
        return theta, out
    r.fail(f"{where}.rope_type", "one of default, linear, llama3, yarn", repr(rtype))


# ------------------------------------------------------------------------------------ readers

def config_from_hf(d, *, name="", source="", missing_yarn_original_max="error"):
    """ModelConfig from a Hugging Face config.json dict.

    missing_yarn_original_max: what to do when a yarn/llama3 rope dict lacks
    original_max_position_embeddings: "error" (default; the released gpt-oss ships 4096 and
    computing frequencies from 131072 instead silently changes the model) or
    "max_position_embeddings" (what transformers does: standardize_rope_params fills it from
    max_position_embeddings).
    """
    r = _Reader(d, source or name or "config")
    if missing_yarn_original_max not in YARN_FALLBACKS:
        raise ConfigError(f"missing_yarn_original_max: expected one of {YARN_FALLBACKS}, found {missing_yarn_original_max!r}")
    mt = r.get("model_type", "str")
    bos, eos = r.token_ids()
    common = dict(name=name, bos_token_id=bos, eos_token_ids=eos, extra={"model_type": mt, "source": r.source})
    if mt == "gpt2":
        return _gpt2(r, common)
    if mt in LLAMA_FAMILY or mt == "mixtral":
        return _llama_family(r, mt, common, missing_yarn_original_max)
    if mt == "gpt_oss":
        return _gpt_oss_hf(r, common, missing_yarn_original_max)
    r.fail("model_type", f"one of {', '.join(HF_MODEL_TYPES)}", repr(mt))


def _gpt2(r, common):
    d = r.get("n_embd", "pos_int")
    heads = r.get("n_head", "pos_int")
    if d % heads:
        r.fail("n_head", f"a divisor of n_embd={d}", heads)
    act = r.get("activation_function", "str", "gelu_new")
    acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu_erf"}
    if act not in acts:
        r.fail("activation_function", f"one of {', '.join(acts)}", repr(act))
    for k in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if r.get(k, "bool", False):
            r.fail(k, "false (not supported)", True)
    if not r.get("scale_attn_weights", "bool", True):
        r.fail("scale_attn_weights", "true (scores scaled by 1/sqrt(head_dim))", False)
    return _build(
        r, GPT2_SPELLING, arch="gpt2", vocab_size=r.get("vocab_size", "pos_int"), hidden_size=d,
        num_layers=r.get("n_layer", "layers"), num_heads=heads, num_kv_heads=heads, head_dim=d // heads,
        intermediate_size=r.get("n_inner", "pos_int", 4 * d), max_position_embeddings=r.get("n_positions", "pos_int"),
        norm="layer", norm_eps=r.get("layer_norm_epsilon", "pos_float", 1e-5), norm_placement="pre",
        activation=acts[act], position="learned", attention_bias=True, attention_out_bias=True, mlp_bias=True,
        tie_word_embeddings=r.get("tie_word_embeddings", "bool", True), **common)


def _head_dim(r, hidden, heads):
    hd = r.get("head_dim", "pos_int", None)
    if hd is None:
        if hidden % heads:
            r.fail("num_attention_heads", f"a divisor of hidden_size={hidden} (no head_dim given)", heads)
        hd = hidden // heads
    return hd


def _layer_types(r, n_layers, window):
    """(layer_types tuple, sliding_window) from an explicit layer_types list."""
    lt = r.get("layer_types", "list", None)
    if lt is None:
        return None
    if len(lt) != n_layers:
        r.fail("layer_types", f"{n_layers} entries (num_hidden_layers)", len(lt))
    for i, t in enumerate(lt):
        if t not in ("full_attention", "sliding_attention"):
            r.fail(f"layer_types[{i}]", "'full_attention' or 'sliding_attention'", repr(t))
    if "sliding_attention" not in lt:
        return (), None
    if window is None:
        r.fail("sliding_window", "an integer >= 1 for the sliding_attention layers", None)
    return tuple(lt), window


def _llama_family(r, mt, common, yarn_fallback):
    hidden = r.get("hidden_size", "pos_int")
    heads = r.get("num_attention_heads", "pos_int")
    n_layers = r.get("num_hidden_layers", "layers")
    max_pos = r.get("max_position_embeddings", "pos_int")
    act = r.get("hidden_act", "str", "silu")
    if act != "silu":
        r.fail("hidden_act", "'silu' (SwiGLU MLP)", repr(act))
    theta, scaling = _rope_dict(r, max_pos=max_pos, missing_yarn_original_max=yarn_fallback)
    if theta is None:
        theta = 1e6 if mt == "mixtral" else 10000.0  # HF class defaults
    bias = r.get("attention_bias", "bool", False)
    kw = dict(attention_bias=bias, attention_out_bias=bias, mlp_bias=r.get("mlp_bias", "bool", False))
    if mt == "qwen2":  # Qwen2Attention: q/k/v biased, o_proj not (no attention_bias field)
        kw.update(attention_bias=True, attention_out_bias=False, mlp_bias=False)
    if mt in ("mistral", "mixtral"):
        kw.update(attention_bias=False, attention_out_bias=False, mlp_bias=False)
    if mt == "qwen3":
        kw["mlp_bias"] = False
    # sliding window
    window = r.get("sliding_window", "pos_int", None)
    if mt in ("qwen2", "qwen3"):
        if not r.get("use_sliding_window", "bool", False):
            window = None
    explicit = _layer_types(r, n_layers, window)
    if explicit is not None:
        layer_types, window = explicit
    elif mt in ("qwen2", "qwen3") and window is not None:
        mwl = r.get("max_window_layers", "int", n_layers)
        layer_types = tuple("sliding_attention" if i >= mwl else "full_attention" for i in range(n_layers))
        if "sliding_attention" not in layer_types:
            layer_types, window = (), None
        elif "full_attention" not in layer_types:
            layer_types = ()
    else:
        layer_types = ()
    moe = {}
    if mt == "mixtral":
        moe = dict(num_experts=r.get("num_local_experts", "pos_int"),
                   experts_per_token=r.get("num_experts_per_tok", "pos_int"), router="softmax_topk")
    return _build(
        r, arch="mixtral" if mt == "mixtral" else "llama", vocab_size=r.get("vocab_size", "pos_int"),
        hidden_size=hidden, num_layers=n_layers, num_heads=heads,
        num_kv_heads=r.get("num_key_value_heads", "pos_int", heads), head_dim=_head_dim(r, hidden, heads),
        intermediate_size=r.get("intermediate_size", "pos_int"), max_position_embeddings=max_pos,
        norm="rms", norm_eps=r.get("rms_norm_eps", "pos_float", 1e-6), activation="swiglu", position="rope",
        rope_theta=theta, rope_scaling=scaling, qk_norm=(mt == "qwen3"), sliding_window=window,
        layer_types=layer_types, tie_word_embeddings=r.get("tie_word_embeddings", "bool", False), **kw, **moe,
        **common)


def _gpt_oss_hf(r, common, yarn_fallback):
    hidden = r.get("hidden_size", "pos_int")
    heads = r.get("num_attention_heads", "pos_int")
    n_layers = r.get("num_hidden_layers", "layers")
    max_pos = r.get("max_position_embeddings", "pos_int")
    theta, scaling = _rope_dict(r, max_pos=max_pos, missing_yarn_original_max=yarn_fallback)
    if theta is None:
        theta = 150000.0  # GptOssConfig.default_theta
    window = r.get("sliding_window", "pos_int", None)
    explicit = _layer_types(r, n_layers, window)
    if explicit is None:  # GptOssConfig default: sliding on even layer indices
        if window is None:
            r.fail("sliding_window", "an integer >= 1 (no layer_types given, so even layers slide)", None)
        explicit = (tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)), window)
    layer_types, window = explicit
    bias = r.get("attention_bias", "bool", True)
    q = r.get("quantization_config", "dict", None)
    extra = dict(common.pop("extra"))
    if q is not None:
        extra["quantization"] = q.get("quant_method")
    return _build(
        r, arch="gpt_oss", vocab_size=r.get("vocab_size", "pos_int"), hidden_size=hidden, num_layers=n_layers,
        num_heads=heads, num_kv_heads=r.get("num_key_value_heads", "pos_int", heads),
        head_dim=_head_dim(r, hidden, heads), intermediate_size=r.get("intermediate_size", "pos_int"),
        max_position_embeddings=max_pos, norm="rms", norm_eps=r.get("rms_norm_eps", "pos_float", 1e-5),
        activation="swiglu_oss", position="rope", rope_theta=theta, rope_scaling=scaling,
        attention_bias=bias, attention_out_bias=bias, mlp_bias=True, sliding_window=window,
        layer_types=layer_types, attention_sinks=True, num_experts=r.get("num_local_experts", "pos_int"),
        experts_per_token=r.get("num_experts_per_tok", "pos_int"), router="topk_softmax",
        swiglu_alpha=r.get("swiglu_alpha", "pos_float", 1.702), swiglu_limit=r.get("swiglu_limit", "pos_float", 7.0),
        tie_word_embeddings=r.get("tie_word_embeddings", "bool", False), extra=extra, **common)


def config_from_openai_gpt_oss(d, *, name="", source=""):
    """ModelConfig from OpenAI's original gpt-oss config.json (openai/gpt-oss gpt_oss/torch/model.py ModelConfig).

    All 16 keys are required (the official dataclass would silently take gpt-oss-120b defaults for
    missing ones) and unknown keys are refused (the official dataclass refuses them too).
    Fixed by the official code, not the file: RMSNorm eps 1e-5, SwiGLU alpha 1.702, biases on
    qkv/out/router/experts, untied unembedding, sinks. Derived: layer l slides iff l is even
    (sliding_window 0 = no sliding); YaRN when rope_scaling_factor > 1 with beta_fast = rope_ntk_beta,
    beta_slow = rope_ntk_alpha, original context = initial_context_length, truncate False (low/high
    not rounded); max_position_embeddings = initial_context_length * rope_scaling_factor.
    """
    r = _Reader(d, source or name or "config")
    unknown = sorted(set(d) - set(OPENAI_GPT_OSS_KEYS))
    if unknown:
        r.fail(unknown[0], f"only the OpenAI gpt-oss keys {', '.join(OPENAI_GPT_OSS_KEYS)}", "an unknown key")
    g = r.get
    n_layers = g("num_hidden_layers", "layers")
    window = g("sliding_window", "int")
    if window < 0:
        r.fail("sliding_window", "an integer >= 0 (0 = no sliding window)", window)
    ctx = g("initial_context_length", "pos_int")
    factor = g("rope_scaling_factor", "pos_float")
    if factor < 1:
        r.fail("rope_scaling_factor", "a number >= 1", factor)
    scaling = None
    if factor > 1:
        scaling = {"rope_type": "yarn", "factor": factor, "beta_fast": g("rope_ntk_beta", "pos_float"),
                   "beta_slow": g("rope_ntk_alpha", "pos_float"), "original_max_position_embeddings": ctx,
                   "truncate": False}
    else:
        g("rope_ntk_beta", "pos_float")
        g("rope_ntk_alpha", "pos_float")
    max_pos = ctx * factor
    if not float(max_pos).is_integer():
        r.fail("rope_scaling_factor", "a factor making initial_context_length * factor an integer", factor)
    layer_types = ()
    if window:
        layer_types = tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers))
    return _build(
        r, OPENAI_SPELLING, arch="gpt_oss", vocab_size=g("vocab_size", "pos_int"), hidden_size=g("hidden_size", "pos_int"),
        num_layers=n_layers, num_heads=g("num_attention_heads", "pos_int"),
        num_kv_heads=g("num_key_value_heads", "pos_int"), head_dim=g("head_dim", "pos_int"),
        intermediate_size=g("intermediate_size", "pos_int"), max_position_embeddings=int(max_pos), norm="rms",
        norm_eps=1e-5, activation="swiglu_oss", position="rope", rope_theta=g("rope_theta", "pos_float"),
        rope_scaling=scaling, attention_bias=True, attention_out_bias=True, mlp_bias=True,
        sliding_window=window or None, layer_types=layer_types, attention_sinks=True,
        num_experts=g("num_experts", "pos_int"), experts_per_token=g("experts_per_token", "pos_int"),
        router="topk_softmax", swiglu_alpha=1.702, swiglu_limit=g("swiglu_limit", "pos_float"),
        tie_word_embeddings=False, name=name, extra={"model_type": "openai_gpt_oss", "source": r.source})


def detect_config_format(d):
    """'hf' (has model_type), 'openai_gpt_oss' (OpenAI's original keys) or None."""
    if not isinstance(d, dict):
        return None
    if "model_type" in d:
        return "hf"
    if {"num_experts", "experts_per_token", "initial_context_length", "rope_scaling_factor"} <= set(d):
        return "openai_gpt_oss"
    return None


JSON_LIMIT = 64 << 20  # a config or index larger than 64 MiB is not one


def read_json_object(path):
    """A JSON file's top-level object; ConfigError naming the file otherwise.

    Only a regular file is read (a FIFO or device is refused at once, spec/reliability.md), at most
    JSON_LIMIT bytes; parse errors give their position, never the file's bytes.
    """
    with open_regular(path, ConfigError, "a JSON config file") as f:
        try:
            raw = f.read(JSON_LIMIT + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > JSON_LIMIT:
        raise ConfigError(f"{path}: expected a JSON config of at most {JSON_LIMIT} bytes, found a larger file")
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: expected UTF-8 JSON, found invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: expected JSON, found unparsable text ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep; ValueError: huge integers
        raise ConfigError(f"{path}: expected JSON, found unparsable text ({type(exc).__name__})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: config: expected a JSON object, found {type(d).__name__}")
    return d


def load_config(path, *, name="", missing_yarn_original_max="error"):
    """ModelConfig from a config.json file, or from a directory's config.json; the format is detected."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    d = read_json_object(path)
    fmt = detect_config_format(d)
    if fmt == "hf":
        return config_from_hf(d, name=name, source=path, missing_yarn_original_max=missing_yarn_original_max)
    if fmt == "openai_gpt_oss":
        return config_from_openai_gpt_oss(d, name=name, source=path)
    raise ConfigError(f"{path}: model_type: expected a Hugging Face config (model_type one of "
                      f"{', '.join(HF_MODEL_TYPES)}) or OpenAI's gpt-oss keys, found neither")


# ------------------------------------------------------------------------------------ presets

def _gpt2_preset(name, d, layers, heads):
    # openai-community/{gpt2,gpt2-medium,gpt2-large,gpt2-xl} config.json
    return config_from_hf({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": d,
                           "n_layer": layers, "n_head": heads, "n_inner": None, "layer_norm_epsilon": 1e-5,
                           "activation_function": "gelu_new", "bos_token_id": 50256, "eos_token_id": 50256},
                          name=name, source=f"preset {name}")


def _gpt_oss_preset(name, layers, experts):
    # openai/gpt-oss-{20b,120b} config.json (HF format); values in shared/reference/released-models.md
    return config_from_hf({
        "model_type": "gpt_oss", "num_hidden_layers": layers, "num_local_experts": experts,
        "num_experts_per_tok": 4, "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
        "head_dim": 64, "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 150000, "swiglu_limit": 7.0,
        "attention_bias": True, "tie_word_embeddings": False, "eos_token_id": 200002, "pad_token_id": 199999,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                         "original_max_position_embeddings": 4096, "truncate": False},
        "quantization_config": {"quant_method": "mxfp4"}}, name=name, source=f"preset {name}")


def _llama_preset(name, **d):
    return config_from_hf(d, name=name, source=f"preset {name}")


PRESETS = {
    "gpt2": _gpt2_preset("gpt2", 768, 12, 12),
    "gpt2-medium": _gpt2_preset("gpt2-medium", 1024, 24, 16),
    "gpt2-large": _gpt2_preset("gpt2-large", 1280, 36, 20),
    "gpt2-xl": _gpt2_preset("gpt2-xl", 1600, 48, 25),
    "gpt-oss-20b": _gpt_oss_preset("gpt-oss-20b", 24, 32),
    "gpt-oss-120b": _gpt_oss_preset("gpt-oss-120b", 36, 128),
    # meta-llama/Meta-Llama-3-8B config.json
    "llama-3-8b": _llama_preset(
        "llama-3-8b", model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000,
        eos_token_id=128001),
    # meta-llama/Meta-Llama-3-70B config.json
    "llama-3-70b": _llama_preset(
        "llama-3-70b", model_type="llama", vocab_size=128256, hidden_size=8192, intermediate_size=28672,
        num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000,
        eos_token_id=128001),
    # Qwen/Qwen3-0.6B config.json
    "qwen3-0.6b": _llama_preset(
        "qwen3-0.6b", model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, max_window_layers=28, rms_norm_eps=1e-6, rope_theta=1000000.0,
        use_sliding_window=False, sliding_window=None, attention_bias=False, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645),
    # HuggingFaceTB/SmolLM2-135M config.json
    "smollm2-135m": _llama_preset(
        "smollm2-135m", model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
        max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0),
    # mistralai/Mixtral-8x7B-v0.1 config.json
    "mixtral-8x7b": _llama_preset(
        "mixtral-8x7b", model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None, num_local_experts=8, num_experts_per_tok=2,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
}


def get_preset(name):
    """PRESETS[name]; ConfigError listing the known names otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, found {name!r}")
    return PRESETS[name]


# ---------------------------------------------------------------------------- parameter count

def count_parameters(cfg):
    """Parameter counts of `cfg`: {"total", "active", "per_component": {...}}.

    Counts every stored weight and bias once (a tied LM head is not counted again); MXFP4 experts
    count their logical parameters (one per weight element, scales not counted).
    active = the parameters one token's forward pass multiplies with: total minus the experts not
    chosen (num_experts - experts_per_token per layer) minus the token- and position-embedding
    tables (a lookup reads one row), except that a tied table is counted since the LM head uses all
    of it. This matches OpenAI's gpt-oss model card (20.91B / 3.61B, 116.83B / 5.13B).
    """
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg: expected a ModelConfig, found {type(cfg).__name__}")
    d, L, V = cfg.hidden_size, cfg.num_layers, cfg.vocab_size
    q, kv, I = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.intermediate_size
    norm = d * (2 if cfg.norm == "layer" else 1)
    attn = d * (q + 2 * kv) + q * d
    attn += (q + 2 * kv) * cfg.attention_bias + d * cfg.attention_out_bias
    attn += 2 * cfg.head_dim * cfg.qk_norm + cfg.num_heads * cfg.attention_sinks
    pc = {"embedding": V * d, "position_embedding": cfg.max_position_embeddings * d * (cfg.position == "learned"),
          "attention": L * attn, "norms": (2 * L + 1) * norm,
          "lm_head": 0 if cfg.tie_word_embeddings else V * d}
    gated = cfg.activation in ("swiglu", "swiglu_oss")
    mlp_one = (3 if gated else 2) * d * I + ((2 * I if gated else I) + d) * cfg.mlp_bias
    if cfg.num_experts:
        pc["router"] = L * (cfg.num_experts * d + cfg.num_experts * (cfg.arch == "gpt_oss"))
        pc["experts"] = L * cfg.num_experts * mlp_one
        inactive = L * (cfg.num_experts - cfg.experts_per_token) * mlp_one
    else:
        pc["mlp"] = L * mlp_one
        inactive = 0
    total = sum(pc.values())
    lookups = pc["position_embedding"] + (0 if cfg.tie_word_embeddings else pc["embedding"])
    return {"total": total, "active": total - inactive - lookups, "per_component": pc}


