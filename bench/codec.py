#!/usr/bin/env python
"""The codec's decode on the CPU: bark-cli's EncodecDecoder against transformers' EncodecModel.

    python bench/codec.py                    # 4 items of 2-4 s, facebook/encodec_24khz's shape
    python bench/codec.py --items 1 --seconds 3

Random weights at the real shape (24 kHz, 8 codebooks). Timed, interleaved, median of --repeats:
transformers decoding each item in turn; bark-cli decoding the items one by one and as one batch
(EncodecDecoder.decode_items); and the batch with the LSTM on PyTorch's own kernel instead of
oneDNN's (PyTorch's default).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bark_cli.config import CodecConfig
from bark_cli.models.codec import EncodecDecoder, codec_state_dict
from bark_cli.models.kernels import cpu_name

REAL = dict(
    sampling_rate=24_000, audio_channels=1, hidden_size=128, num_filters=32, num_residual_layers=1,
    upsampling_ratios=[8, 5, 4, 2], kernel_size=7, last_kernel_size=7, residual_kernel_size=3,
    dilation_growth_rate=2, use_causal_conv=True, pad_mode="reflect", compress=2, num_lstm_layers=2,
    trim_right_ratio=1.0, codebook_size=1024, codebook_dim=128, use_conv_shortcut=True,
    norm_type="weight_norm", target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="the longest item; others shorter")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import transformers

    torch.manual_seed(0)
    hf = transformers.EncodecModel(transformers.EncodecConfig(**REAL)).eval()
    ours = EncodecDecoder(CodecConfig.from_dict(REAL)).eval()
    ours.load_state_dict(codec_state_dict(hf.state_dict()), strict=True)
    frames = [max(1, int(75 * args.seconds * (1 - 0.15 * i))) for i in range(args.items)]
    gen = torch.Generator().manual_seed(1)
    items = [torch.randint(0, 1024, (8, n), generator=gen) for n in frames]

    def native_lstm():
        torch.backends.mkldnn.enabled = False
        try:
            return ours.decode_items(items)
        finally:
            torch.backends.mkldnn.enabled = True

    variants = {
        "transformers, item by item": lambda: [hf.decode(c[None, None], [None]).audio_values for c in items],
        "bark-cli, item by item": lambda: [ours.decode(c[None]) for c in items],
        "bark-cli, one batch": lambda: ours.decode_items(items),
        "bark-cli, one batch, no oneDNN": native_lstm,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for fn in variants.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    print(f"codec decode, {args.items} items of {frames} frames, {cpu_name()}, {torch.get_num_threads()} threads")
    for name, values in times.items():
        print(f"  {name:34} {statistics.median(values):7.3f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
