"""ModelConfig: every architectural fact a forward pass needs, in one record.

The forward pass in refimpl.model reads only this record and the weights; the
readers of HF config.json, OpenAI's original gpt-oss config.json and the presets
(refimpl.checkpoints.config_files) all produce it.
"""

import math
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError

ARCHS = ("gpt2", "llama", "mixtral", "gpt_oss")
MAX_LAYERS = 65536  # far above any released model (Llama 3.1 405B: 126); refuses 10^9-layer configs at once


@dataclass(frozen=True)
class ModelConfig:
    arch: str                      # gpt2 | llama (LLaMA 2/3, Mistral, Qwen2/3, SmolLM2) | mixtral | gpt_oss
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int         # dense MLP width, or each expert's width for MoE
    max_position_embeddings: int
    norm: str = "rms"              # "rms" | "layer"
    norm_eps: float = 1e-5
    norm_placement: str = "pre"    # "pre" | "post"
    activation: str = "swiglu"     # "gelu_tanh" | "gelu_erf" | "swiglu" | "swiglu_oss"
    position: str = "rope"         # "rope" | "learned"
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None   # {"rope_type": "linear"|"llama3"|"yarn", ...} as in HF, None = default
    rope_pairing: str = "half"     # "half" (i with i + d/2) | "interleaved" (2i with 2i+1)
    attention_bias: bool = False   # biases on q, k, v
    attention_out_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False          # Qwen3: RMSNorm over head_dim on q and k before RoPE
    sliding_window: int | None = None  # keys visible: i - window < j <= i
    layer_types: tuple = ()        # per layer "full_attention" | "sliding_attention"; empty = all full
    attention_sinks: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    router: str = "topk_softmax"   # "topk_softmax" (gpt-oss) | "softmax_topk" (Mixtral, renormalised)
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple = ()
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        def bad(fld, expected, found):
            raise ConfigError(f"{self.name or 'config'}: {fld}: expected {expected}, found {found!r}")

        if self.arch not in ARCHS:
            bad("arch", f"one of {ARCHS}", self.arch)
        for f in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                  "intermediate_size", "max_position_embeddings"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f, "an integer >= 1", v)
        for f, lo in (("norm_eps", "0"), ("rope_theta", "1"), ("swiglu_alpha", "0"), ("swiglu_limit", "0")):
            v = getattr(self, f)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (v <= 1 if lo == "1" else v < 0):
                bad(f, f"a finite number {'> 1' if lo == '1' else '>= 0'}", v)
        if self.num_layers > MAX_LAYERS:
            bad("num_layers", f"an integer in 1..{MAX_LAYERS}", self.num_layers)
        if self.num_heads % self.num_kv_heads:
            bad("num_kv_heads", f"a divisor of num_heads={self.num_heads}", self.num_kv_heads)
        if self.position == "rope" and self.head_dim % 2:
            bad("head_dim", "an even number (RoPE rotates pairs)", self.head_dim)
        if self.norm not in ("rms", "layer"):
            bad("norm", "'rms' or 'layer'", self.norm)
        if self.norm_placement not in ("pre", "post"):
            bad("norm_placement", "'pre' or 'post'", self.norm_placement)
        if self.activation not in ("gelu_tanh", "gelu_erf", "swiglu", "swiglu_oss"):
            bad("activation", "gelu_tanh | gelu_erf | swiglu | swiglu_oss", self.activation)
        if self.position not in ("rope", "learned"):
            bad("position", "'rope' or 'learned'", self.position)
        if self.rope_pairing not in ("half", "interleaved"):
            bad("rope_pairing", "'half' or 'interleaved'", self.rope_pairing)
        if self.sliding_window is not None and (not isinstance(self.sliding_window, int) or self.sliding_window < 1):
            bad("sliding_window", "an integer >= 1 or None", self.sliding_window)
        if self.layer_types:
            if len(self.layer_types) != self.num_layers:
                bad("layer_types", f"{self.num_layers} entries (num_layers)", len(self.layer_types))
            for t in self.layer_types:
                if t not in ("full_attention", "sliding_attention"):
                    bad("layer_types", "'full_attention' or 'sliding_attention' entries", t)
            if "sliding_attention" in self.layer_types and self.sliding_window is None:
                bad("sliding_window", "a window for the sliding_attention layers", None)
        if self.num_experts:
            if not (1 <= self.experts_per_token <= self.num_experts):
                bad("experts_per_token", f"1..num_experts={self.num_experts}", self.experts_per_token)
            if self.router not in ("topk_softmax", "softmax_topk"):
                bad("router", "'topk_softmax' or 'softmax_topk'", self.router)
        if self.arch in ("mixtral", "gpt_oss") and not self.num_experts:
            bad("num_experts", f">= 1 for arch {self.arch}", self.num_experts)

    def layer_window(self, layer):
        """The sliding window of layer `layer`, or None for full causal attention."""
        if self.layer_types:
            return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None
        return self.sliding_window

    def to_dict(self):
        return asdict(self)
