"""``python -m bench perf corruptions``: the nine corruptions on a batch of uint8 images, batched
(:mod:`dptq.corruptions`) against the same operations image by image through PIL."""

from __future__ import annotations

import torch

from dptq.tables import markdown_table

from .run import _median_times, header


def _pil_corrupt(img, name: str, degree: int, rng):
    """The same corruption on one PIL image (the per-image baseline of ``perf corruptions``)."""
    import io

    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    from dptq.corruptions import PARAMS

    p = PARAMS[name][degree]
    if name == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(p))
        return Image.open(buf).convert("RGB")
    if name == "blur":
        return img.filter(ImageFilter.GaussianBlur(p))
    if name == "brightness":
        return ImageEnhance.Brightness(img).enhance(p)
    if name == "contrast":
        return ImageEnhance.Contrast(img).enhance(p)
    if name == "rotation":
        return img.rotate(p * rng.choice([-1, 1]), resample=Image.BILINEAR)
    if name == "skew":
        s = np.tan(np.radians(p)) * rng.choice([-1, 1])
        return img.transform(
            img.size, Image.AFFINE, (1, s, -s * img.size[1] / 2, 0, 1, 0), Image.BILINEAR
        )
    a = np.asarray(img, dtype=np.float32) / 255
    h, w = a.shape[:2]
    if name == "noise":
        a = np.clip(a + rng.normal(0, p, a.shape), 0, 1)
    elif name == "erasing":
        eh, ew = max(1, int(round((p * h * w) ** 0.5))), max(1, int(round((p * h * w) ** 0.5)))
        t, l0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        a[t : t + eh, l0 : l0 + ew] = rng.normal(0.5, 0.25, (eh, ew, 3))
    elif name == "shift":
        a = a * (1 / (1 + 2 * p)) + rng.choice([-1, 1], 3) * p * 0.5
    return Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))


def bench_corruptions(quick: bool) -> list[dict]:
    """Images per second: batched tensor corruptions vs the per-image PIL path, degree 3."""
    import numpy as np
    import torchvision.transforms.v2.functional as TF

    from dptq.corruptions import CORRUPTIONS, corrupt

    rows = []
    for size in (64, 224):
        imgs = torch.randint(
            0,
            256,
            (128, 3, size, size),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(0),
        )
        pils = [TF.to_pil_image(im) for im in imgs]
        rng = np.random.default_rng(0)

        def batched(imgs=imgs):
            for name in CORRUPTIONS:
                corrupt(name, imgs, 3, seed=0)

        def per_image(pils=pils, rng=rng):
            for name in CORRUPTIONS:
                torch.stack([TF.pil_to_tensor(_pil_corrupt(p, name, 3, rng)) for p in pils])

        t = _median_times({"batched": batched, "pil": per_image}, reps=2 if quick else 5, warmup=1)
        n = 128 * len(CORRUPTIONS)
        rows.append(
            {
                "image": size,
                "B": 128,
                "corruptions": len(CORRUPTIONS),
                "batched_img_per_s": n / t["batched"],
                "pil_img_per_s": n / t["pil"],
                "speedup": t["pil"] / t["batched"],
            }
        )
    return rows


def markdown_corruptions(res: dict) -> str:
    lines = [
        *header(res, "corruptions"),
        "All nine corruptions at degree 3 on a batch of 128 uint8 images: the batched tensor "
        "path (`dptq.corruptions`) vs the same operations image by image through PIL.",
        "",
    ]
    rows = [
        [
            f"{r['image']}x{r['image']}",
            f"{r['batched_img_per_s']:.0f}",
            f"{r['pil_img_per_s']:.0f}",
            f"{r['speedup']:.1f}x",
        ]
        for r in res["corruptions"]
    ]
    head = ["image", "batched (img/s)", "per-image PIL (img/s)", "speed-up"]
    return "\n".join([*lines, *markdown_table(head, rows, "rrrr"), ""])
