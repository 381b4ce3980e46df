"""The VOSR backbone: a LightningDiT-style flow-matching transformer over VAE latents.

Every layer is in this file, top to bottom: norms, 2-D RoPE, time embedding, attention, SwiGLU,
the DiT block, the final layer, and ``VOSRDiT``. Parameter and buffer names follow the released
checkpoints exactly (``docs/vosr-reference.md``, "1. Backbone (a LightningDiT variant)" and "8. Checkpoint keys (per block i)"), so ``state_dict()`` loads them with
``strict=True``.

Shapes: B batch, C latent channels, H x W latent size, p patch size, h x w = H/p x W/p token
grid, T = h * w tokens, D hidden size, N semantic tokens, E semantic feature width.

Example:
    >>> import torch
    >>> from vosr import create_model
    >>> model = create_model("vosr-tiny").eval()
    >>> x = torch.randn(1, 8, 16, 16); t = torch.rand(1); sem = torch.randn(1, 20, 64)
    >>> model(x, t, sem).shape
    torch.Size([1, 4, 16, 16])
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vosr.config import ModelConfig, model_config

__all__ = ["VOSRDiT", "create_model", "RMSNorm", "rope_frequencies"]


#################################################################################
#                               Basic layers                                    #
#################################################################################


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, computed in float32 (bf16 sums lose precision)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x)
        return out * self.weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; shift/scale broadcast over tokens."""
    return x * (1 + scale) + shift


