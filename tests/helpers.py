"""Small models and assertions that the tests of several lectures share."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plumbing import side_effects
from plumbing.side_effects import hooks_left  # noqa: F401  (the tests import it from here)


class TinyCNN(nn.Module):
    """An in-place ReLU module used twice, a max pool, and a functional relu: 5 classes."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.relu(self.conv1(x)), 2)
        x = F.relu(self.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def tiny_cnn(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return TinyCNN().to(dtype).eval()


def linear_model(features: int, classes: int = 3, seed: int = 0) -> nn.Module:
    """f(x) = W x + b on flattened inputs, in float64 so the hand-derived answers are exact."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, classes)).double().eval()
    return model


def assert_no_side_effects(method, **kwargs) -> None:
    """Run `method` on good and bad targets on the tiny CNN; nothing of the caller's may change, errors included."""
    side_effects.assert_no_side_effects(method, tiny_cnn(), **kwargs)


def assert_target_errors(method, **kwargs) -> None:
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="0 to 4"):
        method(model, x, 5, **kwargs)
    with pytest.raises(ValueError, match="0 to 4"):
        method(model, x, torch.tensor([0, 9]), **kwargs)
    with pytest.raises(ValueError, match="exactly 2"):
        method(model, x, [0, 1, 2], **kwargs)


def assert_target_forms(method, **kwargs) -> None:
    """None, an int, a list and a tensor name the same classes the same way."""
    model, x = tiny_cnn(), torch.rand(2, 3, 8, 8)
    predicted = model(x).argmax(1)
    torch.manual_seed(0)
    by_none = method(model, x, None, **kwargs)
    torch.manual_seed(0)
    by_list = method(model, x, predicted.tolist(), **kwargs)
    torch.manual_seed(0)
    by_tensor = method(model, x, predicted, **kwargs)
    assert torch.allclose(by_none, by_list) and torch.allclose(by_none, by_tensor)
    torch.manual_seed(0)
    by_int = method(model, x, 3, **kwargs)
    torch.manual_seed(0)
    assert torch.allclose(by_int, method(model, x, [3, 3], **kwargs))


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """float32 agreement, with `atol` relative to the map's scale."""
    ours, theirs = ours.detach(), theirs.detach()
    scale = float(theirs.abs().max())
    worst = float((ours - theirs).abs().max()) / scale
    assert torch.allclose(ours, theirs, rtol=rtol, atol=atol * scale), worst


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x)


def assert_bad_flag(main, flags: list[str], tmp_path, capsys) -> None:
    """A bad value of a script's own flag: one line on stderr, exit status 2, nothing written."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--out-dir", str(out), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and flags[0] in err, err
    assert not out.exists()


class FunctionalNet(nn.Module):
    """ReLUs as function calls, which module hooks cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8 * 4, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(F.adaptive_avg_pool2d(x, 2).relu().flatten(1))


class ModuleNet(FunctionalNet):
    """The same network with nn.ReLU modules, one in place and used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 2).clamp(min=0).flatten(1))


def twins() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    functional = FunctionalNet().eval()
    modules = ModuleNet().eval()
    modules.load_state_dict(functional.state_dict())
    return functional, modules


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        self.conv(x)  # the hook has fired ...
        raise RuntimeError("boom")  # ... and then the forward pass fails


def png_header_only(width: int, height: int) -> bytes:
    """A PNG file of a few bytes that claims width x height grey pixels (for the decompression-bomb
    check, which PIL runs on the header, before decoding anything)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))
