"""conv2d, maxpool2d and avgpool2d on N×C×H×W batches (torch's layout), backward by hand.

Everything here is vectorised over examples and positions: a window view of the (padded)
input (``sliding_window_view``, no copy), gathered once into columns (im2col) for one GEMM per
example; the way back (col2im) and the pools take one strided pass per kernel offset (kh·kw
of them, never one per pixel). ``correlate`` and ``full_correlation_dx`` are the textbook
forms, kept to show the identities the fast path relies on (tests and mutants use them).

Notation: x is N×C×H×W, the kernel W is F×C×kh×kw, stride s, zero padding p, and
    Ho = ⌊(H + 2p_h − kh)/s_h⌋ + 1,   Wo likewise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Array, Attr, Layer, LayerError, Param, Shape, Spec, small


def _pair(v: int | list) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _pair_check(least: int):
    def check(v: int | list) -> str | None:
        vals = [v] if isinstance(v, int) else v
        if isinstance(v, list) and (len(v) != 2 or not all(isinstance(e, int) and not isinstance(e, bool)
                                                           for e in v)):
            return f"must be an integer or a pair [h, w] of integers, got {v!r:.40}"
        if any(e < least for e in vals):
            return (f"must be {'positive' if least else 'non-negative'}"
                    f"{'' if isinstance(v, int) else ' in both directions'}, got {v}")
        return None
    return check


def _show_pair(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]}×{v[1]}"


def _spatial(kind: str, in_shape: Shape) -> None:
    if len(in_shape) != 3:
        raise LayerError("", f"{kind} needs a [C, H, W] input per example, its input is "
                             f"{list(in_shape)} (give input = [C, H, W], or keep the layer before "
                             "any flatten)")


def _fan_in(rng: np.random.Generator, shape: Shape) -> Array:
    return rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))


def windows(x: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """The N×C×Ho×Wo×kh×kw view of every window of x (no copy): windows[n, c, i, j] is
    x[n, c, i·s_h : i·s_h + kh, j·s_w : j·s_w + kw]."""
    return sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]


def correlate(x: Array, W: Array, s: tuple[int, int]) -> Array:
    """out[n, f, i, j] = Σ_{c,u,v} x[n, c, i·s_h + u, j·s_w + v] · W[f, c, u, v]: cross-correlation,
    as im2col + GEMM (tensordot gathers the windows into rows and calls BLAS)."""
    cols = windows(x, W.shape[2:], s)
    return np.tensordot(cols, W, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def pad(x: Array, p: tuple[int, int]) -> Array:
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]))) if p[0] or p[1] else x


def dilate(dz: Array, s: tuple[int, int], size: tuple[int, int]) -> Array:
    """dz with s − 1 zeros between its elements (and zero rows up to ``size``): the upstream
    gradient on the grid of the input positions each output was taken at."""
    if s == (1, 1) and dz.shape[2:] == size:
        return dz
    out = np.zeros(dz.shape[:2] + size, dtype=dz.dtype)
    out[:, :, ::s[0], ::s[1]][:, :, :dz.shape[2], :dz.shape[3]] = dz
    return out


def im2col(x_pad: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """N × (C·kh·kw) × (Ho·Wo): column (i, j) of example n is the window at output position
    (i, j), flattened in (c, u, v) order, so that W.reshape(F, −1) @ cols is the correlation
    (one GEMM per example, output positions innermost: z comes out contiguous N×F×Ho×Wo)."""
    win = windows(x_pad, k, s)
    N, C, Ho, Wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(N, C * k[0] * k[1], Ho * Wo)


def add_windows(dx: Array, per_window: Array, s: tuple[int, int]) -> Array:
    """Add per_window[n, c, i, j, u, v] onto dx[n, c, i·s_h + u, j·s_w + v] (overlapping
    windows add up): the adjoint of ``windows``, one strided add per offset (u, v)."""
    Ho, Wo, kh, kw = per_window.shape[2:]
    sh, sw = s
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += per_window[..., u, v]
    return dx


def col2im(dcols: Array, shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int],
           out_hw: tuple[int, int]) -> Array:
    """The adjoint of ``im2col``: every column's values added back onto the window they came
    from (overlapping windows add up)."""
    N, C = shape[:2]
    d = dcols.reshape(N, C, k[0], k[1], out_hw[0], out_hw[1]).transpose(0, 1, 4, 5, 2, 3)
    return add_windows(np.zeros(shape, dtype=dcols.dtype), d, s)


def full_correlation_dx(dz: Array, W: Array, x_pad_shape: tuple[int, ...], s: tuple[int, int],
                        p: tuple[int, int]) -> Array:
    """conv2d's dx in the textbook form: the full correlation of dz (dilated by the stride)
    with the kernel rotated by 180° and its F and C axes swapped, the padding cropped. Equal
    to the transposed convolution ``Conv2d.backward`` computes; kept to show the identity."""
    kh, kw = W.shape[2:]
    Hp, Wp = x_pad_shape[2:]
    dz_full = pad(dilate(dz, s, (Hp - kh + 1, Wp - kw + 1)), (kh - 1, kw - 1))
    dx_pad = correlate(dz_full, W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), (1, 1))
    return dx_pad[:, :, p[0]:Hp - p[0], p[1]:Wp - p[1]]


class Conv2d(Layer):
    """z = x ⋆ W + b: cross-correlation, no kernel flip (what every framework calls conv).

        z[n, f, i, j] = b[f] + Σ_{c,u,v} x_pad[n, c, i·s + u, j·s + v] · W[f, c, u, v]

    Backward, dz = ∂J/∂z (N×F×Ho×Wo):
        db[f]          = Σ_{n,i,j} dz[n, f, i, j]        b is added at every example and position
        dW[f, c, u, v] = Σ_{n,i,j} dz[n, f, i, j] · x_pad[n, c, i·s + u, j·s + v]
                         the correlation of the input patches with dz, summed over the batch
        dx_pad[n, c, h, w] = Σ_{f,u,v} dz[n, f, (h − u)/s, (w − v)/s] · W[f, c, u, v]
                         (terms where (h − u)/s is a whole output row): the full correlation of
                         dz, dilated by s and padded by k − 1, with W flipped in both spatial
                         axes and its F and C axes swapped; dx is dx_pad without the padding.
    That last sum is the transposed convolution, and that is how it is computed here: each
    z[n, f, i, j] was fed by one window of x_pad, so Wᵀ dz gives every window's share
    (dcols = W.reshape(F, −1)ᵀ @ dz) and col2im adds the shares back where the windows were,
    the adjoint of the forward's im2col. Reading the same sum by h instead of by window gives
    the flipped kernel (``full_correlation_dx``, the textbook form, kept for comparison).
    ``param_backward`` gives dW and db alone: the first layer's dx would be ∂J/∂X, which
    nothing uses, and it is the costliest of the three.
    """

    name = "conv2d"
    attrs = {
        "filters": Attr((int,), check=_pair_check(1), doc="output channels F"),
        "kernel": Attr((int, list), check=_pair_check(1), doc="kh×kw: an integer or [kh, kw]"),
        "stride": Attr((int, list), 1, _pair_check(1), doc="an integer or [sh, sw] (default 1)"),
        "padding": Attr((int, list), 0, _pair_check(0), doc="zeros on each side: an integer or [ph, pw]"),
        "activation": Attr((str,), None, doc="fused g: a = g(z), z kept as z{i}"),
        "bias": Attr((bool,), True, doc="add b (one per filter)"),
    }
    formula = "z[n,f,i,j] = b[f] + Σ_{c,u,v} x_pad[n,c,i·s+u,j·s+v] W[f,c,u,v] (cross-correlation)"
    derivative = ("db = Σ_{n,i,j} dz; dW = Σ_n x_pad patches ⋆ dz; dx = full correlation of dz "
                  "(dilated by s) with W flipped (rot180, F↔C), padding cropped")
    torch_name = "F.conv2d(x, W, b, stride, padding)"
    jax_name = ("jax.lax.conv_general_dilated(jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), W, stride, "
                "'VALID', dimension_numbers=('NCHW', 'OIHW', 'NCHW')) + b (padding given to the conv itself "
                "crashed XLA 0.10.2 compiling dx for some shapes)")
    differences = ("Both frameworks compute cross-correlation (no flip), as here; a textbook's "
                   "'convolution' flips the kernel. jax's default layout is NCHW/OIHW only when "
                   "given as dimension_numbers; flax.linen.Conv is NHWC with HWIO kernels.")
    fused_activation = True

    def out_shape(self, attrs, in_shape):
        _spatial("conv2d", in_shape)
        (kh, kw), (sh, sw), (ph, pw) = _pair(attrs["kernel"]), _pair(attrs["stride"]), _pair(attrs["padding"])
        _, H, W = in_shape
        if kh > H + 2 * ph or kw > W + 2 * pw:
            padded = f"the padded input {H + 2 * ph}×{W + 2 * pw} ({H}×{W} with padding {ph}×{pw})" \
                if ph or pw else f"the input {H}×{W} (no padding)"
            raise LayerError("kernel", f"kernel {kh}×{kw} is larger than {padded}")
        return (attrs["filters"], (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)

    def params(self, spec: Spec) -> dict[str, Param]:
        kh, kw = _pair(spec["kernel"])
        out = {"W": Param((spec["filters"], spec.in_shape[0], kh, kw), _fan_in, regularised=True)}
        if spec["bias"]:
            out["b"] = Param((spec["filters"],), small)
        return out

    def param_mismatch(self, spec, local, shape):
        if local == "W" and len(shape) == 4 and shape[1] != spec.in_shape[0]:
            return (f"W has {shape[1]} input channel{'s' * (shape[1] != 1)} (its axis 1) but the "
                    f"layer's input has {spec.in_shape[0]}: W is filters×C×kh×kw")
        return None

    def forward(self, spec, x, p, inp):
        s, padding = _pair(spec["stride"]), _pair(spec["padding"])
        x_pad = pad(x, padding)
        W = p["W"]
        F, _, kh, kw = W.shape
        cols = im2col(x_pad, (kh, kw), s)
        Ho, Wo = (x_pad.shape[2] - kh) // s[0] + 1, (x_pad.shape[3] - kw) // s[1] + 1
        z = (W.reshape(F, -1) @ cols).reshape(x.shape[0], F, Ho, Wo)
        if "b" in p:
            z += p["b"][:, None, None]
        return z, (x_pad, W, cols)

    def param_backward(self, spec, dz, cache):
        _, W, cols = cache
        N, F = dz.shape[:2]
        dz3 = dz.reshape(N, F, -1)
        grads = {"W": (dz3 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)}  # Σ over the batch
        if spec["bias"]:
            grads["b"] = dz.sum(axis=(0, 2, 3))
        return grads

    def backward(self, spec, dz, cache):
        x_pad, W, _ = cache
        s, (ph, pw) = _pair(spec["stride"]), _pair(spec["padding"])
        N, F, Ho, Wo = dz.shape
        dcols = W.reshape(F, -1).T @ dz.reshape(N, F, Ho * Wo)  # each window's share
        dx_pad = col2im(dcols, x_pad.shape, W.shape[2:], s, (Ho, Wo))
        Hp, Wp = x_pad.shape[2:]
        return dx_pad[:, :, ph:Hp - ph, pw:Wp - pw], self.param_backward(spec, dz, cache)

    def torch(self, spec, fw, x, p, inp):
        return fw.F.conv2d(x, p["W"], p.get("b"), stride=_pair(spec["stride"]),
                           padding=_pair(spec["padding"]))

    def jax(self, spec, fw, x, p, inp):
        # The zeros are padded on first and the conv given none: with the padding inside the
        # conv, XLA 0.10.2's algebraic simplifier aborts the process (a CHECK failure, not an
        # exception) compiling dx for some shapes: 4 images of 3×4×4, one 2×3 filter, stride
        # (2, 1), padding (1, 0) (catalog-534 of cases/sweeps/catalog.toml). The same sums.
        (ph, pw) = _pair(spec["padding"])
        if ph or pw:
            x = fw.jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        z = fw.jax.lax.conv_general_dilated(
            x, p["W"], window_strides=_pair(spec["stride"]), padding=[(0, 0), (0, 0)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=fw.jax.lax.Precision.HIGHEST)
        return z + p["b"][:, None, None] if "b" in p else z

    def describe(self, spec):
        kh, kw = _pair(spec["kernel"])
        out = f"conv{spec['filters']}x{kh}x{kw}"
        if _pair(spec["stride"]) != (1, 1):
            out += f"/s{_show_pair(_pair(spec['stride']))}"
        if _pair(spec["padding"]) != (0, 0):
            out += f"/p{_show_pair(_pair(spec['padding']))}"
        if spec.activation:
            out += f"/{spec.activation}"
        return out + ("" if spec["bias"] else "(no bias)")


class _Pool(Layer):
    attrs = {
        "size": Attr((int, list), check=_pair_check(1), doc="window kh×kw: an integer or [kh, kw]"),
        "stride": Attr((int, list), None, _pair_check(1), doc="an integer or [sh, sw] (default: size)"),
    }

    @staticmethod
    def geometry(spec_or_attrs: Any) -> tuple[tuple[int, int], tuple[int, int]]:
        k = _pair(spec_or_attrs["size"])
        s = spec_or_attrs["stride"]
        return k, (k if s is None else _pair(s))

    def out_shape(self, attrs, in_shape):
        _spatial(self.name, in_shape)
        (kh, kw), (sh, sw) = self.geometry(attrs)
        C, H, W = in_shape
        if kh > H or kw > W:
            raise LayerError("size", f"window {kh}×{kw} is larger than the input {H}×{W} "
                                     "(pooling takes no padding)")
        return (C, (H - kh) // sh + 1, (W - kw) // sw + 1)

    def describe(self, spec):
        k, s = self.geometry(spec)
        return f"{self.name.removesuffix('2d')}{_show_pair(k)}" + ("" if s == k else f"/s{_show_pair(s)}")


class MaxPool2d(_Pool):
    """y[n, c, i, j] = max of the window x[n, c, i·s : i·s + kh, j·s : j·s + kw].

    Backward: the max is locally the window's arg-max element itself, so each window sends its
    dy to that one element (overlapping windows add up) and every other element gets 0:
        dx[n, c, i·s + u*, j·s + v*] += dy[n, c, i, j],   (u*, v*) = the arg-max in the window.
    A window whose maximum is attained twice has no derivative (a kink): the frameworks take
    the first maximum in row-major order, as here; the harness does not compare what depends
    on such a choice (``ties``)."""

    name = "maxpool2d"
    formula = "y[n,c,i,j] = max_{u,v} x[n,c,i·s+u,j·s+v]"
    derivative = "dx = dy routed to each window's arg-max (first maximum), 0 elsewhere; overlaps add"
    torch_name = "F.max_pool2d(x, size, stride)"
    jax_name = "jax.lax.reduce_window(x, -inf, jax.lax.max, (1, 1, kh, kw), (1, 1, sh, sw), 'VALID')"
    differences = ("At a tie both frameworks route the gradient to the first maximum (row-major in "
                   "the window); other implementations (a naive `x == max` mask) send it to every "
                   "maximum. The harness counts tied windows and does not compare what they decide.")

    def forward(self, spec, x, p, inp):
        y = self.maxima(spec, x)
        return y, (x, y)

    @staticmethod
    def maxima(spec, x):
        """Each window's maximum: a running np.maximum over the kh·kw strided slices."""
        (kh, kw), s = MaxPool2d.geometry(spec)
        win = windows(x, (kh, kw), s)
        y = win[..., 0, 0].copy()
        for k in range(1, kh * kw):
            np.maximum(y, win[..., k // kw, k % kw], out=y)
        return y

    @staticmethod
    def first_maxima(spec, x, y):
        """For each offset (u, v) of the window, where it holds the window's first maximum
        (row-major, as torch and jax pick it): a list of kh·kw boolean arrays, one per offset."""
        (kh, kw), s = MaxPool2d.geometry(spec)
        win = windows(x, (kh, kw), s)
        claimed = np.zeros(y.shape, dtype=bool)
        out = []
        for k in range(kh * kw):
            hit = win[..., k // kw, k % kw] == y
            hit &= ~claimed
            claimed |= hit
            out.append(hit)
        return out

    @staticmethod
    def pick(spec, x):
        """Each window's maximum and the offset u·kw + v of its first occurrence."""
        y = MaxPool2d.maxima(spec, x)
        arg = np.zeros(y.shape, dtype=np.int32)
        for k, hit in enumerate(MaxPool2d.first_maxima(spec, x, y)):
            if k:
                arg += hit * np.int32(k)
        return y, arg

    def backward(self, spec, dy, cache):
        x, y = cache
        (kh, kw), (sh, sw) = self.geometry(spec)
        Ho, Wo = dy.shape[2:]
        dx = np.zeros(x.shape, dtype=dy.dtype)
        disjoint = sh >= kh and sw >= kw  # each input element in one window at most: assign
        for k, hit in enumerate(self.first_maxima(spec, x, y)):  # one strided pass per offset
            u, v = divmod(k, kw)
            target = dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw]
            if disjoint:
                np.multiply(dy, hit, out=target)
            else:
                target += dy * hit
        return dx, {}

    def torch(self, spec, fw, x, p, inp):
        k, s = self.geometry(spec)
        return fw.F.max_pool2d(x, k, s)

    def jax(self, spec, fw, x, p, inp):
        (kh, kw), (sh, sw) = self.geometry(spec)
        lax = fw.jax.lax
        return lax.reduce_window(x, -fw.jnp.inf, lax.max, (1, 1, kh, kw),
                                 (1, 1, sh, sw), "VALID")

    def kink_sides(self, spec, x):
        # Which element of each window is the maximum: a nudge that changes it crosses a kink.
        return self.pick(spec, x)[1]

    def ties(self, spec, x, dy, tol, rng):
        """How much the gradient at the input may change with the choice of maximum in the
        windows whose maximum is attained more than once (to within ``tol``, absolute): a
        difference of two valid routings of ``dy``, random zero-sum weights over each such
        window's near-maxima (nonzero wherever the choice matters), and the number of windows.

        One strided plane per window offset (u, v), as ``backward``: reducing over the
        window's own 2×2 axes instead cost numpy a call per window (115 of tie_masks' 190 ms on
        the benchmark's convnet). Weights are drawn for the tied windows only."""
        (kh, kw), (sh, sw) = self.geometry(spec)
        Ho, Wo = dy.shape[2:]
        planes = [x[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] for u in range(kh) for v in range(kw)]
        top = planes[0]
        for plane in planes[1:]:
            top = np.maximum(top, plane)
        top = top - tol
        near = [plane >= top for plane in planes]
        count = np.zeros(dy.shape, dtype=np.intp)
        for hit in near:
            count += hit
        tied = np.nonzero((count > 1) & (dy != 0))
        n_tied = len(tied[0])
        if not n_tied:
            return None
        near_tied = np.stack([hit[tied] for hit in near], axis=1)  # tied windows × kh·kw
        weights = np.where(near_tied, rng.uniform(1.0, 2.0, near_tied.shape), 0.0)
        weights = np.where(near_tied, weights - weights.sum(axis=1, keepdims=True) / count[tied][:, None], 0.0)
        weights *= dy[tied][:, None]
        dx = np.zeros(x.shape)
        plane = np.zeros(dy.shape)
        for k in range(kh * kw):  # overlapping windows add up
            u, v = divmod(k, kw)
            plane[tied] = weights[:, k]
            dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += plane
        return dx.astype(x.dtype), n_tied


class AvgPool2d(_Pool):
    """y[n, c, i, j] = (1/(kh·kw)) Σ_{u,v} x[n, c, i·s + u, j·s + v].

    Backward: every element of a window gets an equal share of its dy,
        dx[n, c, i·s + u, j·s + v] += dy[n, c, i, j] / (kh·kw)   for every u, v (overlaps add)."""

    name = "avgpool2d"
    formula = "y[n,c,i,j] = (1/(kh·kw)) Σ_{u,v} x[n,c,i·s+u,j·s+v]"
    derivative = "dx = dy/(kh·kw) spread over each window; overlaps add"
    torch_name = "F.avg_pool2d(x, size, stride)"
    jax_name = "jax.lax.reduce_window(x, 0, jax.lax.add, (1, 1, kh, kw), (1, 1, sh, sw), 'VALID') / (kh·kw)"
    differences = ("Without padding torch's count_include_pad does not matter; flax's avg_pool is "
                   "NHWC.")

    def forward(self, spec, x, p, inp):
        k, s = self.geometry(spec)
        return windows(x, k, s).mean(axis=(-2, -1)), x.shape

    def backward(self, spec, dy, shape):
        (kh, kw), s = self.geometry(spec)
        share = np.broadcast_to((dy / (kh * kw))[..., None, None], dy.shape + (kh, kw))
        return add_windows(np.zeros(shape, dtype=dy.dtype), share, s), {}

    def torch(self, spec, fw, x, p, inp):
        k, s = self.geometry(spec)
        return fw.F.avg_pool2d(x, k, s)

    def jax(self, spec, fw, x, p, inp):
        (kh, kw), (sh, sw) = self.geometry(spec)
        lax = fw.jax.lax
        total = lax.reduce_window(x, 0.0, lax.add, (1, 1, kh, kw), (1, 1, sh, sw),
                                  "VALID")
        return total / (kh * kw)
