"""A refimpl backend whose kernels are PyTorch's and HF transformers' own functions (peer check).

Golden environment only (torch + transformers, e.g. /work/venv-peer-usability); refimpl and its
tests never import this file. Run from the repository root:

    /work/venv-peer-usability/bin/python -m refimpl.cli conform --backend golden.torch_adapter.torch_backend:TorchBackend

The backend's arrays are NumPy arrays (to_device/to_host are the identity): every kernel converts
its inputs to torch tensors, calls torch / transformers, and converts the result back, so the op
boundary is NumPy and the conformance suite sees exactly what the torch functions compute. The
adapter code here only reshapes and transposes between refimpl's layouts and HF's; the arithmetic
is the library's (F.gelu, F.silu, F.softmax, F.layer_norm, LlamaRMSNorm, apply_rotary_pos_emb,
ROPE_INIT_FUNCTIONS, eager_attention_forward + repeat_kv, TopK/TopP logits processors, torch.topk).
Where HF computes in float32 inside a float64 run (RMSNorm, RoPE inv_freq and angles, eager
softmax), the adapter does not patch it: those differences are what the peer check reports.
"""
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_oss import modeling_gpt_oss as hf_gpt_oss
from transformers.models.llama import modeling_llama as hf_llama
from transformers.models.llama.configuration_llama import LlamaConfig

from refimpl.backends.base import Backend, OpNotSupported

torch.set_num_threads(1)


def _t(a):
    """NumPy (or scalar) -> torch tensor, sharing memory where possible."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return torch.from_numpy(a.copy())
    return torch.from_numpy(np.ascontiguousarray(a))


def _n(t):
    return t.detach().cpu().numpy()


def _fdtype(*arrays):
    """refimpl's compute dtype rule: float64 if any float input is float64, else float32."""
    for a in arrays:
        if a is not None and np.asarray(a).dtype == np.float64:
            return torch.float64
    return torch.float32


def _decline(op, reason):
    raise OpNotSupported(op, "torch-hf", reason)


# ---------------------------------------------------------------- embeddings, linear, elementwise

def embedding(ids, weight):
    return _n(F.embedding(_t(ids).long(), _t(weight)))


def linear(x, weight, bias=None):
    dt = _fdtype(x, weight, bias)
    return _n(F.linear(_t(x).to(dt), _t(weight).to(dt), None if bias is None else _t(bias).to(dt)))


def add(x, y):
    return _n(torch.add(_t(x), _t(y)))


def scale(x, factor):
    xt = _t(x)
    return _n(xt * torch.tensor(factor, dtype=xt.dtype))


# ---------------------------------------------------------------- norms

def layer_norm(x, weight, bias, *, eps=1e-5):
    dt = _fdtype(x, weight, bias)
    x = _t(x).to(dt)
    return _n(F.layer_norm(x, x.shape[-1:], _t(weight).to(dt), None if bias is None else _t(bias).to(dt), eps))


def rms_norm(x, weight, *, eps=1e-5, cast_before_scale=False):
    # HF's LlamaRMSNorm: float32 statistics (also for float64 input), cast to the input dtype, times weight.
    xt, wt = _t(x), _t(weight)
    norm = hf_llama.LlamaRMSNorm(xt.shape[-1], eps=eps)
    norm.weight = torch.nn.Parameter(wt.clone(), requires_grad=False)
    with torch.no_grad():
        return _n(norm(xt))


# ---------------------------------------------------------------- activations and MLPs

def gelu_tanh(x, *, approximate="tanh"):
    return _n(F.gelu(_t(x), approximate="tanh" if approximate == "tanh" else "none"))


def silu(x):
    return _n(F.silu(_t(x)))


def swiglu(gate, up):
    dt = _fdtype(gate, up)
    return _n(F.silu(_t(gate).to(dt)) * _t(up).to(dt))


