"""A recording → a Bark voice (`VoicePrompt`): HuBERT features, the cloning quantizer, EnCodec.

    samples ─ mono ─ trim silence ─ keep the last KEEP_SECONDS ─┬─ 16 kHz ─ HuBERT (layer 9) ─ quantizer ─ semantic_prompt
                                                                 └─ 24 kHz ─ EnCodec encoder, 6 kbps ─ fine_prompt (8 rows)
                                                                                                        coarse_prompt (rows 0-1)

Both branches see the same stretch of audio, so the semantic tokens (≈50 per second) and the
codec frames (75 per second) cover the same time, as in a voice Bark saved itself. The end of a
long recording is kept because Bark continues from the end of its prompt: the next sentence
follows on from the last one in the recording.

The models come through the same Hub code as Bark's (cache, revision, offline, errors):
`facebook/hubert-base-ls960` (safetensors when the repository has them, else pytorch_model.bin,
read with weights_only), a quantizer `.pth` (`REPO:FILE` or a path), and the codec of the Bark
model given (its `codec_model.*` tensors only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .hub import DEFAULT_MODEL, resolve_model
from .hub import snapshot as hub_snapshot
from .weights import read_configs
from .config import GenerationConfig
from .errors import CheckpointError, InputError, OutputError, RecordingError
from .presets import VOICES_DIR_ENV, check_user_name, user_voices_dir
from .voice import VoicePrompt, save_voice, validate_voice

if TYPE_CHECKING:
    import torch

    from .models.codec_encoder import EncodecEncoder
    from .models.hubert import HubertFeatures
    from .models.semantic_quantizer import SemanticQuantizer

DEFAULT_HUBERT = "facebook/hubert-base-ls960"
DEFAULT_QUANTIZER = "GitMylo/bark-voice-cloning:quantifier_hubert_base_ls960_14.pth"
HUBERT_RATE = 16_000
MIN_SECONDS = 1.0  # of sound, after trimming: less gives HuBERT and the quantizer too little to go on
KEEP_SECONDS = 15.0  # the end kept of a longer recording; Bark conditions on its last ~7 s
# Silence: 20 ms windows more than 40 dB below the loudest; a recording whose loudest window is
# below -60 dBFS is silent as a whole.
WINDOW_S, RELATIVE_FLOOR_DB, SILENT_DBFS, MARGIN_S = 0.02, -40.0, -60.0, 0.1


# --- the audio --------------------------------------------------------------------------------


def to_mono(samples: np.ndarray, max_channels: int = 2) -> np.ndarray:
    """(frames,) or (frames, channels) → (frames,) float32, the channels averaged."""
    x = np.asarray(samples)
    if x.dtype.kind not in "fi" or x.ndim not in (1, 2):
        raise RecordingError(f"samples must be numbers in (frames,) or (frames, channels), got {x.dtype} {x.shape}",
                             "pass what soundfile.read returns")
    if x.dtype.kind == "i":  # integer PCM to [-1, 1)
        x = x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    if x.ndim == 2:
        if x.shape[1] > max_channels:
            raise RecordingError(f"the recording has {x.shape[1]} channels; voices are cloned from mono or stereo",
                                 "mix it down first, e.g. ffmpeg -i IN -ac 1 OUT.wav")
        x = x.mean(axis=1)
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        raise RecordingError("the recording holds NaN or infinite samples", "record or export it again")
    return x


def trim_silence(mono: np.ndarray, rate: int) -> np.ndarray:
    """`mono` without its leading and trailing silence (a 100 ms margin kept on each side)."""
    if mono.size == 0:
        raise RecordingError("the recording holds no audio", "give 4-15 s of one person speaking")
    window = max(1, int(rate * WINDOW_S))
    count = -(-mono.size // window)
    padded = np.zeros(count * window, dtype=np.float32)
    padded[: mono.size] = mono
    rms = np.sqrt(np.mean(padded.reshape(count, window).astype(np.float64) ** 2, axis=1))
    loudest = float(rms.max())
    if loudest < 10 ** (SILENT_DBFS / 20):
        raise RecordingError("the recording is silent", "check the microphone and give 4-15 s of speech")
    voiced = np.flatnonzero(rms >= loudest * 10 ** (RELATIVE_FLOOR_DB / 20))
    margin = int(rate * MARGIN_S)
    begin = max(0, int(voiced[0]) * window - margin)
    stop = min(mono.size, (int(voiced[-1]) + 1) * window + margin)
    return mono[begin:stop]


def prepare(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono, trimmed, at most KEEP_SECONDS (the end), at `sample_rate`; checks the length."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    mono = trim_silence(to_mono(samples), int(sample_rate))
    seconds = mono.size / sample_rate
    if seconds < MIN_SECONDS:
        raise RecordingError(f"the recording holds only {seconds:.2f} s of sound; at least {MIN_SECONDS:g} s is needed",
                             "give 4-15 s of one person speaking")
    return mono[-int(KEEP_SECONDS * sample_rate):]


def resample(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return mono
    import soxr

    return soxr.resample(mono, rate, target, quality="HQ").astype(np.float32, copy=False)


# --- the models -------------------------------------------------------------------------------


@dataclass
class Cloner:
    """The three models cloning needs, loaded once; `clone` may be called for many recordings."""

    hubert: HubertFeatures
    quantizer: SemanticQuantizer
    codec: EncodecEncoder
    generation: GenerationConfig

    def clone(self, samples: np.ndarray, sample_rate: int) -> VoicePrompt:
        """The voice of `samples` ((frames,) or (frames, channels)) at `sample_rate`."""
        return self.clone_prepared(prepare(samples, sample_rate), sample_rate)

    def clone_prepared(self, mono: np.ndarray, sample_rate: int) -> VoicePrompt:
        """The voice of what `prepare` returned (a caller may check a recording before loading)."""
        import torch

        speech16 = torch.from_numpy(resample(mono, sample_rate, HUBERT_RATE))
        if speech16.numel() < self.hubert.min_samples():
            raise RecordingError("the recording is too short for HuBERT", "give 4-15 s of one person speaking")
        speech24 = torch.from_numpy(resample(mono, sample_rate, self.codec.config.sampling_rate))
        features = self.hubert(speech16[None])[0]  # (frames, 768): ~50 per second
        semantic = self.quantizer(features)  # (frames,)
        codes = self.codec.encode(speech24[None])[0]  # (8, ceil(T / 320)): 75 per second
        fine = codes[: self.generation.n_fine_codebooks]
        arrays = {"semantic_prompt": semantic.numpy(),
                  "coarse_prompt": fine[: self.generation.n_coarse_codebooks].numpy(), "fine_prompt": fine.numpy()}
        return validate_voice(arrays, source="the cloned voice", config=self.generation)


def clone_voice(samples: np.ndarray, sample_rate: int, cloner: Cloner | None = None, **load: object) -> VoicePrompt:
    """Clone a voice from `samples` ((frames,) or (frames, channels), float or integer PCM) at
    `sample_rate`. Without `cloner`, the models are loaded with `load_cloner(**load)`."""
    return (cloner or load_cloner(**load)).clone(samples, sample_rate)


def load_cloner(model: str | os.PathLike = DEFAULT_MODEL, revision: str | None = None,
                hubert: str | os.PathLike = DEFAULT_HUBERT, quantizer: str | os.PathLike = DEFAULT_QUANTIZER,
                progress: Callable[[str], None] | None = None) -> Cloner:
    """Load HuBERT (a Hub id or a folder), the quantizer (`REPO:FILE` or a file) and the codec of the
    Bark `model` (a Hub id or a folder, at `revision`)."""
    from .models.codec_encoder import codebooks_for, load_encoder
    from .models.semantic_quantizer import read_quantizer

    quantizer_path = quantizer_file(quantizer, progress)
    semantic = read_quantizer(quantizer_path)
    hubert_model = load_hubert_model(hubert, progress)
    if semantic.config.input_size != hubert_model.config.hidden_size:
        raise CheckpointError(f"quantizer {quantizer_path.name} reads {semantic.config.input_size}-wide features, "
                              f"HuBERT gives {hubert_model.config.hidden_size}",
                              "pair a quantizer with the HuBERT it was trained on")
    folder = resolve_model(model, revision, progress)
    codec_config, codec_state, generation = read_codec(folder)
    if semantic.config.output_size > generation.semantic_vocab_size:
        raise CheckpointError(f"quantizer {quantizer_path.name} gives {semantic.config.output_size} ids, "
                              f"Bark reads {generation.semantic_vocab_size}", "use a quantizer made for Bark")
    if codebooks_for(codec_config, 6.0) < generation.n_fine_codebooks:
        raise CheckpointError("the codec gives too few codebooks at 6 kbps", "use a Bark model with EnCodec 24 kHz")
    return Cloner(hubert_model, semantic, load_encoder(codec_config, codec_state), generation)


def load_hubert_model(spec: str | os.PathLike, progress: Callable[[str], None] | None = None) -> HubertFeatures:
    from .weights import load_state_dict
    from .models.hubert import HubertConfig, load_hubert

    folder = Path(spec).expanduser()
    if not folder.is_dir():
        text = str(spec)
        if text.startswith((".", "~", os.sep)) or text.count("/") != 1:
            raise CheckpointError(f"HuBERT model {text} is neither a folder nor a Hub id",
                                  f"give a folder or a Hub id like {DEFAULT_HUBERT}")
        if progress:
            progress(f"fetching {text}")

        def weights(names: list[str]) -> list[str]:
            return ["model.safetensors"] if "model.safetensors" in names else ["pytorch_model.bin"]

        folder = hub_snapshot(text, None, ["config.json"], weights, what=f"HuBERT model {text}",
                              not_cached="is not in the local cache")
    try:
        config = HubertConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read HuBERT's config.json in {folder}: {exc}",
                              "point at a HuBERT model folder in the Hugging Face layout") from None
    return load_hubert(config, load_state_dict(folder), source=f"HuBERT in {folder}")


def quantizer_file(spec: str | os.PathLike, progress: Callable[[str], None] | None = None) -> Path:
    """A quantizer given as a file, or as `REPO:FILE` on the Hub (fetched into its cache)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    repo, colon, name = text.partition(":")
    if not colon or repo.count("/") != 1 or not name or text.startswith((".", "~", os.sep)):
        raise CheckpointError(f"quantizer {text} is neither a file nor REPO:FILE",
                              f"give a .pth file or a Hub file like {DEFAULT_QUANTIZER}")
    if progress:
        progress(f"fetching {text}")
    return hub_snapshot(repo, None, [name], what=f"quantizer {text}", not_cached="is not in the local cache") / name