def rope_frequencies(
    head_dim: int, grid_hw: tuple[int, int], trained_grid: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of the 2-D axial RoPE (EVA "fast" form), each (h * w, head_dim).

    Half of head_dim rotates with the row index, half with the column index; within each half,
    head_dim/4 frequencies 1/theta^(k/(head_dim/2)), k = 0, 2, ..., each repeated for the pair
    (x_2i, x_2i+1). Positions are arange(n) / n * trained_grid per axis: the trained grid gets
    0..trained_grid-1, other sizes are interpolated into the trained range (what the official
    code does for square grids; applied per axis here so non-square grids work too).
    """
    half = head_dim // 2
    freqs = 1.0 / (theta ** (torch.arange(0, half, 2, dtype=torch.float32)[: half // 2] / half))
    h, w = grid_hw

    def axis(n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32) / n * trained_grid
        f = pos[:, None] * freqs[None, :]  # (n, half/2)
        return f.repeat_interleave(2, dim=-1)  # (n, half): pairs share a frequency

    rows, cols = axis(h), axis(w)
    table = torch.cat(
        [rows[:, None, :].expand(h, w, half), cols[None, :, :].expand(h, w, half)], dim=-1
    ).reshape(h * w, head_dim)
    # float32 throughout, as the released tables are built (bit-identical to their buffers)
    return table.float().cos(), table.float().sin()


class RotaryEmbedding2D(nn.Module):
    """2-D RoPE with the trained grid's tables as (persistent) checkpoint buffers."""

    def __init__(self, head_dim: int, grid: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.grid = grid
        cos, sin = rope_frequencies(head_dim, (grid, grid), grid)
        self.freqs_cos: torch.Tensor
        self.freqs_sin: torch.Tensor
        self.register_buffer("freqs_cos", cos)  # (grid**2, head_dim)
        self.register_buffer("freqs_sin", sin)
        self._cache: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, grid_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (h*w, head_dim): the stored buffers on the trained grid, else computed."""
        if grid_hw == (self.grid, self.grid):
            return self.freqs_cos, self.freqs_sin
        key = (*grid_hw, device)
        if key not in self._cache:
            cos, sin = rope_frequencies(self.head_dim, grid_hw, self.grid)
            self._cache[key] = (cos.to(device), sin.to(device))
        return self._cache[key]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (B, heads, T, head_dim) by the tables (T, head_dim)."""
        x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)  # (x_2i, x_2i+1) -> (-x_2i+1, x_2i)
        return (x.float() * cos + rotated * sin).type_as(x)


#################################################################################
#                      Embedding layers for time and patches                    #
#################################################################################


class TimestepEmbedder(nn.Module):
    """Scalar time in [0, 1] (fed raw, not x1000) -> (B, D) via a 256-d sinusoid and an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """(B,) -> (B, dim) laid out [cos | sin] (the DiT / GLIDE convention)."""
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.sinusoid(t, self.frequency_embedding_size)
        return self.mlp(emb.to(next(self.mlp.parameters()).dtype))


class PatchEmbed(nn.Module):
    """(B, 2C, H, W) -> (B, T, D) tokens, row-major, by a p x p stride-p convolution."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


#################################################################################
#                       Attention and feed-forward layers                       #
#################################################################################


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused qkv, RMSNorm qk-norm, 2-D RoPE, SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = RMSNorm(head_dim)
        self.k_norm = RMSNorm(head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = RotaryEmbedding2D.rotate(q, *rope), RotaryEmbedding2D.rotate(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, head_dim)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class CrossAttention(nn.Module):
    """Tokens (queries) attend to the projected semantic tokens; qk-norm, no RoPE."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.k_linear = nn.Linear(dim, dim)
        self.v_linear = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(head_dim)
        self.k_norm = RMSNorm(head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        N = cond.shape[1]
        heads, hd = self.num_heads, D // self.num_heads
        q = self.q_linear(x).reshape(B, T, heads, hd).transpose(1, 2)  # (B, heads, T, hd)
        k = self.k_linear(cond).reshape(B, N, heads, hd).transpose(1, 2)  # (B, heads, N, hd)
        v = self.v_linear(cond).reshape(B, N, heads, hd).transpose(1, 2)
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """``w3(silu(x1) * x2)`` with ``[x1, x2] = w12(x)``; all projections biased."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class SemanticProjector(nn.Module):
    """``mlp_ca``: E -> encdim_ratio*D -> D with tanh-GELU (keys fc1, fc2)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


#################################################################################
#                              DiT block and head                               #
#################################################################################


class DiTBlock(nn.Module):
    """Self-attention, cross-attention and SwiGLU with adaLN-single modulation.

    The block's ``scale_shift_table`` (6, D) is added to the shared modulation c0 (B, 6, D).
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, mlp_hidden)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        c0: torch.Tensor,
        cond: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        mod = self.scale_shift_table[None] + c0.reshape(c0.shape[0], 6, -1)  # (B, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)  # (B, 1, D)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        x = x + self.cross_attn(x, cond)  # no pre-norm and no gate, as released
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """Modulated RMSNorm (from c, not c0) and a projection to p*p*C values per token."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = RMSNorm(dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # (B, D) each
        return self.linear(modulate(self.norm_final(x), shift[:, None], scale[:, None]))


#################################################################################
#                                  The model                                    #
#################################################################################


class VOSRDiT(nn.Module):
    """The VOSR velocity network ``v = model(x, t, semantic, r=None)``.

    Args (forward):
        x: (B, 2C, H, W) latent, channel concat [c_str, z_t]; any H, W (padded to the patch
            grid by edge replication and cropped back).
        t: (B,) time in [0, 1] (1 = noise, 0 = data).
        semantic: (B, N, E) raw semantic tokens (DINOv2 block output), or zeros for the
            partial condition.
        r: (B,) second time of the one-step student (defaults to t, where the student equals
            the teacher); ignored by multi-step models.

    Returns:
        (B, C, H, W) velocity eps - x0.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        D, C, p = config.hidden_size, config.latent_channels, config.patch_size
        self.patch_size = p
        self.latent_channels = C
        self.grad_checkpointing = config.grad_checkpointing
        self.x_embedder = PatchEmbed(p, 2 * C, D)
        self.t_embedder = TimestepEmbedder(D)
        if config.one_step:
            self.r_embedder = TimestepEmbedder(D)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        self.feat_rope = RotaryEmbedding2D(config.head_dim, config.grid_size)
        self.layer_norm = nn.LayerNorm(config.semantic_dim, eps=1e-5)
        self.mlp_ca = SemanticProjector(config.semantic_dim, config.encdim_ratio * D, D)
        self.blocks = nn.ModuleList(
            [DiTBlock(D, config.num_heads, config.mlp_hidden) for _ in range(config.depth)]
        )
        self.final_layer = FinalLayer(D, p, C)
        self.initialize_weights()

    @property
    def one_step(self) -> bool:
        return hasattr(self, "r_embedder")

    def initialize_weights(self) -> None:
        """The released init (``docs/vosr-reference.md``, "1. Backbone (a LightningDiT variant)")."""
        if next(self.parameters()).is_meta:
            return  # shapes only (parameter counting); nothing to initialise

        # Xavier-uniform for every Linear, zero bias: the DiT default for transformer layers.
        def _basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic)
        # The patch conv is a Linear over flattened p*p*2C patches: initialise it as one.
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.x_embedder.proj.bias is not None:
            nn.init.zeros_(self.x_embedder.proj.bias)
        # Time embedders and the shared modulation start small, N(0, 0.02) as in DiT / PixArt.
        embedders = [self.t_embedder] + ([self.r_embedder] if self.one_step else [])
        for emb in embedders:
            nn.init.normal_(cast(nn.Linear, emb.mlp[0]).weight, std=0.02)
            nn.init.normal_(cast(nn.Linear, emb.mlp[2]).weight, std=0.02)
        nn.init.normal_(cast(nn.Linear, self.t_block[1]).weight, std=0.02)
        # Output head starts at zero so the untrained network predicts zero velocity.
        modulation = cast(nn.Linear, self.final_layer.adaLN_modulation[-1])
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        # (block scale_shift_tables keep their randn / sqrt(D) init; gates are not zeroed)

    def project_semantic(self, semantic: torch.Tensor) -> torch.Tensor:
        """(B, N, E) raw tokens -> (B, N, D) cross-attention keys/values source."""
        return self.mlp_ca(self.layer_norm(semantic))

    def condition_vector(self, t: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        """c = t_emb(t) [+ (t - r) r_emb(r) for the one-step student], (B, D)."""
        c = self.t_embedder(t)
        if self.one_step:
            r = t if r is None else r
            c = c + (t - r).to(c.dtype)[:, None] * self.r_embedder(r)
        return c

    def unpatchify(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, T, p*p*C) -> (B, C, h*p, w*p); each token reads as (p_row, p_col, C), C fastest."""
        p, C = self.patch_size, self.latent_channels
        h, w = hw
        x = x.reshape(x.shape[0], h, w, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], C, h * p, w * p)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        semantic: torch.Tensor,
        r: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, _, H, W = x.shape
        p = self.patch_size
        pad_h, pad_w = (-H) % p, (-W) % p
        if pad_h or pad_w:  # odd latent sizes: replicate the edge to a whole patch, crop after
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        hw = (x.shape[2] // p, x.shape[3] // p)
        t = t.reshape(-1).expand(B) if t.numel() == 1 else t
        if r is not None:
            r = r.reshape(-1).expand(B) if r.numel() == 1 else r
        rope = self.feat_rope.tables(hw, x.device)
        tokens = self.x_embedder(x)  # (B, T, D), T = h * w
        c = self.condition_vector(t, r)  # (B, D)
        c0 = self.t_block(c)  # (B, 6D), shared by all blocks
        cond = self.project_semantic(semantic.to(tokens.dtype))  # (B, N, D)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c0, cond, rope, use_reentrant=False)
            else:
                tokens = block(tokens, c0, cond, rope)  # (B, T, D)
        out = self.final_layer(tokens, c)  # (B, T, p*p*C)
        v = self.unpatchify(out, hw)  # (B, C, H', W')
        return v[:, :, :H, :W]


def create_model(name: str | ModelConfig = "vosr-0.5b", one_step: bool = False, **overrides) -> VOSRDiT:
    """Build a backbone by size name (``vosr-0.5b``, ``vosr-1.4b``, ``vosr-tiny``) or config.

    Args:
        name: a size from ``vosr.config.list_models()`` or a ``ModelConfig``.
        one_step: add the second-time embedder of the distilled one-step student.
        overrides: ModelConfig fields to change (unknown keys rejected).

    Build on the ``meta`` device (``with torch.device("meta"): create_model(...)``) to count
    parameters without allocating them.
    """
    if isinstance(name, ModelConfig):
        cfg = name.replace(one_step=one_step or name.one_step, **overrides)
    else:
        cfg = model_config(name, one_step=one_step, **overrides)
    return VOSRDiT(cfg)
