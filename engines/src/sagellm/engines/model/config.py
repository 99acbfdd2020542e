"""Architecture hyper-parameters of a Llama-family decoder.

One dataclass covers SmolLM2, Llama 2/3, Qwen2/2.5 (q/k/v bias), Qwen3
(q/k norms), Mistral (a sliding window) and Gemma 2/3 (their own layer
shape, see gemma.py): they differ only in the values below.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.engines.model.rope_scaling import RopeScaling

GEMMA_ARCHITECTURES = ("gemma2", "gemma3")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None  # None: plain RoPE up to max_position_embeddings
    attention_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm of each head's q and k (over head_dim) before RoPE
    sliding_window: int | None = None  # each token attends to the last this-many positions (itself included)
    local_layers: tuple[int, ...] | None = None  # the layers that use the window; None: all of them (Mistral)
    local_rope_theta: float | None = None  # Gemma 3: RoPE base of the windowed layers (None: rope_theta)
    attention_scale: float | None = None  # Gemma: query_pre_attn_scalar ** -0.5 (None: head_dim ** -0.5)
    attn_logit_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap) before the softmax
    final_logit_softcap: float | None = None  # Gemma 2: the same on the output logits
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    name: str = ""

    @property
    def is_gemma(self) -> bool:
        """Gemma's layer shape: scaled embeddings, (1 + w) norms around both blocks, GeGLU."""
        return self.architecture in GEMMA_ARCHITECTURES

    def layer_window(self, layer: int) -> int | None:
        """The attention window of decoder layer ``layer`` (None: it attends to the whole context)."""
        if self.sliding_window is None or (self.local_layers is not None and layer not in self.local_layers):
            return None
        return self.sliding_window

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def num_parameters(self) -> int:
        """Parameter count (embeddings counted once when tied); used for MFU estimates."""
        attn = self.hidden_size * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden_size
        mlp = 3 * self.hidden_size * self.intermediate_size
        per_layer = attn + mlp + 2 * self.hidden_size
        embed = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embed + self.hidden_size