def swiglu_oss(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    # The gate/up split of HF GptOssExperts (gate_up[..., ::2], gate_up[..., 1::2]), torch clamps.
    ht = _t(h)
    if layout == "interleaved":
        gate, up = ht[..., ::2], ht[..., 1::2]
    else:
        i = ht.shape[-1] // 2
        gate, up = ht[..., :i], ht[..., i:]
    if limit is not None:
        gate = gate.clamp(min=None, max=limit)
        up = up.clamp(min=-limit, max=limit)
    glu = gate * torch.sigmoid(gate * alpha)
    return _n((up + 1) * glu)


def gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    dt = _fdtype(x, fc_weight, fc_bias, proj_weight, proj_bias)
    c = lambda a: None if a is None else _t(a).to(dt)  # noqa: E731
    h = F.gelu(F.linear(c(x), c(fc_weight), c(fc_bias)), approximate="tanh" if approximate == "tanh" else "none")
    return _n(F.linear(h, c(proj_weight), c(proj_bias)))


def swiglu_mlp(x, gate_weight, up_weight, down_weight):
    dt = _fdtype(x, gate_weight, up_weight, down_weight)
    xt = _t(x).to(dt)
    h = F.silu(F.linear(xt, _t(gate_weight).to(dt))) * F.linear(xt, _t(up_weight).to(dt))
    return _n(F.linear(h, _t(down_weight).to(dt)))


# ---------------------------------------------------------------- RoPE (HF's ROPE_INIT_FUNCTIONS)

def _rope_config(head_dim, base, **params):
    cfg = LlamaConfig(hidden_size=head_dim, num_attention_heads=1, num_key_value_heads=1, head_dim=head_dim,
                      max_position_embeddings=params.pop("max_position_embeddings", 4096))
    cfg.rope_parameters = dict(rope_theta=float(base), **params)
    return cfg


def inv_freq_default(head_dim, *, base=10000.0):
    cfg = _rope_config(head_dim, base, rope_type="default")
    inv, _ = hf_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
    return _n(inv.to(torch.float64))  # refimpl promises float64; HF built it in float32


def inv_freq_linear(head_dim, *, base, factor):
    inv, _ = ROPE_INIT_FUNCTIONS["linear"](_rope_config(head_dim, base, rope_type="linear", factor=float(factor)))
    return _n(inv.to(torch.float64))


def inv_freq_llama3(head_dim, *, base, factor, low_freq_factor, high_freq_factor,
                    original_max_position_embeddings):
    cfg = _rope_config(head_dim, base, rope_type="llama3", factor=float(factor),
                       low_freq_factor=float(low_freq_factor), high_freq_factor=float(high_freq_factor),
                       original_max_position_embeddings=int(original_max_position_embeddings))
    inv, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg)
    return _n(inv.to(torch.float64))


def inv_freq_yarn(head_dim, *, base, factor, beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=4096,
                  truncate=False, mscale=None, mscale_all_dim=None, attention_factor=None):
    params = dict(rope_type="yarn", factor=float(factor), beta_fast=float(beta_fast), beta_slow=float(beta_slow),
                  original_max_position_embeddings=int(original_max_position_embeddings), truncate=bool(truncate))
    for k, v in dict(mscale=mscale, mscale_all_dim=mscale_all_dim, attention_factor=attention_factor).items():
        if v is not None:
            params[k] = float(v)
    cfg = _rope_config(head_dim, base, max_position_embeddings=int(original_max_position_embeddings * factor),
                       **params)
    inv, scaling = ROPE_INIT_FUNCTIONS["yarn"](cfg)
    return _n(inv.to(torch.float64)), float(scaling)