def read_codec(folder: Path) -> tuple[object, dict[str, torch.Tensor], GenerationConfig]:
    """The codec config and `codec_model.*` tensors (prefix removed) of a Bark model folder, and
    its GenerationConfig. Only the codec's tensors are read from the weight files."""
    from . import suno

    if suno.is_suno_folder(folder):
        config, state = suno.read_codec(folder)
        return config, state, GenerationConfig()
    bark_config, generation = read_configs(folder)
    return bark_config.codec, _codec_tensors(folder), generation


def _codec_tensors(folder: Path) -> dict[str, torch.Tensor]:
    import torch

    from .weights import PREFIXES, weight_files

    prefix = PREFIXES["codec"]
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():
                        if key.startswith(prefix):
                            state[key[len(prefix):]] = handle.get_tensor(key)
            else:
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                state.update({k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)})
        except Exception as exc:  # corrupt or truncated files raise many different types
            raise CheckpointError(f"cannot read weights {path.name}: {exc}", "re-download the model") from None
    return state


# --- the user's voices folder -----------------------------------------------------------------


def voice_target(name: str, overwrite: bool = False) -> Path:
    """Where a cloned voice `name` goes in the user's voices folder; checked before any work."""
    target = user_voices_dir() / f"{check_user_name(name)}.npz"
    if target.exists() and not overwrite:
        raise InputError(f"you already have a voice named {name}",
                         "pass --overwrite to replace it, or pick another --name")
    return target


def store_voice(voice: VoicePrompt, target: Path) -> Path:
    """Write the voice atomically (a temporary file, then a rename)."""
    try:
        return save_voice(voice, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}",
                          f"check {VOICES_DIR_ENV} or the folder's permissions") from None
