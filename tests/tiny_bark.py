"""Tiny random Bark checkpoints in the exact Hugging Face Hub layout, written by transformers.

Real vocabulary sizes, tiny widths. The tokenizer files and voice prompts are generated here:
a vocabulary of bert-base-multilingual-cased's size and special ids, and random valid prompts
under every Suno preset name, so the tests need nothing from outside the checkout. The few
tests about the real vocabulary or Suno's real presets find those through `real_reference()`.

Weights are rescaled so that every greedy decision has a margin far above float error: with
transformers' default 0.02 init, argmax would be decided by rounding and parity would prove
nothing.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

# The reference data (real vocabulary, Hub configs, Suno's presets): BARK_SHARED names a copy
# (a machine the checkout travels to alone gets one carried inside an ignored folder), else
# shared/ beside the checkout.
SHARED = Path(os.environ.get("BARK_SHARED") or Path(__file__).resolve().parents[1].parent / "shared").resolve()
REAL_REASON = (f"needs the real bert-base-multilingual-cased vocabulary or Suno's presets: in {SHARED} "
               "(BARK_SHARED names another copy), or from the Hub with HF_HUB_OFFLINE=0")

TINY_WIDTH = dict(hidden_size=32, num_heads=2, num_layers=2, block_size=1024, bias=False)
TINY_CODEC = dict(hidden_size=32, num_filters=8, codebook_dim=32)


def shared_available() -> bool:
    return (SHARED / "reference" / "tokenizer" / "vocab.txt").is_file() and (
        SHARED / "reference" / "hf-configs" / "bark-small-generation_config.json"
    ).is_file()


@functools.lru_cache(maxsize=None)
def real_reference() -> Path | None:
    """A folder in the shared reference layout (tokenizer/vocab.txt and tokenizer.json;
    hf-configs/bark-tokenizer_config.json, bark-special_tokens_map.json,
    bark-speaker_embeddings_path.json; suno-prompts/ where available): $BARK_SHARED/reference,
    else ../shared/reference, else suno/bark-small's files from the Hub when downloads are on
    (tokenizer and voice map; no suno-prompts/). None when none of these works."""
    if shared_available():
        return SHARED / "reference"
    try:
        from huggingface_hub import constants, hf_hub_download

        if constants.is_offline_mode():
            return None
        files = {
            "tokenizer/vocab.txt": "vocab.txt", "tokenizer/tokenizer.json": "tokenizer.json",
            "hf-configs/bark-tokenizer_config.json": "tokenizer_config.json",
            "hf-configs/bark-special_tokens_map.json": "special_tokens_map.json",
            "hf-configs/bark-speaker_embeddings_path.json": "speaker_embeddings_path.json",
        }
        folder = Path(tempfile.mkdtemp(prefix="bark-reference-"))
        atexit.register(shutil.rmtree, folder, True)
        for rel, name in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).symlink_to(hf_hub_download("suno/bark-small", name, etag_timeout=5))
        return folder
    except Exception:  # no network, no such files: the tests that need them skip
        return None


# --- generated stand-ins for the reference data -------------------------------------------------

VOCAB_SIZE = 119_547  # bert-base-multilingual-cased, which Bark's text model reads
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}

# Words that make tokenized texts look like real ones; anything else falls back to word pieces.
_WORDS = """the of and to a in is it you that he was for on are with as I his they be at one have this from or
had by hot word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two has look
more day could go come did number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light kind off need
house picture try us again animal point mother world near build self earth father hello friend today story dog
cloud once upon never talk happy quick brown fox jumps lazy music sigh sighs singing speech everyone tomorrow
yes maybe done count Hello Once It The One Hi Bonjour Hola Привет мир""".split()
_SUFFIXES = ["s", "ed", "ing", "er", "ter", "ly", "est", "ness", "ment", "tion", "able", "al", "y", "en", "ish"]


def _characters() -> list[str]:
    """Every character the tests write: ASCII, Latin and Greek letters, Cyrillic, kana, Hangul,
    CJK ideographs, punctuation and a few symbols (♪)."""
    ranges = [(0x21, 0x7E), (0xA1, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x2010, 0x2027),
              (0x2030, 0x205E), (0x2190, 0x21FF), (0x2600, 0x26FF), (0x3000, 0x303F), (0x3041, 0x30FF),
              (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF01, 0xFF5E)]
    return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1) if chr(c).isprintable()]


# Word pieces of the texts the generation tests speak, at their ids in the real vocabulary: those
# tests then feed the tiny model the same ids with either vocabulary, so a generated one changes
# no outcome (reduced-precision agreement, for one, depends on the embedding rows a text picks).
PINNED = {
    "!": 106, ",": 117, ".": 119, "?": 136, "[": 164, "]": 166, "a": 169, "。": 1882, "世": 2087, "今": 2187,
    "你": 2262, "天": 3198, "好": 3240, "很": 3767, "气": 4853, "界": 5621, "，": 10064, "the": 10105, "##s": 10107,
    "to": 10114, "The": 10117, "##o": 10133, "was": 10134, "for": 10142, "at": 10160, "##d": 10162, "##k": 10174,
    "it": 10271, "are": 10301, "which": 10319, "##ed": 10336, "It": 10377, "so": 10380, "lo": 10406, "time": 10635,
    "made": 11019, "there": 11155, "One": 11340, "world": 11356, "Hall": 11763, "day": 11940, "small": 12474,
    "down": 12935, "you": 13028, "came": 13383, "every": 14234, "never": 14794, "How": 14962, "my": 15127,
    "upon": 15378, "dog": 17835, "bar": 18121, "today": 18745, "Hi": 20065, "friend": 20104, "Once": 23075,
    "lau": 27207, "##ked": 30511, "Hello": 31178, "talk": 31311, "##ghter": 45953, "##got": 47163,
    "surprise": 48886, "answer": 57085, "cloud": 78394, "##uder": 84009,
}


@functools.lru_cache(maxsize=None)
def make_vocab() -> tuple[str, ...]:
    """A WordPiece vocabulary of the real size with the real special ids: [PAD] 0, [unusedN]
    1-99, [UNK] [CLS] [SEP] [MASK] 100-103, then single characters and their '##' continuations,
    words with common endings, and synthetic pieces up to 119 547 entries; `PINNED` pieces at
    their real ids. Deterministic."""
    fixed = {**SPECIAL_IDS, **{f"[unused{i}]": i for i in range(1, 100)}, **PINNED}
    slots: list[str | None] = [None] * VOCAB_SIZE
    for token, index in fixed.items():
        slots[index] = token
    free = (i for i, token in enumerate(slots) if token is None)
    seen = set(fixed)

    def add(token: str) -> None:
        if token not in seen:
            seen.add(token)
            slots[next(free)] = token

    chars = _characters()
    for c in chars:
        add(c)
    for word in _WORDS:
        add(word)
        add(word.capitalize())
    for suffix in _SUFFIXES:
        add("##" + suffix)
    for c in chars:
        add("##" + c)
    rng = random.Random(0)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    while len(seen) < VOCAB_SIZE:
        piece = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(1, 4)))
        add(piece if rng.random() < 0.6 else "##" + piece)
    return tuple(slots)  # type: ignore[arg-type]


def write_tokenizer_files(folder: Path) -> None:
    """The Hub's tokenizer files, made here: vocab.txt, tokenizer.json (built by the tokenizers
    library with BERT's cased normaliser, as the Hub's), tokenizer_config.json, special_tokens_map.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    folder = Path(folder)
    vocab = make_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                           max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", SPECIAL_IDS["[CLS]"]), ("[SEP]", SPECIAL_IDS["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(SPECIAL_IDS))
    tokenizer.save(str(folder / "tokenizer.json"))
    specials = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
                "unk_token": "[UNK]"}
    config = {**specials, "clean_up_tokenization_spaces": True, "do_lower_case": False, "model_max_length": 512,
              "processor_class": "BarkProcessor", "strip_accents": None, "tokenize_chinese_chars": True,
              "tokenizer_class": "BertTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))


# Bark's generation constants as the Hub's generation_config.json holds them (bark-spec §1).
GENERATION_CONFIG = {
    "model_type": "bark", "sample_rate": 24_000, "codebook_size": 1024,
    "semantic_config": {
        "eos_token_id": 10_000, "max_input_semantic_length": 256, "max_new_tokens": 768, "do_sample": True,
        "renormalize_logits": True, "semantic_infer_token": 129_599, "semantic_pad_token": 10_000,
        "semantic_rate_hz": 49.9, "semantic_vocab_size": 10_000, "temperature": 0.7, "text_encoding_offset": 10_048,
        "text_pad_token": 129_595, "top_k": 50, "top_p": 1.0, "use_cache": True},
    "coarse_acoustics_config": {
        "coarse_infer_token": 12_050, "coarse_rate_hz": 75, "coarse_semantic_pad_token": 12_048, "do_sample": True,
        "max_coarse_history": 630, "max_coarse_input_length": 256, "n_coarse_codebooks": 2,
        "renormalize_logits": True, "sliding_window_len": 60, "temperature": 0.7, "top_k": 50, "top_p": 1.0,
        "use_cache": True},
    "fine_acoustics_config": {
        "do_sample": False, "max_fine_history_length": 512, "max_fine_input_length": 1024, "n_fine_codebooks": 8,
        "renormalize_logits": False, "temperature": 0.5, "top_k": 50, "top_p": 1.0, "use_cache": True},
}

# Suno's preset names (bark-spec §10.2), the ten v1 speakers without a language kept by Suno's
# prompt folder, and how real presets store their arrays.
LANGUAGES = "en de es fr hi it ja ko pl pt ru tr zh".split()
PRESET_NAMES = ["announcer"] + [f"{v}{lang}_speaker_{n}" for v in ("", "v2/") for lang in LANGUAGES for n in range(10)]
_DTYPES = (np.int64, np.int32, np.uint16)


def make_prompt(name: str) -> dict[str, np.ndarray]:
    """Random arrays of a valid voice, seeded by its name: S semantic ids and
    floor(S * 75 / 49.9) coarse and fine frames, as Suno's presets have."""
    rng = np.random.default_rng(list(name.encode()))
    semantic = int(rng.integers(60, 240))
    frames = math.floor(semantic * 75 / 49.9)
    dtype = _DTYPES[sum(name.encode()) % len(_DTYPES)]
    return {
        "semantic_prompt": rng.integers(0, 10_000, semantic).astype(dtype),
        "coarse_prompt": rng.integers(0, 1024, (2, frames)).astype(dtype),
        "fine_prompt": rng.integers(0, 1024, (8, frames)).astype(dtype),
    }


def write_prompt_folder(folder: Path) -> Path:
    """Generated presets laid out as Suno's prompt folder: NAME.npz and v2/NAME.npz."""
    for name in PRESET_NAMES + [f"speaker_{n}" for n in range(10)]:
        path = Path(folder) / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **make_prompt(name))
    return Path(folder)