def rope_cos_sin(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    # LlamaRotaryEmbedding.forward's arithmetic: inv_freq.float() @ position_ids.float(), cos/sin, * scaling,
    # all in float32 (autocast off), then cast to the table dtype. Half tables (refimpl: [.., T, D/2]).
    out_dt = _fdtype(inv_freq)
    inv = _t(inv_freq).float()
    pos = _t(positions).float()
    freqs = pos[..., :, None] * inv  # [.., T, D/2]
    cos, sin = freqs.cos() * attention_scaling, freqs.sin() * attention_scaling
    return _n(cos.to(out_dt)), _n(sin.to(out_dt))


def apply_rope(x, cos, sin, *, pairing="half", rotary_dim=None):
    if pairing != "half":
        _decline("apply_rope", "HF's rotate_half implements only the half pairing")
    dt = _fdtype(x, cos, sin)
    xt, c, s = _t(x).to(dt), _t(cos).to(dt), _t(sin).to(dt)
    r = xt.shape[-1] if rotary_dim is None else int(rotary_dim)
    c, s = torch.cat([c, c], dim=-1), torch.cat([s, s], dim=-1)  # HF's full-width tables
    rot, rest = xt[..., :r], xt[..., r:]
    q_embed, _ = hf_llama.apply_rotary_pos_emb(rot, rot, c, s, unsqueeze_dim=-2)  # [.., T, H, R] with [.., T, 1, R]
    return _n(torch.cat([q_embed, rest], dim=-1))


# ---------------------------------------------------------------- attention (HF eager)

def repeat_kv(k, n_rep):
    kt = _t(k)
    lead = kt.shape[:-3]
    k4 = kt.reshape((-1,) + tuple(kt.shape[-3:])).transpose(1, 2)  # [B, Hkv, T, D]
    out = hf_llama.repeat_kv(k4, int(n_rep)).transpose(1, 2)
    return _n(out.reshape(tuple(lead) + tuple(out.shape[1:])))


class _Module(torch.nn.Module):
    def __init__(self, groups, sinks=None):
        super().__init__()
        self.num_key_value_groups = groups
        self.sinks = sinks
        self.training = False


def _visibility(tq, tk, q_offset, window, causal):
    off = tk - tq if q_offset is None else int(q_offset)
    p = off + torch.arange(tq)[:, None]
    j = torch.arange(tk)[None, :]
    vis = torch.ones(tq, tk, dtype=torch.bool)
    if causal:
        vis &= j <= p
    if window is not None:
        vis &= j > p - int(window)
    return vis


def _eager(q, k, v, sinks, window, causal, q_offset, scale, mask):
    dt = _fdtype(q, k, v, sinks)
    qt, kt = _t(q).to(dt), _t(k).to(dt)
    vt = _t(v).to(dt) if v is not None else kt
    lead = tuple(qt.shape[:-3])
    tq, hq, d = qt.shape[-3:]
    tk, hkv = kt.shape[-3], kt.shape[-2]
    q4 = qt.reshape(-1, tq, hq, d).transpose(1, 2)
    b = q4.shape[0]
    k4 = kt.expand(lead + tuple(kt.shape[-3:])).reshape(b, tk, hkv, -1).transpose(1, 2)
    v4 = vt.expand(lead + tuple(vt.shape[-3:])).reshape(b, tk, hkv, -1).transpose(1, 2)
    vis = _visibility(tq, tk, q_offset, window, causal)[None, None]
    if mask is not None:
        m = _t(mask)
        m = m.expand(lead + (hq, tq, tk)).reshape(b, hq, tq, tk) if m.ndim > 0 else m
        vis = vis & m
    vis = vis.expand(b, hq, tq, tk)
    additive = torch.zeros(vis.shape, dtype=dt).masked_fill(~vis, torch.finfo(dt).min)  # HF's min-value mask
    sc = (1.0 / d ** 0.5) if scale is None else float(scale)
    with torch.no_grad():
        if sinks is None:
            out, probs = hf_llama.eager_attention_forward(_Module(hq // hkv), q4, k4, v4, additive, sc)
        else:
            out, probs = hf_gpt_oss.eager_attention_forward(_Module(hq // hkv, _t(sinks).to(dt)), q4, k4, v4,
                                                            additive, sc)
    return out.reshape(lead + tuple(out.shape[1:])), probs.reshape(lead + tuple(probs.shape[1:]))


def attention(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    out, _ = _eager(q, k, v, sinks, window, causal, q_offset, scale, mask)
    return _n(out)


def attention_probs(q, k, v=None, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    _, probs = _eager(q, k, v, sinks, window, causal, q_offset, scale, mask)
    return _n(probs)


def softmax_with_sinks(scores, sinks=None):
    # gpt-oss eager's sink handling: concatenate the sink logit, shift by the max, softmax, drop the sink.
    st = _t(scores)
    if sinks is None:
        return _n(F.softmax(st, dim=-1, dtype=torch.float32).to(st.dtype))
    dt = _fdtype(scores, sinks)
    st = st.to(dt)
    sk = _t(sinks).to(dt)
    sk = sk.reshape(sk.shape + (1, 1)).expand(st.shape[:-1] + (1,))
    comb = torch.cat([st, sk], dim=-1)
    comb = comb - comb.max(dim=-1, keepdim=True).values
    return _n(F.softmax(comb, dim=-1, dtype=comb.dtype)[..., :-1])


# ---------------------------------------------------------------- routers

def router_topk_softmax(logits, k):
    # HF GptOssTopKRouter: torch.topk on the logits, then softmax over the k selected.
    lt = _t(logits)
    vals, idx = torch.topk(lt, int(k), dim=-1, sorted=True)
    return _n(F.softmax(vals, dim=1 if vals.ndim == 2 else -1, dtype=vals.dtype)), _n(idx)


def router_softmax_topk(logits, k, *, renormalize=True):
    # HF Mixtral router: softmax (float) over all experts, torch.topk, renormalize.
    lt = _t(logits)
    probs = F.softmax(lt, dim=-1, dtype=torch.float).to(lt.dtype)
    vals, idx = torch.topk(probs, int(k), dim=-1)
    if renormalize:
        vals = vals / vals.sum(dim=-1, keepdim=True)
    return _n(vals), _n(idx)


# ---------------------------------------------------------------- MXFP4 (transformers.integrations.mxfp4)

def decode_mxfp4(blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
    # HF's own dequantizer: low nibble first, bias 127 (hard-coded there), float32/float64 outputs.
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    dt = np.dtype(dtype)
    if nibble_order != "low_first" or int(scale_bias) != 127 or dt not in (np.float32, np.float64):
        _decline("decode_mxfp4", "HF decodes only low_first nibbles, bias 127, into float32/float64 here")
    b, s = _t(blocks), _t(scales)
    lead, g = tuple(b.shape[:-2]), b.shape[-2]
    # HF expects [E, rows, G, 16] and returns [E, G * 32, rows]: give it E = 1 and undo its transpose.
    out = convert_moe_packed_tensors(b.reshape(1, -1, g, 16), s.reshape(1, -1, g),
                                     dtype=torch.float32 if dt == np.float32 else torch.float64)
    return _n(out.transpose(1, 2).reshape(lead + (g * 32,)))


# ---------------------------------------------------------------- sampling

def softmax(x, axis=-1):
    return _n(F.softmax(_t(x), dim=axis))


def log_softmax(x, axis=-1):
    return _n(F.log_softmax(_t(x), dim=axis))


def greedy(logits):
    return _n(torch.argmax(_t(logits), dim=-1))


def apply_temperature(logits, temperature):
    lt = _t(logits)
    return _n(lt / torch.tensor(float(temperature), dtype=lt.dtype))


def _warp(warper, logits):
    lt = _t(logits)
    flat = lt.reshape(-1, lt.shape[-1]).clone()
    return _n(warper(None, flat).reshape(lt.shape))


def top_k_filter(logits, k):
    return _warp(TopKLogitsWarper(top_k=int(k), min_tokens_to_keep=1), logits)


def top_p_filter(logits, p, *, min_keep=1):
    return _warp(TopPLogitsWarper(top_p=float(p), min_tokens_to_keep=int(min_keep)), logits)


class TorchBackend(Backend):
    name = "torch-hf"
    version = f"torch {torch.__version__} / transformers {transformers.__version__}"
    needs_gpu = False
    dtypes = ("float32", "float64")
    kernels = {
        "embedding": {"torch": embedding},
        "linear": {"torch": linear},
        "add": {"torch": add},
        "scale": {"torch": scale},
        "layer_norm": {"torch": layer_norm},
        "rms_norm": {"hf": rms_norm},
        "gelu": {"torch": gelu_tanh},
        "silu": {"torch": silu},
        "swiglu": {"torch": swiglu},
        "swiglu_oss": {"torch": swiglu_oss},
        "gelu_mlp": {"torch": gelu_mlp},
        "swiglu_mlp": {"torch": swiglu_mlp},
        "inv_freq_default": {"hf": inv_freq_default},
        "inv_freq_linear": {"hf": inv_freq_linear},
        "inv_freq_llama3": {"hf": inv_freq_llama3},
        "inv_freq_yarn": {"hf": inv_freq_yarn},
        "rope_cos_sin": {"hf": rope_cos_sin},
        "apply_rope": {"hf": apply_rope},
        "repeat_kv": {"hf": repeat_kv},
        "attention": {"hf_eager": attention},
        "attention_probs": {"hf_eager": attention_probs},
        "softmax_with_sinks": {"hf_gpt_oss": softmax_with_sinks},
        "router_topk_softmax": {"torch": router_topk_softmax},
        "router_softmax_topk": {"torch": router_softmax_topk},
        "decode_mxfp4": {"hf": decode_mxfp4},
        "softmax": {"torch": softmax},
        "log_softmax": {"torch": log_softmax},
        "greedy": {"torch": greedy},
        "apply_temperature": {"torch": apply_temperature},
        "top_k_filter": {"hf": top_k_filter},
        "top_p_filter": {"hf": top_p_filter},
    }

    def to_device(self, array):
        return np.asarray(array)

    def to_host(self, array):
        return np.asarray(array)
