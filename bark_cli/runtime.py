"""Where and how the models run: device, precision, attention kernels, offload, CUDA graphs.

`Runtime.choose` is the one place these choices are checked; everything after it trusts them.

    runtime = Runtime.choose(DeviceOptions())   # CUDA + float16 on a GPU, else CPU + float32
    with runtime.attention_kernels(), runtime.on_device(model):
        ...
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import psutil
import torch

from .config import BarkConfig, DeviceOptions, GPTConfig
from .errors import DeviceError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Which SDPA kernels attention may use; None lets PyTorch choose among all of them ("sdpa").
# "auto" is PyTorch's choice less cuDNN on CUDA: cuDNN's attention builds an execution plan for
# every new sequence length, and a decode step's cache is one position longer each step, so
# each step would pay a plan build, many times the step's own work.
SDPA_BACKENDS = {
    "auto": None,
    "sdpa": None,
    "flash": [torch.nn.attention.SDPBackend.FLASH_ATTENTION],
    "math": [torch.nn.attention.SDPBackend.MATH],
}
CUDA_AUTO_BACKENDS = [torch.nn.attention.SDPBackend.FLASH_ATTENTION,
                      torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION, torch.nn.attention.SDPBackend.MATH]


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


def capability(device: torch.device) -> tuple[int, int]:
    """The CUDA device's compute capability, e.g. (8, 0) for an A100."""
    return torch.cuda.get_device_capability(device)


def native_bfloat16(device: torch.device) -> bool:
    """Whether the GPU computes in bfloat16 itself (sm80+). PyTorch's plain
    is_bf16_supported() also says yes where bfloat16 is emulated, many times slower."""
    if device.index is None or device.index == torch.cuda.current_device():
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a PyTorch before the argument
            pass
    return capability(device) >= (8, 0)


def pick_dtype(dtype: str, device: torch.device, quantize: str | None = None) -> torch.dtype:
    """`auto`: float16 on a GPU, float32 on the CPU, bfloat16 on the CPU for int8 weights
    (their products need reduced-precision activations)."""
    if dtype == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if quantize else torch.float32
    if dtype == "bfloat16" and device.type == "cuda" and not native_bfloat16(device):
        raise DeviceError("this GPU has no native bfloat16 (it needs compute capability 8.0 or later)",
                          "use --dtype float16")
    return DTYPES[dtype]


def check_attention(attention: str, device: torch.device, dtype: torch.dtype) -> str:
    if attention == "flash" and (device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16)):
        raise DeviceError(
            "flash attention needs a CUDA device with float16 or bfloat16",
            "use --attention sdpa, or --device cuda with --dtype float16",
        )
    if attention == "flash" and capability(device) < (8, 0):
        major, minor = capability(device)
        raise DeviceError(f"flash attention needs compute capability 8.0 or later; this GPU has {major}.{minor}",
                          "use --attention sdpa")
    return attention


