"""Input corruptions by degree (Sect. 4.3, Fig. 4), applied to whole batches on the model's device.

Every corruption takes a uint8 batch ``[B, 3, H, W]``, a degree 0..5 and a ``torch.Generator`` and
returns a float batch in image units ([0, 1]; "shift" may leave that range), which
:func:`dptq.data.normalize`-style standardisation then maps to the model's input. Degree 0 is the
identity; larger degrees are stronger. The same generator seed gives the same corrupted batch.
Operations are torchvision.transforms.v2 functional ops on tensors (JPEG through Pillow's codec);
per-image random choices (rotation sign, erased rectangle) are vectorised by hand where the
functional op takes one parameter per call.

Degree -> parameter (index = degree):

| corruption | parameter | 0 | 1 | 2 | 3 | 4 | 5 |
|---|---|---|---|---|---|---|---|
| jpeg | quality | - | 60 | 35 | 20 | 12 | 6 |
| blur | Gaussian sigma (pixels) | - | 0.5 | 0.8 | 1.1 | 1.5 | 2.0 |
| brightness | factor | 1 | 0.85 | 0.7 | 0.55 | 0.4 | 0.25 |
| contrast | factor | 1 | 0.85 | 0.7 | 0.55 | 0.4 | 0.25 |
| erasing | erased area fraction (Gaussian-noise fill) | 0 | 0.05 | 0.1 | 0.2 | 0.3 | 0.4 |
| noise | Gaussian std (image units) | 0 | 0.04 | 0.08 | 0.12 | 0.18 | 0.25 |
| rotation | angle, random sign (degrees) | 0 | 6 | 12 | 20 | 30 | 45 |
| skew | horizontal shear, random sign (degrees) | 0 | 5 | 10 | 15 | 22 | 30 |
| shift | normalisation mean offset / std scale | 0 / 1 | 0.05 / 1.1 | 0.1 / 1.2 | 0.15 / 1.3 | 0.2 / 1.4 | 0.25 / 1.5 |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF

DEGREES = range(6)
PARAMS: dict[str, list[float]] = {
    "jpeg": [100, 60, 35, 20, 12, 6],
    "blur": [0, 0.5, 0.8, 1.1, 1.5, 2.0],
    "brightness": [1, 0.85, 0.7, 0.55, 0.4, 0.25],
    "contrast": [1, 0.85, 0.7, 0.55, 0.4, 0.25],
    "erasing": [0, 0.05, 0.1, 0.2, 0.3, 0.4],
    "noise": [0, 0.04, 0.08, 0.12, 0.18, 0.25],
    "rotation": [0, 6, 12, 20, 30, 45],
    "skew": [0, 5, 10, 15, 22, 30],
    "shift": [0, 0.05, 0.1, 0.15, 0.2, 0.25],
}
CORRUPTIONS: dict[str, Callable] = {}


def register_corruption(name: str):
    def deco(fn):
        CORRUPTIONS[name] = fn
        return fn

    return deco


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def _randn(shape, gen: torch.Generator, device) -> torch.Tensor:
    """Standard normal noise drawn on ``device`` (a device generator seeded from ``gen``)."""
    if torch.device(device).type == "cpu":
        return torch.randn(shape, generator=gen)
    dev_gen = torch.Generator(device=device).manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=gen))
    )
    return torch.randn(shape, generator=dev_gen, device=device)


def _signs(n: int, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(device)


def _per_sign(images: torch.Tensor, gen, op: Callable[[torch.Tensor, float], torch.Tensor]):
    """Apply ``op(batch, sign)`` with a random sign per image, in two calls (one per sign)."""
    x = _float(images)
    signs = _signs(x.shape[0], gen, x.device)
    out = torch.empty_like(x)
    for s in (-1, 1):
        idx = signs == s
        if idx.any():
            out[idx] = op(x[idx], float(s))
    return out


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Each uint8 image ``[C, H, W]`` (C 1 or 3; any leading batch shape) of ``images`` encoded
    as JPEG at ``quality`` and decoded through Pillow's libjpeg (4:2:0 chroma, the standard
    tables): the same bytes as
    torchvision's ``transforms.v2.functional.jpeg``, whose image codecs are deprecated since
    torchvision 0.29 (``tests/test_corruptions.py`` compares the two while both exist)."""
    import io

    import numpy as np
    from PIL import Image

    flat = images.reshape(-1, *images.shape[-3:]).cpu()  # [N, C, H, W], C 1 or 3
    if flat.shape[0] == 0:
        return images.clone()
    mode = {1: "L", 3: "RGB"}[flat.shape[1]]
    out = []
    for im in flat:
        buf = io.BytesIO()
        pixels = im.permute(1, 2, 0).contiguous().numpy()
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(
            buf, format="JPEG", quality=quality
        )
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(mode))
        out.append(torch.from_numpy(decoded.copy()).reshape(*im.shape[1:], -1).permute(2, 0, 1))
    return torch.stack(out).reshape(images.shape).to(images.device)


