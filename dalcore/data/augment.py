"""Batched training augmentation on the tensor's own device: random translation with reflection
padding and random horizontal flip, with no per-sample Python loop.

Convention: a shift ``(dy, dx)`` moves the content ``dy`` pixels down and ``dx`` pixels right,
``out[i, j] = reflect(x)[i - dy, j - dx]``, where ``reflect`` extends the image by mirroring about
its edge pixels (numpy's / torch's ``"reflect"`` padding mode, the edge itself not repeated).
The reflected source index of every output pixel is computed arithmetically and the whole batch
is read with one ``gather`` (no padded copy). A flip is applied after the shift:
``out[i, j] = shifted[i, W - 1 - j]``.
"""

from __future__ import annotations

import torch

__all__ = ["augment", "shift_flip"]


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {x.dtype}")


def shift_flip(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor | None = None,
    *,
    pad: int | None = None,
) -> torch.Tensor:
    """Shift every image by its own ``(dy[b], dx[b])`` with reflection, then flip where asked.

    Parameters
    ----------
    x : (B, C, H, W) float tensor
    dy, dx : (B,) integer tensors
        Shifts, each with ``|shift| < H`` (resp. W) so that one reflection covers it.
    flip : (B,) bool tensor, optional
        Which images to mirror horizontally.
    pad : int, optional
        A bound on every ``|shift|`` known to the caller: skips the check of the shifts, which
        reads the largest one back to the host (a device sync on CUDA).

    Returns
    -------
    torch.Tensor
        A new (B, C, H, W) tensor on x's device.
    """
    _check_images(x)
    b, _, h, w = x.shape
    dev = x.device
    dy = torch.as_tensor(dy, device=dev).long().reshape(-1)
    dx = torch.as_tensor(dx, device=dev).long().reshape(-1)
    if dy.numel() != b or dx.numel() != b:
        raise ValueError(f"dy, dx: expected {b} shifts each, got {dy.numel()} and {dx.numel()}")
    if b == 0:
        return x.clone()
    if pad is None:
        my, mx = int(dy.abs().max().item()), int(dx.abs().max().item())
    else:
        my = mx = int(pad)
    if my >= h or mx >= w:
        raise ValueError(
            f"dy, dx: |dy| must be < {h} and |dx| < {w} (one reflection), got {my} and {mx}"
        )
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = _reflect(ar_h.unsqueeze(0) - dy.unsqueeze(1), h)  # (B, H) source rows
    cols = _reflect(ar_w.unsqueeze(0) - dx.unsqueeze(1), w)  # (B, W) source columns
    if flip is not None:
        fl = torch.as_tensor(flip, device=dev).to(torch.bool).reshape(-1)
        if fl.numel() != b:
            raise ValueError(f"flip: expected {b} flags, got {fl.numel()}")
        cols = torch.where(fl.unsqueeze(1), cols.flip(1), cols)
    # One gather over the flattened pixels: out[b, c, i, j] = x[b, c, rows[b, i], cols[b, j]].
    c = x.shape[1]
    src = (rows.unsqueeze(2) * w + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, src).view(b, c, h, w)


def _reflect(k: torch.Tensor, n: int) -> torch.Tensor:
    """Mirror indices in [-(n - 1), 2(n - 1)] about the edge pixels into [0, n)."""
    return (n - 1) - ((n - 1) - k.abs()).abs()


def augment(
    x: torch.Tensor, *, translate: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random translation in [-translate, translate] px (reflection padding) and random flip.

    Every image gets its own shift, drawn uniformly per axis, and (when ``flip``) a fair-coin
    horizontal flip. The random numbers come from ``generator`` (on its own device) and the
    work runs batched on ``x``'s device.

    Parameters
    ----------
    x : (B, C, H, W) float tensor
    translate : int
        Largest shift in pixels, 0 <= translate < min(H, W).
    flip : bool
        Whether to flip half of the images at random.
    generator : torch.Generator
        Seeded source of the shifts and flips.

    Returns
    -------
    torch.Tensor
        ``x`` itself when translate == 0 and not flip, else a new tensor.
    """
    _check_images(x)
    if isinstance(translate, bool) or not isinstance(translate, int):
        raise TypeError(f"translate: expected an int, got {type(translate).__name__}")
    if translate < 0 or translate >= min(x.shape[2], x.shape[3]):
        raise ValueError(
            f"translate: expected 0 <= translate < {min(x.shape[2], x.shape[3])} "
            f"(the image side), got {translate}"
        )
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    if translate == 0 and not flip:
        return x
    b = x.shape[0]
    gdev = generator.device
    if translate > 0:
        d = torch.randint(-translate, translate + 1, (2, b), generator=generator, device=gdev)
        d = d.to(x.device)
        dy, dx = d[0], d[1]
    else:
        dy = dx = torch.zeros(b, dtype=torch.long, device=x.device)
    fl = None
    if flip:
        fl = torch.randint(0, 2, (b,), generator=generator, device=gdev).to(x.device).bool()
    return shift_flip(x, dy, dx, fl, pad=translate)