def _stand_in_reference() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bark-tiny-reference-"))
    atexit.register(shutil.rmtree, folder, True)
    write_prompt_folder(folder / "suno-prompts")
    return folder


# The reference folder the tests read voice prompts from: the real one, else generated presets
# in its layout (suno-prompts/ only: tests of the real vocabulary ask `real_reference()`).
REFERENCE = SHARED / "reference" if shared_available() else _stand_in_reference()
REAL_PRESETS = shared_available()


def tiny_config(**width):
    from transformers import BarkConfig

    sub = {**TINY_WIDTH, **width}
    return BarkConfig(
        semantic_config=dict(sub, input_vocab_size=129_600, output_vocab_size=10_048),
        coarse_acoustics_config=dict(sub, input_vocab_size=12_096, output_vocab_size=12_096),
        fine_acoustics_config=dict(
            sub, input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8, n_codes_given=1
        ),
        codec_config=dict(TINY_CODEC),
    )


@torch.no_grad()
def _rescale(model, seed: int) -> None:
    """Give the GPT stages weights with decisive logits: unit-variance embeddings, 1/sqrt(fan_in)
    linears, non-trivial LayerNorm scales and biases."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.startswith("codec_model"):
            continue
        if "layernorm" in name and name.endswith("weight"):
            param.copy_(0.5 + torch.rand(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
        elif "embeds_layer" in name:
            # fine embeddings double as its heads (tied): a smaller scale keeps logits moderate
            scale = 0.5 if name.startswith("fine_acoustics.input_embeds_layers") else 1.0
            param.copy_(scale * torch.randn(param.shape, generator=gen))
        else:  # linear weights (out, in); lm heads get a larger gain for a wide logit spread
            gain = 1.5 if "lm_head" in name else 1.0
            param.copy_(gain * torch.randn(param.shape, generator=gen) / param.shape[1] ** 0.5)
    # The codec: random codebooks (buffers, zero at init) and weight-norm scales and biases
    # away from their init values, so the audio depends strongly on the codes.
    for name, buffer in model.named_buffers():
        if name.endswith("codebook.embed"):
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
    for name, param in model.codec_model.named_parameters():
        if name.endswith("original0"):
            param.mul_(1 + torch.rand(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    # transformers lets coarse codebook-1 steps reach ids 12048..12095, original Bark does not.
    # Make those rows half of a valid codebook-1 row, so neither rule's range decides a token.
    head = model.coarse_acoustics.lm_head.weight
    extra = head.shape[0] - 12_048
    head[12_048:] = 0.5 * head[11_024 : 11_024 + extra]


def build_tiny_model(seed: int = 0, **width):
    from transformers import BarkModel

    torch.manual_seed(seed)
    model = BarkModel(tiny_config(**width)).eval()
    _rescale(model, seed)
    return model


def write_speaker_embeddings(folder: Path) -> int:
    """Lay generated presets out as the Hub's speaker_embeddings/ folder and its JSON map (the
    files transformers' BarkProcessor reads), one under every Suno name. Returns their number."""
    mapping: dict[str, object] = {"repo_or_path": str(folder)}
    for name in PRESET_NAMES:
        entry = {}
        for key, array in make_prompt(name).items():
            rel = f"speaker_embeddings/{name}_{key}.npy"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / rel, array)
            entry[key] = rel
        mapping[name] = entry
    (folder / "speaker_embeddings_path.json").write_text(json.dumps(mapping))
    return len(PRESET_NAMES)


def write_tiny_checkpoint(folder: Path, seed: int = 0, speakers: bool = True, **width) -> Path:
    """A complete local model folder in the Hub layout (model.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(seed, **width)
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    write_tokenizer_files(folder)
    if speakers:
        write_speaker_embeddings(folder)
    return folder


def legacy_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict as the 2023 Hub `pytorch_model.bin` holds it: weight norm as
    weight_g/weight_v, tied fine heads stored under both names, causal-mask buffers included."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        out[key] = value.clone()
    return out