@register_corruption("jpeg")
def jpeg(images, degree, gen, **_):
    if degree == 0:
        return _float(images)
    return _float(jpeg_round_trip(images, int(PARAMS["jpeg"][degree])))


@register_corruption("blur")
def blur(images, degree, gen, **_):
    sigma = PARAMS["blur"][degree]
    if sigma == 0:
        return _float(images)
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(_float(images), [k, k], [sigma, sigma])


@register_corruption("brightness")
def brightness(images, degree, gen, **_):
    return TF.adjust_brightness(_float(images), PARAMS["brightness"][degree])


@register_corruption("contrast")
def contrast(images, degree, gen, **_):
    return TF.adjust_contrast(_float(images), PARAMS["contrast"][degree])


@register_corruption("erasing")
def erasing(images, degree, gen, **_):
    """One random rectangle per image (aspect ratio 0.5..2) filled with Gaussian noise.

    The noise is N(0.5, 0.25) in image units; per-image rectangles are a broadcast mask, since
    ``v2.functional.erase`` takes one rectangle per call.
    """
    x = _float(images)
    area = PARAMS["erasing"][degree]
    if area == 0:
        return x
    b, _, h, w = x.shape
    aspect = torch.exp(torch.empty(b).uniform_(math.log(0.5), math.log(2.0), generator=gen))
    eh = (math.sqrt(area * h * w) * aspect.sqrt()).round().clamp(1, h).long()
    ew = (math.sqrt(area * h * w) / aspect.sqrt()).round().clamp(1, w).long()
    top = (torch.rand(b, generator=gen) * (h - eh + 1)).long()
    left = (torch.rand(b, generator=gen) * (w - ew + 1)).long()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (in_r[:, :, None] & in_c[:, None, :])[:, None].expand_as(x).to(x.device)
    noise = 0.5 + 0.25 * _randn(int(mask.sum()), gen, x.device)  # only the erased pixels
    return x.masked_scatter(mask, noise)


@register_corruption("noise")
def noise(images, degree, gen, **_):
    x = _float(images)
    std = PARAMS["noise"][degree]
    if std == 0:
        return x
    return (x + std * _randn(x.shape, gen, x.device)).clamp_(0, 1)


@register_corruption("rotation")
def rotation(images, degree, gen, **_):
    angle = PARAMS["rotation"][degree]
    if angle == 0:
        return _float(images)
    return _per_sign(
        images,
        gen,
        lambda x, s: TF.rotate(x, s * angle, interpolation=TF.InterpolationMode.BILINEAR),
    )


@register_corruption("skew")
def skew(images, degree, gen, **_):
    shear = PARAMS["skew"][degree]
    if shear == 0:
        return _float(images)
    return _per_sign(
        images,
        gen,
        lambda x, s: TF.affine(
            x,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=[s * shear, 0.0],
            interpolation=TF.InterpolationMode.BILINEAR,
        ),
    )


@register_corruption("shift")
def shift(images, degree, gen, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), **_):
    """Input-distribution shift: the batch as it looks to a model normalising with wrong statistics.

    The model standardises with ``(x - m) / s``; normalising with ``m' = m + e * delta`` and
    ``s' = s * (1 + 2 delta)`` (per-channel random signs e) equals feeding
    ``(x - m') / s' * s + m`` to the correct normalisation, which is what is returned.
    """
    x = _float(images)
    delta = PARAMS["shift"][degree]
    if delta == 0:
        return x
    signs = torch.stack([_signs(3, gen, "cpu") for _ in range(x.shape[0])]).float()
    m = torch.tensor(mean)[None, :]
    s = torch.tensor(std)[None, :]
    m2, s2 = m + signs * delta, s * (1 + 2 * delta)
    scale, offset = (s / s2), (m - m2 * s / s2)
    return x * scale[:, :, None, None].to(x.device) + offset[:, :, None, None].to(x.device)


def corrupt(
    name: str,
    images: torch.Tensor,
    degree: int,
    seed: int = 0,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
) -> torch.Tensor:
    """Corrupt a uint8 batch with ``name`` at ``degree``; same seed, same result.

    ``mean``/``std`` are the dataset's normalisation statistics (used by "shift").
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    if degree not in DEGREES:
        raise ValueError(f"degree must be in 0..5, got {degree}")
    gen = torch.Generator().manual_seed(seed)
    return CORRUPTIONS[name](images, degree, gen, mean=mean, std=std)
