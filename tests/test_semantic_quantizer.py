"""The cloning quantizer: files in the published format (both versions, with and without `.info`),
tokens against the same layers built from torch.nn, and files that must be refused."""

from __future__ import annotations

import json
import pickle
import zipfile

import pytest
import torch

from bark_cli.errors import CheckpointError
from bark_cli.models.semantic_quantizer import QuantizerConfig, read_quantizer

from tiny_clone import write_quantizer


@pytest.mark.parametrize("info", [True, False], ids=["info", "no-info"])
@pytest.mark.parametrize("version", [0, 1])
def test_tokens_equal_the_reference_layers(tmp_path, version, info):
    path = tmp_path / "quantifier_tiny_14.pth"
    reference = write_quantizer(path, version=version, info=info, seed=version)
    with zipfile.ZipFile(path) as archive:
        assert ("quantifier_tiny_14/.info" in archive.namelist()) == info
    ours = read_quantizer(path)
    assert ours.config == QuantizerConfig(32, 24, 10_000, version)
    features = torch.randn(137, 32, generator=torch.Generator().manual_seed(7))
    want = reference.tokens(features)
    got = ours(features)
    assert got.dtype == torch.int64 and got.shape == (137,)
    assert torch.equal(got, want)
    assert len(set(got.tolist())) > 4  # not one token throughout: the comparison can fail


def test_the_published_default_sizes_read_without_info(tmp_path):
    """A file from before `.info` existed: version 0 at 768 → 1024 → 10 000."""
    path = tmp_path / "quantifier_hubert_base_ls960.pth"
    write_quantizer(path, input_size=768, hidden_size=1024, version=0, info=False)
    assert read_quantizer(path).config == QuantizerConfig()


class Payload:
    """Unpickling this runs `open(marker, "w")`: what a hostile file would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch-zip", "plain-pickle"])
def test_a_pickle_payload_is_refused_unrun(tmp_path, container):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    if container == "torch-zip":
        torch.save({"fc.weight": torch.zeros(2, 2), "x": Payload(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps({"fc.weight": Payload(str(marker))}))
    with pytest.raises(CheckpointError) as caught:
        read_quantizer(path)
    assert not marker.exists()
    if container == "torch-zip":
        assert "holds more than tensors and was not run" in caught.value.message
    else:
        assert "is not a torch zip file" in caught.value.message


def test_inconsistent_and_broken_files_are_refused(tmp_path):
    path = tmp_path / "q.pth"
    write_quantizer(path, version=1)
    lying = tmp_path / "lying.pth"
    write_quantizer(lying, version=0, info=False)
    with zipfile.ZipFile(lying, "a") as archive:
        archive.writestr("lying/.info", json.dumps({"input_size": 32, "hidden_size": 24, "output_size": 10_000,
                                                     "version": 1}))
    with pytest.raises(CheckpointError, match="says version=1"):
        read_quantizer(lying)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_quantizer(cut)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="is not a cloning quantizer"):
        read_quantizer(other)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch zip"):
        read_quantizer(text)
