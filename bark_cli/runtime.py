"""Where and how the models run: device, precision, attention kernels, offload, CUDA graphs.

`Runtime.choose` is the one place these choices are checked; everything after it trusts them.

    runtime = Runtime.choose(device="auto", dtype="auto")   # CUDA + float16 on a GPU, else CPU + float32
    with runtime.attention_kernels(), runtime.on_device(model):
        ...
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import psutil
import torch

from .config import BarkConfig
from .errors import DeviceError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZATIONS = (None, "int8")
# Which SDPA kernels attention may use; None lets PyTorch choose (bark-cli's "auto").
SDPA_BACKENDS = {
    "auto": None,
    "sdpa": None,
    "flash": [torch.nn.attention.SDPBackend.FLASH_ATTENTION],
    "math": [torch.nn.attention.SDPBackend.MATH],
}


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA where there is a GPU, else the CPU. Anything named must exist here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA is not available on this machine", "use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"there is no {device}", f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("MPS is not available on this machine", "use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {device!r}", "use auto, cpu, cuda, cuda:N or mps")
    return chosen


def pick_dtype(dtype: str, device: torch.device, quantize: str | None = None) -> torch.dtype:
    """`auto`: float16 on a GPU, float32 on the CPU, bfloat16 on the CPU for int8 weights
    (their products need reduced-precision activations)."""
    if dtype == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if quantize else torch.float32
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}", "use auto, float32, float16 or bfloat16")
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU cannot run bfloat16", "use --dtype float16")
    return DTYPES[dtype]


def check_attention(attention: str, device: torch.device, dtype: torch.dtype) -> str:
    if attention not in SDPA_BACKENDS:
        raise DeviceError(f"unknown attention backend {attention!r}", "use auto, sdpa, flash or math")
    if attention == "flash" and (device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16)):
        raise DeviceError(
            "flash attention needs a CUDA device with float16 or bfloat16",
            "use --attention sdpa, or --device cuda with --dtype float16",
        )
    return attention


@dataclass(frozen=True)
class Runtime:
    """Checked choices of where and how the models run. Build it with `choose`."""

    device: torch.device
    dtype: torch.dtype
    attention: str = "auto"
    offload: bool = False  # sub-models wait on the CPU and visit the device for their stage
    quantize: str | None = None
    cuda_graphs: bool = False  # decode steps replayed as captured CUDA graphs

    @classmethod
    def choose(cls, device: str = "auto", dtype: str = "auto", attention: str = "auto", offload: bool = False,
               quantize: str | None = None, cuda_graphs: bool = False) -> "Runtime":
        """Check every choice against this machine and each other. Raises DeviceError."""
        chosen = pick_device(device)
        if quantize not in QUANTIZATIONS:
            raise DeviceError(f"unknown quantization {quantize!r}", "use int8, or leave it out")
        torch_dtype = pick_dtype(dtype, chosen, quantize)
        if quantize and torch_dtype == torch.float32:
            raise DeviceError("int8 weights need bfloat16 or float16 activations", "add --dtype bfloat16")
        check_attention(attention, chosen, torch_dtype)
        if cuda_graphs and chosen.type != "cuda":
            raise DeviceError("CUDA graphs need a CUDA device", "leave out --cuda-graphs, or use --device cuda")
        # On the CPU the models already sit where they run: offload would only copy them.
        return cls(chosen, torch_dtype, attention, offload and chosen.type != "cpu", quantize, cuda_graphs)

    @property
    def dtype_name(self) -> str:
        return next(name for name, value in DTYPES.items() if value == self.dtype)

    def sync(self) -> None:
        """Wait for the device's queued work, so that a wall-clock time covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module, cpu_children: Iterable[str] = ()) -> Iterator[torch.nn.Module]:
        """Run a stage with `module` on the device; with offload, send it back afterwards.

        Under offload the children named in `cpu_children` stay on the CPU: a token table that a
        step reads one row of (the semantic one is 30% of suno/bark's semantic model) costs little
        there, and the stage's peak device memory drops by its size. Not with CUDA graphs, which
        cannot capture the copy to the CPU.
        """
        keep = set(cpu_children) if not self.cuda_graphs else set()
        if self.offload and keep:
            for name, child in module.named_children():  # a GPT's tensors all sit in children
                if name not in keep:
                    child.to(self.device)
        elif self.offload:
            module.to(self.device)
        try:
            yield module
        finally:
            if self.offload:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def attention_kernels(self) -> contextlib.AbstractContextManager:
        """The SDPA kernels attention may use while generating."""
        backends = SDPA_BACKENDS[self.attention]
        if backends is None:
            return contextlib.nullcontext()
        if self.cuda_graphs and self.attention == "flash":
            # A graphed decode step attends under a mask, which the flash kernel cannot take;
            # prefills keep flash (SDPA tries the kernels in its own order, flash first).
            backends = [*backends, torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION]
        return torch.nn.attention.sdpa_kernel(backends)

    def free_memory(self) -> int:
        """Bytes the device can still give: the GPU's free memory, else what the OS can give
        without swapping."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return free
        return psutil.virtual_memory().available

    def auto_batch_size(self, config: BarkConfig, limit: int = 16) -> int:
        """How many items fit in one batch: each holds a KV cache of block_size positions and a
        fine window's activations; use at most half of the free memory."""
        width = max(config.semantic.hidden_size, config.coarse.hidden_size, config.fine.hidden_size)
        layers = max(config.semantic.num_layers, config.coarse.num_layers)
        positions = config.semantic.block_size
        element = torch.finfo(self.dtype).bits // 8
        per_item = 2 * layers * positions * width * element  # keys and values
        per_item += positions * (16 * width + 2 * config.fine.num_heads * positions) * 4  # fine activations
        return max(1, min(limit, int(self.free_memory() * 0.5 // per_item)))
