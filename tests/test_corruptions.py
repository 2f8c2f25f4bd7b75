"""Corruptions: degree 0 is the identity, distance grows with degree, seeded."""

import pytest
import torch

from dptq.corruptions import CORRUPTIONS, corrupt


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    # smooth random images (a blurred checkerboard with noise): all corruptions act visibly
    base = torch.rand(6, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=32, mode="bilinear", align_corners=False)
    return (img * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_degree_zero_is_identity(name, batch):
    """Exactly: the corruption analysis evaluates degree 0 once per model for every corruption."""
    assert torch.equal(corrupt(name, batch, 0, seed=3), batch.float() / 255)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_distance_grows_with_degree(name, batch):
    clean = batch.float() / 255
    dist = [(corrupt(name, batch, d, seed=1) - clean).abs().mean().item() for d in range(6)]
    assert dist[0] < 1e-6 < dist[1]
    assert all(b >= a - 1e-3 for a, b in zip(dist, dist[1:])), dist
    assert dist[5] > dist[1]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_same_seed_same_batch(name, batch):
    a, b = corrupt(name, batch, 3, seed=7), corrupt(name, batch, 3, seed=7)
    assert torch.equal(a, b) and a.shape == batch.shape and a.dtype == torch.float32


def test_random_corruptions_depend_on_seed(batch):
    for name in ("noise", "erasing", "rotation", "shift"):
        assert not torch.equal(corrupt(name, batch, 3, seed=1), corrupt(name, batch, 3, seed=2)), (
            name
        )


def test_bad_arguments(batch):
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("fog", batch, 1)
    with pytest.raises(ValueError, match="degree"):
        corrupt("blur", batch, 6)


@pytest.mark.parametrize("size", [32, 33, 97])
def test_jpeg_gives_torchvisions_bytes_without_its_deprecated_codec(size):
    """The JPEG corruption goes through Pillow; while torchvision's (deprecated) tensor JPEG
    exists, both give the same images at every quality of the degree table, at sizes that are
    and are not multiples of the 8x8 blocks."""
    import warnings

    import torchvision.transforms.v2.functional as TF

    from dptq.corruptions import PARAMS, jpeg_round_trip

    if not hasattr(TF, "jpeg"):
        pytest.skip("torchvision no longer has its tensor JPEG: nothing left to compare with")
    g = torch.Generator().manual_seed(size)
    base = torch.rand(4, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=size, mode="bicubic").clamp(0, 1)
    img = (img * 255).round().to(torch.uint8)
    for quality in PARAMS["jpeg"][1:]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            reference = TF.jpeg(img, int(quality))
        assert torch.equal(jpeg_round_trip(img, int(quality)), reference), quality


def test_jpeg_takes_the_shapes_torchvisions_took():
    """One image, a grey batch, a batch of batches and an empty batch: as torchvision's JPEG."""
    import warnings

    import torchvision.transforms.v2.functional as TF

    from dptq.corruptions import jpeg_round_trip

    if not hasattr(TF, "jpeg"):
        pytest.skip("torchvision no longer has its tensor JPEG: nothing left to compare with")
    g = torch.Generator().manual_seed(5)
    for shape in [(3, 16, 16), (4, 1, 16, 16), (2, 2, 3, 16, 16)]:
        img = (torch.rand(shape, generator=g) * 255).to(torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            reference = TF.jpeg(img.reshape(-1, *shape[-3:]), 20).reshape(shape)
        assert torch.equal(jpeg_round_trip(img, 20), reference), shape
    assert jpeg_round_trip(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), 20).shape == (0, 3, 8, 8)