# SDPBackend values as bark-cli names them (torch._fused_sdp_choice answers with the value).
BACKEND_NAMES = {-1: "none", 0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def sdpa_choice(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> str:
    """The kernel scaled_dot_product_attention dispatches these inputs to under the kernels
    allowed now (PyTorch's own choice function), or "unknown" where PyTorch cannot say."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    try:
        return BACKEND_NAMES.get(int(choose(query, key, key, mask, 0.0, causal)), "unknown")
    except RuntimeError:
        return "unknown"


def pick_cuda_graphs(cuda_graphs: bool | None, device: torch.device) -> bool:
    """None: graphs wherever the device is CUDA, since a replayed decode step launches its few
    hundred kernels at once (several times faster than eager on a GPU; docs/guide/performance.md)."""
    if cuda_graphs is None:
        return device.type == "cuda"
    if cuda_graphs and device.type != "cuda":
        raise DeviceError("CUDA graphs need a CUDA device", "leave out --cuda-graphs, or use --device cuda")
    return cuda_graphs


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
    def choose(cls, options: DeviceOptions | None = None) -> "Runtime":
        """Check every choice against this machine and each other. Raises DeviceError.
        `options.cuda_graphs` None: on where the device is CUDA (pick_cuda_graphs). The one place
        `options.threads` is applied: PyTorch's CPU thread count is the process's."""
        options = options if options is not None else DeviceOptions()
        chosen = pick_device(options.device)
        quantize = options.quantize
        if quantize and chosen.type == "cuda":
            # PyTorch's fused int8-weight product is a CPU (and MPS) kernel; on CUDA each linear
            # would dequantize its whole weight per call, slower than float16 weights, and the
            # unscaled int8 product can pass float16's range before the scales shrink it.
            raise DeviceError("int8 weights are a CPU path", "use --dtype float16 on a GPU")
        torch_dtype = pick_dtype(options.dtype, chosen, quantize)
        if quantize and torch_dtype == torch.float32:
            raise DeviceError("int8 weights need bfloat16 or float16 activations", "add --dtype bfloat16")
        check_attention(options.attention, chosen, torch_dtype)
        cuda_graphs = pick_cuda_graphs(options.cuda_graphs, chosen)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        # On the CPU the models already sit where they run: offload would only copy them.
        return cls(chosen, torch_dtype, options.attention, options.offload and chosen.type != "cpu", quantize,
                   cuda_graphs)

    def sdpa_backends(self, config: GPTConfig, batch_size: int = 1) -> dict[str, str]:
        """Which SDPA kernel a GPT stage's attention runs here, as PyTorch decides it for the
        stage's shapes under this runtime's choices: the prefill (causal), and the decode step
        (a sliced cache without a mask, or under CUDA graphs the bucketed cache with a mask)."""
        heads, dim = config.num_heads, config.hidden_size // config.num_heads
        # The attention runs in the KV cache's dtype (GPT.cache_dtype): float32 for bfloat16 on the CPU.
        dtype = torch.float32 if self.device.type == "cpu" and self.dtype == torch.bfloat16 else self.dtype
        length = min(512, config.block_size)

        def tensor(positions: int) -> torch.Tensor:
            return torch.zeros(batch_size, heads, positions, dim, dtype=dtype, device=self.device)

        mask = torch.ones(1, 1, 1, length, dtype=torch.bool, device=self.device) if self.cuda_graphs else None
        with self.attention_kernels():
            return {"prefill": sdpa_choice(tensor(257), tensor(257), None, True),
                    "step": sdpa_choice(tensor(1), tensor(length), mask, False)}

    @property
    def dtype_name(self) -> str:
        return next(name for name, value in DTYPES.items() if value == self.dtype)

    def sync(self) -> None:
        """Wait for the device's queued work, so that a wall-clock time covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def host_home(self, module: torch.nn.Module) -> "HostHome":
        """`module`'s tensors given their CPU home for offload: pinned on CUDA, so that uploads
        are asynchronous copies (see HostHome)."""
        return HostHome(module, pin=self.device.type == "cuda")

    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module, cpu_children: Iterable[str] = (),
                  home: "HostHome | None" = None) -> Iterator[torch.nn.Module]:
        """Run a stage with `module` on the device; with offload, send it back afterwards.

        Under offload `home` (Runtime.host_home, made once at load) holds the module's CPU
        copies: the stage uploads from them and ends by pointing the module back at them. The
        children named in `cpu_children` stay on the CPU: the semantic token table is 30% of
        suno/bark's semantic model, the stage's peak device memory drops by its size, and its
        prefill looks up there once; decode steps look up a device copy of the few rows they
        can feed (decoding.step_token_rows), so no step waits for the CPU, graphed or not.
        """
        if not self.offload:
            yield module
            return
        home = home if home is not None else HostHome(module, pin=False)
        home.upload(self.device, keep=set(cpu_children))
        try:
            yield module
        finally:
            # No empty_cache: the freed device blocks are the next stage's (and the next
            # batch's) to reuse, and giving them back to the driver would cost a sync.
            home.back()

    def attention_kernels(self) -> contextlib.AbstractContextManager:
        """The SDPA kernels attention may use while generating."""
        cuda_auto = self.attention == "auto" and self.device.type == "cuda"
        backends = CUDA_AUTO_BACKENDS if cuda_auto else SDPA_BACKENDS[self.attention]
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


class HostHome:
    """An offloaded module's tensors at home on the CPU.

    Made once at load: each parameter and buffer's CPU data, pinned on CUDA (page-locked
    memory is what lets a host-to-device copy run asynchronously). `upload` points each tensor
    at a device copy made with non_blocking=True: the copies queue on the stream ahead of the
    stage's kernels, and no step waits for the host. `back` points each tensor at its home again:
    nothing is copied or allocated (weights do not change while generating), and the device
    copy goes back to PyTorch's caching allocator, which lets no other stream reuse it before
    the work queued on it has run.
    """

    def __init__(self, module: torch.nn.Module, pin: bool = False):
        self.module = module
        # (the module's tensor, its CPU home, the top-level child it belongs to)
        self.tensors: list[tuple[torch.Tensor, torch.Tensor, str]] = []
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):  # shared tensors once
            if "kv_cache." in name:  # a decode step's own cache, not a weight
                continue
            home = tensor.data
            if home.device.type != "cpu":
                home = home.cpu()
            if pin and not home.is_pinned():
                home = home.pin_memory()
            tensor.data = home
            self.tensors.append((tensor, home, name.split(".")[0]))

    def upload(self, device: torch.device | str, keep: set[str] = frozenset()) -> None:
        """Point every tensor at a copy on `device`, except those of the children in `keep`."""
        for tensor, home, child in self.tensors:
            if child not in keep:
                tensor.data = home.to(device, non_blocking=True)

    def back(self) -> None:
        """Point every tensor at its CPU home again."""
        for tensor, home, _ in self.tensors:
            tensor.data = home
