"""Model shapes, Bark's constants and the sampling settings, in one place.

Field names follow the checkpoint's `config.json` and `generation_config.json` (bark-spec §1, §6,
§9.4) so that reading a file is a plain copy. Defaults are `suno/bark-small`'s files; a value a
file carries always wins over the default here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import fields
from .errors import DeviceError, InputError

Progress = Callable[[str, int, int], None]
"""`progress(stage, done, total)`: how the library reports a stage's steps (it never prints)."""

STAGES = ("semantic", "coarse", "fine")


# Bounds on what a config file may set: far above any Bark checkpoint, low enough that a typo
# (or a hostile file) fails at load with the key named instead of allocating without end.
MAX_VOCAB = 1 << 24
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_SAMPLE_RATE = 1_000_000


@dataclass
class GPTConfig:
    """A causal GPT: the semantic (text → semantic) or the coarse (semantic → 2 codebooks) stage."""

    block_size: int = 1024
    input_vocab_size: int = 129_600
    output_vocab_size: int = 10_048
    num_layers: int = 12
    num_heads: int = 12
    hidden_size: int = 768
    dropout: float = 0.0
    bias: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, section: str = "") -> "GPTConfig":
        return fields.from_dict(cls, data, section).validate(section)

    def validate(self, section: str = "") -> "GPTConfig":
        """Raise CheckpointError for sizes no model can be built with; return self."""
        for name, high in (("block_size", MAX_WIDTH), ("input_vocab_size", MAX_VOCAB),
                           ("output_vocab_size", MAX_VOCAB), ("num_layers", MAX_LAYERS),
                           ("num_heads", MAX_WIDTH), ("hidden_size", MAX_WIDTH)):
            fields.in_range(self, section, name, 1, high)
        fields.require(self.hidden_size % self.num_heads == 0, f"{section}hidden_size", self.hidden_size,
                 f"must be a multiple of num_heads ({self.num_heads})")
        fields.require(0 <= self.dropout < 1, f"{section}dropout", self.dropout, "must lie in [0, 1)")
        return self


@dataclass
class FineConfig(GPTConfig):
    """The non-causal fine stage: one embedding per codebook, one head per predicted codebook."""

    input_vocab_size: int = 1056
    output_vocab_size: int = 1056
    n_codes_total: int = 8
    n_codes_given: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, section: str = "") -> "FineConfig":
        return fields.from_dict(cls, data, section).validate(section)

    def validate(self, section: str = "") -> "FineConfig":
        super().validate(section)
        fields.in_range(self, section, "n_codes_total", 1, 64)
        fields.in_range(self, section, "n_codes_given", 1, self.n_codes_total)
        return self


