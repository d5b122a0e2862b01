"""`bark bench`'s report as text lines: a header, a table per token count, the decode-step
floors and the roofline. Nothing here measures or prints."""

from __future__ import annotations

from typing import Any

from .results import STAGES, BenchReport, RunResult

GiB = 2**30


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.1f} ms"


def seconds_text(s: float) -> str:
    return f"{s:.2f} s" if s >= 0.1 else f"{s * 1000:.0f} ms"


def memory_text(run: RunResult) -> str:
    text = f"RSS {_gib(run.rss_peak_bytes)}"
    if run.rss_delta_bytes is not None:
        text += f" (+{run.rss_delta_bytes / GiB:.2f})"
    if run.cuda_peak_bytes is not None:
        text += f", CUDA {_gib(run.cuda_peak_bytes)}"
        if run.cuda_start_bytes is not None:
            text += f" (+{(run.cuda_peak_bytes - run.cuda_start_bytes) / GiB:.2f})"
    return text


def rate_text(run: RunResult, stage: str) -> str:
    r = run.rates()
    return {
        "semantic": f"{r['semantic_tokens_per_s']:.1f} tok/s",
        "coarse": f"{r['coarse_tokens_per_s']:.1f} tok/s",
        "fine": f"{r['fine_seconds_per_window']:.2f} s/window",
        "decode": f"RTF {r['decode_real_time_factor']:.3f}",
        "total": f"RTF {r['real_time_factor']:.2f}",
    }[stage]


def run_lines(run: RunResult, env: dict[str, Any]) -> list[str]:
    """One token count: a table of stages (seconds and rate), then the real-time factor, the
    in-run step, memory and CPU."""
    lines = ["", f"{run.semantic_tokens} semantic tokens x {run.batch_size}: {run.coarse_frames} coarse "
                 f"frames, {run.fine_frames} fine frames, {run.fine_windows} fine window(s), "
                 f"{run.audio_seconds:.2f} s of audio",
             f"  {'stage':<9}{run.implementation:>10}  {'rate':<16}"]
    lines += [f"  {stage:<9}{seconds_text(run.seconds[stage]):>10}  {rate_text(run, stage):<16}"
              for stage in (*STAGES, "total")]
    rates = run.rates()
    lines.append(f"  real-time factor (processing seconds per audio second): {rates['real_time_factor']:.3f} "
                 f"({rates['x_faster_than_real_time']:.2f}x faster than real time)")
    lines.append(f"  semantic step in run: {ms(run.semantic_step_seconds)}")
    lines.append(f"  peak memory: {run.implementation} {memory_text(run)}")
    if env["device"] == "cpu" and run.cpu_cores_used is not None:
        load = "-" if run.load_average is None else f"{run.load_average:.2f}"
        lines.append(f"  CPU cores used: {run.cpu_cores_used:.2f} of {env['torch_threads']} thread(s); "
                     f"load average {load}")
    return lines


def header_lines(report: BenchReport, title: str = "bark bench") -> list[str]:
    o, env, m = report.options, report.environment, report.model
    where = f"{env['torch_threads']} thread(s)" if env["device"] == "cpu" else env["device_name"]
    lines = [f"{title}: {m['config']} ({m['weights']} weights, {m['weights_bytes'] / GiB:.2f} GiB), "
             f"{env['device']} {m['dtype']}" + (f" + {m['quantize']} weights" if m["quantize"] else "")
             + (" + CUDA graphs" if m["cuda_graphs"] else "") + (" + offload" if m["offload"] else "")
             + f", {where}, batch {o.batch_size}",
              f"  {env['device_name']}; torch {env['torch']}"]
    if m.get("sdpa_backends"):
        kernels = m["sdpa_backends"]
        lines.append(f"  attention {m['attention']}: SDPA kernel {kernels['prefill']} for the prefill, "
                     f"{kernels['step']} for a decode step")
    if m.get("cpu_kernels"):
        k = m["cpu_kernels"]
        lines.append(f"  CPU products ({k['how']}): float32 one row {'oneDNN' if k['float32_onednn_row'] else 'default'}, "
                     f"many rows {'oneDNN' if k['float32_onednn_rows'] else 'default'}; bfloat16 one row "
                     f"{'PyTorch own' if k['bfloat16_native_row'] else 'default'}")
    if report.bandwidth:
        bw = report.bandwidth
        lines.append(f"  memory bandwidth: copy {bw.copy_bytes_per_s / 1e9:.1f} GB/s (bytes read), "
                     f"sum {bw.sum_bytes_per_s / 1e9:.1f} GB/s, matvec {bw.matvec_bytes_per_s / 1e9:.1f} GB/s; "
                     f"the strict floor uses {bw.strict_bytes_per_s / 1e9:.1f} GB/s")
    return lines


def floor_lines(report: BenchReport) -> list[str]:
    if not report.floors:
        return []
    m = report.model

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    lines = ["", f"decode step vs bandwidth floors (batch {report.options.batch_size}, {m['dtype']}"
                 + (f" + {m['quantize']}" if m["quantize"] else "") + "):",
             f"  {'stage':<9}{'weights read':>13}{'median':>9}{'best':>9}{'position':>10}"
             f"{'copy floor':>12}{'ratio':>8}{'strict floor':>14}{'ratio':>8}{'best':>8}{'+KV':>10}"]
    for f in report.floors:
        with_kv = (f.weight_bytes + f.kv_bytes) / f.strict_bytes_per_s
        lines.append(f"  {f.stage:<9}{f.weight_bytes / 1e6:>10.0f} MB{ms(f.measured_seconds):>9}"
                     f"{ms(f.best_seconds):>9}{f.position:>10}{ms(f.copy_floor_seconds):>12}{ratio(f.copy_ratio):>8}"
                     f"{ms(f.strict_floor_seconds):>14}{ratio(f.strict_ratio):>8}{ratio(f.best_strict_ratio):>8}"
                     f"{ms(with_kv):>10}")
    return lines


def roofline_lines(report: BenchReport) -> list[str]:
    """The GEMM peaks and, per token count, each GPT stage against the roofline."""
    if not report.peaks:
        return []
    m, k, n = report.peaks[0].shape
    lines = ["", f"roofline: GEMM peak ({m} x {k}) @ ({k} x {n}): "
             + ", ".join(f"{p.dtype} {p.flops_per_s / 1e9:.0f} GFLOP/s" for p in report.peaks)
             + (f"; bandwidth {report.bandwidth.strict_bytes_per_s / 1e9:.1f} GB/s (strict)"
                if report.bandwidth else "")]
    for run, stages in zip(report.results, report.rooflines):
        lines.append(f"  {run.semantic_tokens} tokens x {run.batch_size} (decode steps at the stage's middle "
                     "position, prefills left out):")
        lines.append(f"  {'stage':<9}{'GFLOP':>10}{'GB':>9}{'bound':>9}{'roof':>10}{'measured':>10}{'reached':>9}")
        for s in stages:
            lines.append(f"  {s.stage:<9}{s.flops / 1e9:>10.1f}{s.bytes / 1e9:>9.2f}{s.bound:>9}"
                         f"{seconds_text(s.roof_seconds):>10}{seconds_text(s.seconds):>10}{s.fraction:>8.0%}")
    return lines


def format_report(report: BenchReport) -> list[str]:
    """The report as text lines: a header, one table per token count, the decode-step floors."""
    lines = header_lines(report)
    for run in report.results:
        lines += run_lines(run, report.environment)
    lines += floor_lines(report)
    lines += roofline_lines(report)
    lines += [f"note: {note}" for note in report.notes]
    return [line.rstrip() for line in lines]
