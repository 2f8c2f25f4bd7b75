"""Networks as files anyone can re-evaluate: safetensors, each named by the SHA-256 of its bytes.

A record's networks (f_N, f_R and pi_R, f_D and pi_D) are written as safetensors (tensors only:
no code runs when one is read) with a manifest naming each file's hash and where it lives (a
local path, or ``hf://<repo>/<path>`` on the Hugging Face Hub); the record names the same hashes
(``networks``), so a bundle's files are the networks that made the record, and a file that was
altered or swapped is refused naming it. Hashes are of the bytes :func:`state_bytes` writes,
which are the same for the same weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

NAMES = ("f_N", "f_R", "pi_R", "f_D", "pi_D")
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """A bundle that cannot be used: one line naming the file and what is wrong."""


def state_bytes(module: nn.Module) -> bytes:
    """``module``'s state (parameters and buffers) as safetensors bytes (on the CPU, each tensor
    its own copy: shared storage cannot be written)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    return save(state)


def digest(module: nn.Module) -> str:
    """The SHA-256 of :func:`state_bytes`: what a record names a network by."""
    return hashlib.sha256(state_bytes(module)).hexdigest()


def save(folder: Path, nets: dict[str, nn.Module], extra: dict | None = None) -> dict:
    """Write each of ``nets`` as ``<name>.safetensors`` in ``folder`` and the manifest (each
    file's hash and path, and ``extra``: what else loading them needs); returns the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, module in nets.items():
        blob = state_bytes(module)
        (folder / f"{name}.safetensors").write_bytes(blob)
        files[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "uri": f"{name}.safetensors"}
    manifest = {"files": files, **(extra or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise BundleError(f"{path}: no readable manifest; export the run again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path}: not a bundle's manifest (no files)")
    return manifest


def fetch(folder: Path, uri: str) -> Path:
    """A bundle file's local path: ``uri`` relative to ``folder``, or ``hf://<owner>/<repo>/<path>``
    downloaded from the Hugging Face Hub (into its cache)."""
    if uri.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        owner, repo, *rest = uri[len("hf://") :].split("/")
        return Path(hf_hub_download(f"{owner}/{repo}", "/".join(rest)))
    path = (Path(folder) / uri).resolve()
    if not path.is_relative_to(Path(folder).resolve()):
        raise BundleError(f"{uri}: a bundle's file lies inside its folder")
    return path


def load_state(folder: Path, name: str, manifest: dict, expected: str | None = None) -> dict:
    """Network ``name``'s tensors from the bundle in ``folder``, its bytes checked against the
    manifest's hash and (``expected``) the record's; one line naming the file otherwise."""
    from safetensors.torch import load

    entry = manifest["files"].get(name)
    if entry is None:
        raise BundleError(f"{Path(folder) / MANIFEST}: names no file for {name}")
    path = fetch(folder, entry["uri"])
    try:
        blob = path.read_bytes()
    except OSError:
        raise BundleError(f"{path}: missing ({name}'s network)") from None
    found = hashlib.sha256(blob).hexdigest()
    for what, want in (("the manifest", entry.get("sha256")), ("the record", expected)):
        if want is not None and found != want:
            raise BundleError(
                f"{path}: its SHA-256 is {found[:12]}..., {what} names {want[:12]}... "
                f"({name}'s network altered or swapped)"
            )
    try:
        return load(blob)
    except Exception as e:  # not safetensors at all
        raise BundleError(f"{path}: not a safetensors file ({type(e).__name__})") from None


def load_into(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """``module`` with ``state`` loaded (every key, same shapes); one line otherwise."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        why = " ".join(str(e).split())[:160]
        raise BundleError(f"{where}: not this network's weights ({why})") from None
    return module