@dataclass
class CodecConfig:
    """EnCodec 24 kHz, as `facebook/encodec_24khz`'s config.json names it (bark-spec §8.1)."""

    sampling_rate: int = 24_000
    audio_channels: int = 1
    hidden_size: int = 128
    num_filters: int = 32
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = field(default_factory=lambda: [8, 5, 4, 2])
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "reflect"
    compress: int = 2
    num_lstm_layers: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 1024
    codebook_dim: int | None = None  # None means hidden_size, as in EnCodec
    use_conv_shortcut: bool = True
    norm_type: str = "weight_norm"
    target_bandwidths: list[float] = field(default_factory=lambda: [1.5, 3.0, 6.0, 12.0, 24.0])

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, section: str = "") -> "CodecConfig":
        return fields.from_dict(cls, data, section).validate(section)

    def validate(self, section: str = "") -> "CodecConfig":
        """Raise CheckpointError for values no codec can be built with; return self."""
        for name, low, high in (("sampling_rate", 1, MAX_SAMPLE_RATE), ("audio_channels", 1, 64),
                                ("hidden_size", 1, MAX_WIDTH), ("num_filters", 1, MAX_WIDTH),
                                ("num_residual_layers", 0, 64), ("kernel_size", 1, 1024),
                                ("last_kernel_size", 1, 1024), ("residual_kernel_size", 1, 1024),
                                ("dilation_growth_rate", 1, 64), ("compress", 1, MAX_WIDTH),
                                ("num_lstm_layers", 0, 64), ("trim_right_ratio", 0, 1),
                                ("codebook_size", 2, MAX_VOCAB)):
            fields.in_range(self, section, name, low, high)
        fields.require(len(self.upsampling_ratios) <= 16 and all(1 <= r <= 64 for r in self.upsampling_ratios),
                 f"{section}upsampling_ratios", self.upsampling_ratios, "at most 16 ratios, each in 1..64")
        fields.require(all(0 < b <= 1e4 for b in self.target_bandwidths), f"{section}target_bandwidths",
                 self.target_bandwidths, "each must lie in (0, 10000] kbps")
        if self.codebook_dim is not None:
            fields.in_range(self, section, "codebook_dim", 1, MAX_WIDTH)
        fields.require(self.pad_mode in ("reflect", "constant", "replicate", "circular"), f"{section}pad_mode",
                 self.pad_mode, "must be reflect, constant, replicate or circular")
        fields.require(1 <= self.num_quantizers <= 1024, f"{section}target_bandwidths", self.target_bandwidths,
                 f"gives {self.num_quantizers} codebooks; 1..1024 can be built")
        return self

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame: the product of the upsampling ratios (320)."""
        hop = 1
        for ratio in self.upsampling_ratios:
            hop *= ratio
        return hop

    @property
    def frame_rate(self) -> int:
        return -(-self.sampling_rate // self.hop_length)  # ceil, as EnCodec computes it

    @property
    def num_quantizers(self) -> int:
        """Codebooks in the checkpoint: enough for the highest bandwidth (32 for 24 kHz)."""
        bits_per_codebook = self.codebook_size.bit_length() - 1
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * bits_per_codebook))


@dataclass
class BarkConfig:
    """The sub-model shapes of one checkpoint (its `config.json`)."""

    semantic: GPTConfig = field(default_factory=GPTConfig)
    coarse: GPTConfig = field(
        default_factory=lambda: GPTConfig(input_vocab_size=12_096, output_vocab_size=12_096)
    )
    fine: FineConfig = field(default_factory=FineConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BarkConfig":
        """Read a `config.json`. Wrong types and impossible sizes raise CheckpointError naming
        the key (e.g. `semantic_config.num_heads`)."""
        data = fields.object_at(data, "")
        return cls(
            semantic=GPTConfig.from_dict(data.get("semantic_config"), "semantic_config."),
            coarse=GPTConfig.from_dict(
                {"input_vocab_size": 12_096, "output_vocab_size": 12_096,
                 **fields.object_at(data.get("coarse_acoustics_config"), "coarse_acoustics_config.")},
                "coarse_acoustics_config.",
            ),
            fine=FineConfig.from_dict(data.get("fine_acoustics_config"), "fine_acoustics_config."),
            codec=CodecConfig.from_dict(data.get("codec_config"), "codec_config."),
        )


@dataclass
class GenerationConfig:
    """Bark's token layout constants and default sampling settings (bark-spec §1, §9.4).

    Constants come from `generation_config.json` where the file has them; the sampling
    defaults follow Suno's pipeline: temperatures 0.7 / 0.7 / 0.5 and `min_eos_p` 0.2 (the Hub
    file has no `min_eos_p`), top-k and top-p of the semantic and coarse stages from the file.
    """

    # shared
    sample_rate: int = 24_000
    codebook_size: int = 1024
    # stage 1: text -> semantic
    text_encoding_offset: int = 10_048
    text_pad_token: int = 129_595
    semantic_infer_token: int = 129_599
    semantic_pad_token: int = 10_000  # also the stage-1 EOS id (bark-spec §12.1)
    semantic_vocab_size: int = 10_000
    max_input_semantic_length: int = 256
    max_new_tokens: int = 768
    semantic_rate_hz: float = 49.9
    # stage 2: semantic -> coarse
    coarse_semantic_pad_token: int = 12_048
    coarse_infer_token: int = 12_050
    coarse_rate_hz: int = 75
    n_coarse_codebooks: int = 2
    max_coarse_history: int = 630
    max_coarse_input_length: int = 256
    sliding_window_len: int = 60
    # stage 3: coarse -> fine
    n_fine_codebooks: int = 8
    max_fine_history_length: int = 512
    max_fine_input_length: int = 1024
    # sampling defaults (0 temperature = greedy; None top-k/top-p = off)
    semantic_temperature: float = 0.7
    coarse_temperature: float = 0.7
    fine_temperature: float = 0.5
    semantic_top_k: int | None = 50
    semantic_top_p: float | None = 1.0
    coarse_top_k: int | None = 50
    coarse_top_p: float | None = 1.0
    # Neither Suno nor transformers filters the fine stage; a caller may still ask for it.
    fine_top_k: int | None = None
    fine_top_p: float | None = None
    min_eos_p: float = 0.2

    @property
    def semantic_eos_token(self) -> int:
        return self.semantic_pad_token

    @property
    def semantic_to_coarse_ratio(self) -> float:
        """Flattened coarse tokens per semantic token: 75 / 49.9 * 2 = 3.006…"""
        return self.coarse_rate_hz / self.semantic_rate_hz * self.n_coarse_codebooks

    @property
    def max_semantic_history(self) -> int:
        """Semantic tokens of history the coarse stage keeps: floor(630 / 3.006) = 209."""
        return int(self.max_coarse_history / self.semantic_to_coarse_ratio)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "GenerationConfig":
        """Read a Hub `generation_config.json` (sections `semantic_config`,
        `coarse_acoustics_config`, `fine_acoustics_config`)."""
        data = fields.object_at(data, "")
        semantic = fields.object_at(data.get("semantic_config"), "semantic_config.")
        coarse = fields.object_at(data.get("coarse_acoustics_config"), "coarse_acoustics_config.")
        fine = fields.object_at(data.get("fine_acoustics_config"), "fine_acoustics_config.")
        flat: dict[str, Any] = {}
        for section in (fine, coarse, semantic):  # semantic last: its max_new_tokens is the one
            flat.update({k: v for k, v in section.items() if v is not None})
        for key in ("sample_rate", "codebook_size"):
            if key in data:
                flat[key] = data[key]
        if semantic.get("eos_token_id") is not None:
            flat["semantic_pad_token"] = semantic["eos_token_id"]
        # Per-stage sampling fields share names across sections; prefix them by stage.
        for prefix, section in (("semantic", semantic), ("coarse", coarse)):
            for key in ("temperature", "top_k", "top_p"):
                flat.pop(key, None)
                if section.get(key) is not None:
                    flat[f"{prefix}_{key}"] = section[key]
        if fine.get("temperature") is not None:
            flat["fine_temperature"] = fine["temperature"]
        if semantic.get("min_eos_p") is not None:
            flat["min_eos_p"] = semantic["min_eos_p"]
        return fields.from_dict(cls, flat).validate()

    def validate(self) -> "GenerationConfig":
        """Raise CheckpointError for constants generation cannot run with; return self."""
        for name, low, high in (
            ("sample_rate", 1, MAX_SAMPLE_RATE), ("codebook_size", 1, MAX_VOCAB),
            ("text_encoding_offset", 0, MAX_VOCAB), ("text_pad_token", 0, MAX_VOCAB),
            ("semantic_infer_token", 0, MAX_VOCAB), ("semantic_pad_token", 0, MAX_VOCAB),
            ("semantic_vocab_size", 1, MAX_VOCAB), ("max_input_semantic_length", 1, MAX_WIDTH),
            ("max_new_tokens", 1, MAX_WIDTH), ("semantic_rate_hz", 1e-3, 1e4),
            ("coarse_semantic_pad_token", 0, MAX_VOCAB), ("coarse_infer_token", 0, MAX_VOCAB),
            ("coarse_rate_hz", 1, 10_000), ("n_coarse_codebooks", 1, 64),
            ("max_coarse_history", 1, MAX_WIDTH), ("max_coarse_input_length", 1, MAX_WIDTH),
            ("sliding_window_len", 1, MAX_WIDTH), ("n_fine_codebooks", self.n_coarse_codebooks, 64),
            ("max_fine_history_length", 1, MAX_WIDTH), ("max_fine_input_length", 2, MAX_WIDTH),
            ("semantic_temperature", 0, 100), ("coarse_temperature", 0, 100), ("fine_temperature", 0, 100),
            ("min_eos_p", 0, 1),
        ):
            fields.in_range(self, "", name, low, high)
        fields.require(self.max_fine_history_length < self.max_fine_input_length, "max_fine_history_length",
                 self.max_fine_history_length, f"must be below max_fine_input_length ({self.max_fine_input_length})")
        for stage in STAGES:
            top_k, top_p = getattr(self, f"{stage}_top_k"), getattr(self, f"{stage}_top_p")
            fields.require(top_k is None or top_k >= 1, f"{stage}_top_k", top_k, "must be 1 or more")
            fields.require(top_p is None or 0 < top_p <= 1, f"{stage}_top_p", top_p, "must lie in (0, 1]")
        return self


@dataclass(frozen=True)
class Sampling:
    """How one stage picks tokens. Temperature 0 means greedy (argmax); top-k/top-p None = off."""

    temperature: float
    top_k: int | None = None
    top_p: float | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(frozen=True)
class SamplingOptions:
    """Every sampling knob a caller may set, as one value; None leaves the model's default.

    A stage's own temperature wins over `temperature`; `top_k` and `top_p` apply to every stage.
    `min_eos_p` 0 turns off the early stop on EOS probability. Checked when built.
    """

    temperature: float | None = None
    semantic_temperature: float | None = None
    coarse_temperature: float | None = None
    fine_temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_eos_p: float | None = None
    max_semantic_tokens: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "SamplingOptions":
        """Raise InputError for a value no stage can use; return self."""
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top-k {self.top_k} is below 1", "use a positive top-k")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top-p {self.top_p} is outside (0, 1]", "use a top-p in (0, 1]")
        temperatures = [self.temperature] + [getattr(self, f"{stage}_temperature") for stage in STAGES]
        for value in temperatures:
            _check_temperature(value)
        if self.min_eos_p is not None and not 0 <= self.min_eos_p <= 1:
            raise InputError(f"min-eos-p {self.min_eos_p} is outside [0, 1]", "use a probability, 0 to turn it off")
        if self.max_semantic_tokens is not None and self.max_semantic_tokens < 1:
            raise InputError(f"max semantic tokens {self.max_semantic_tokens} is below 1", "use a positive count")
        return self

    def stages(self, gen: GenerationConfig) -> dict[str, Sampling]:
        """Each stage's Sampling: the value given here, else the model's `{stage}_...` default."""
        result = {}
        for stage in STAGES:
            temperature = _first(getattr(self, f"{stage}_temperature"), self.temperature,
                                 getattr(gen, f"{stage}_temperature"))
            result[stage] = Sampling(temperature,
                                     _first(self.top_k, getattr(gen, f"{stage}_top_k")),
                                     _first(self.top_p, getattr(gen, f"{stage}_top_p")))
        return result

    def min_eos_p_for(self, gen: GenerationConfig) -> float:
        return _first(self.min_eos_p, gen.min_eos_p)

    def max_tokens_for(self, gen: GenerationConfig) -> int:
        return _first(self.max_semantic_tokens, gen.max_new_tokens)


def _first(*values):
    """The first value that is not None (None if all are)."""
    return next((value for value in values if value is not None), None)


def _check_temperature(value: float | None) -> float | None:
    if value is not None and value < 0:
        raise InputError(f"temperature {value} is negative", "use 0 for greedy or a positive value")
    return value


# The names DeviceOptions takes; whether this machine can run them is Runtime.choose's question.
DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16")
ATTENTION_NAMES = ("auto", "sdpa", "flash", "math")
QUANTIZE_NAMES = (None, "int8")


@dataclass(frozen=True)
class DeviceOptions:
    """Where and how the model runs, as one value: `Bark.load` and `Runtime.choose` take it, and
    `threads` (PyTorch's CPU threads; None leaves PyTorch's choice) is applied by Runtime.choose.

    The names are checked when built (DeviceError); Runtime.choose checks them against the machine.
    """

    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    attention: str = "auto"
    quantize: str | None = None
    cuda_graphs: bool | None = None  # None: on where the device is CUDA
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise DeviceError(f"unknown device {self.device!r}", "use auto, cpu, cuda, cuda:N or mps")
        if self.dtype not in DTYPE_NAMES:
            raise DeviceError(f"unknown dtype {self.dtype!r}", "use auto, float32, float16 or bfloat16")
        if self.attention not in ATTENTION_NAMES:
            raise DeviceError(f"unknown attention backend {self.attention!r}", "use auto, sdpa, flash or math")
        if self.quantize not in QUANTIZE_NAMES:
            raise DeviceError(f"unknown quantization {self.quantize!r}", "use int8, or leave it out")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise InputError(f"threads {self.threads} is below 1", "use a positive thread count")
