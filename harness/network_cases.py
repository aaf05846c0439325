"""Case files, network form: ``input`` + ``network = [...]`` (+ ``l2``, ``l2_form``), checked
layer by layer against the catalog, and the seeded draw of a network case's arrays.

Called by ``harness.cases`` for a ``[[case]]`` with ``network``; every problem is one line
naming file, case, layer and field.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import L2_FORMS, LAYERS, NETWORK_LOSSES, LayerError, build_spec
from .errors import did_you_mean
from .fields import _Fields, _parse_labels, _show
from .network import Network
from .catalog import Spec

if TYPE_CHECKING:
    from .cases import Case

MAX_INPUT_DIMS = 3  # [n], [T, D], [C, H, W]
MAX_VALUE_DIMS = 5  # X of N×C×H×W is the deepest array a case gives
MLP_KEYS = ("layers", "activations", "output")


def parse_network(f: _Fields, loss: str, dtype: str, max_dim: int, max_depth: int, batch: int = 0) -> Network:
    """The ``Network`` of a case table that has ``network``. ``batch``: the case's batch (the
    shape of rnn's and lstm's h0), 0 when not known yet."""
    for key in MLP_KEYS:
        if key in f.raw:
            f.fail(key, f"give either `network` (a list of layers) or `layers` + `activations` "
                        f"(an MLP), not both; `{key}` belongs to the MLP form")
    if loss not in NETWORK_LOSSES:
        f.fail("loss", f"unknown loss {_show(loss)}{did_you_mean(loss, NETWORK_LOSSES)}; "
                       f"known: {', '.join(NETWORK_LOSSES)}")
    shape = f.get("input", list, what="the per-example input shape, [n], [T, D], [C, H, W], or [T] "
                                      "token ids with vocab = V")
    if not 1 <= len(shape) <= MAX_INPUT_DIMS:
        f.fail("input", f"needs 1 to {MAX_INPUT_DIMS} sizes ([n], [T, D] or [C, H, W]), got {_show(shape)}")
    for i, n in enumerate(shape):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_dim:
            f.fail(f"input[{i}]", f"sizes must be integers in 1..{max_dim}, got {_show(n)}")
    raw_layers = f.get("network", list, what="a list of layers, [{layer = \"dense\", units = 8}, ...]")
    if not raw_layers:
        f.fail("network", "needs at least one layer")
    if len(raw_layers) > max_depth:
        f.fail("network", f"{len(raw_layers)} layers; at most {max_depth}")
    vocab = f.int_range("vocab", 0, 1, max_dim)
    first = raw_layers[0].get("layer") if isinstance(raw_layers[0], dict) else None
    if vocab and (len(shape) != 1 or first != "embedding"):
        f.fail("vocab", f"vocab = {vocab} makes X token ids: that needs input = [T] and a network that "
                        f"starts with {{layer = \"embedding\", dim = ...}}"
                        + (f" (input is {_show(shape)})" if len(shape) != 1 else f" (it starts with {first!r})"))
    if first == "embedding" and not vocab:
        f.fail("vocab", "missing: a network that starts with embedding takes token ids, and needs "
                        "vocab = V (ids are in 0..V-1) at the case level")
    values = f.raw.get("values")
    given = set(values) if isinstance(values, dict) else set()
    specs, _, _ = _build(f, raw_layers, tuple(shape), 1, batch, vocab, given, max_dim)
    if len(specs) > max_depth:
        f.fail("network", f"{len(specs)} layers (residual bodies included); at most {max_depth}")
    _check_output(f, specs, loss)
    lam = f.get("l2", (int, float), 0.0)
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        f.fail("l2", f"must be a finite number >= 0 (λ), got {_show(lam)}")
    form = f.get("l2_form", str, "half")
    if form not in L2_FORMS:
        f.fail("l2_form", f"unknown form {_show(form)}{did_you_mean(form, L2_FORMS)}; known: "
                          + ", ".join(f"{k} ({v[0]})" for k, v in L2_FORMS.items()))
    return Network(tuple(shape), tuple(specs), loss, dtype, float(lam), form, vocab)


RECURRENT = ("rnn", "lstm")  # the layers with an initial state h0_{i}


def _build(f: _Fields, raw_layers: list, in_shape: tuple, index: int, batch: int, vocab: int,
           given: set[str], max_dim: int) -> tuple[list[Spec], tuple, int]:
    """The specs of ``raw_layers`` numbered from ``index``, a residual's body right after it
    (depth-first). Returns (specs, the output shape, the next free index)."""
    specs: list[Spec] = []
    for raw in raw_layers:
        kind = raw.get("layer") if isinstance(raw, dict) else None
        where = f"layer {index}" + (f" ({kind})" if isinstance(kind, str) and kind in LAYERS else "")
        if kind == "residual":
            for key in raw:
                if key not in ("layer", "body"):
                    f.fail(f"{where}.{key}", f"unknown attribute of residual{did_you_mean(key, ['body'])}; "
                                             "its attributes: body")
            body = raw.get("body")
            if not isinstance(body, list) or not body:
                f.fail(f"{where}.body", "a residual needs body = [ {layer = ...}, ... ], at least one layer")
            body_specs, out, nxt = _build(f, body, in_shape, index + 1, batch, vocab, given, max_dim)
            if out != in_shape:
                f.fail(f"{where}.body", f"the body turns {list(in_shape)} into {list(out)}: a residual adds "
                                        "its input to the body's output, so the shapes must match")
            specs += [Spec("residual", (("end", nxt - 1),), index, in_shape, in_shape, batch), *body_specs]
            index = nxt
            continue
        if kind == "embedding" and isinstance(raw, dict):
            if index != 1:
                f.fail(where, "embedding takes the token ids of X: it can only be the first layer")
            if "vocab" in raw and raw["vocab"] != vocab:
                f.fail(f"{where}.vocab", f"{_show(raw['vocab'])} differs from the case's vocab = {vocab} "
                                         "(give it once, at the case level)")
            raw = {**raw, "vocab": vocab}
        if kind in RECURRENT and isinstance(raw, dict) and f"h0_{index}" in given and "h0" not in raw:
            raw = {**raw, "h0": True}  # [case.values] gives h0_{i}: the initial state is compared
        try:
            spec = build_spec(raw, index, in_shape, batch)
        except LayerError as e:
            f.fail(f"{where}.{e.field}" if e.field else where, e.message)
        for n in spec.out_shape:
            if not 1 <= n <= max_dim:
                f.fail(where, f"output shape {list(spec.out_shape)} out of range 1..{max_dim}")
        specs.append(spec)
        in_shape = spec.out_shape
        index += 1
    return specs, in_shape, index


# Layers after which the scores are still the previous layer's (dropout only rescales some):
# a softmax followed by these still reaches a softmax-applying loss.
PASS_ON = ("identity", "flatten", "dropout")


def _check_output(f: _Fields, specs: list, loss: str) -> None:
    last = specs[-1]
    out = NETWORK_LOSSES[loss]
    k = len(specs) - 1
    while k > 0 and specs[k].kind in PASS_ON:
        k -= 1
    src = specs[k]
    ends_in = src.activation or src.kind
    where = f"layer {last.index} ({last.kind})" + (".activation" if last.activation else "")
    if out.applies and ends_in == out.applies:
        at = f"layer {src.index} ({src.kind})" + (".activation" if src.activation else "")
        f.fail(at, f"the network ends in {out.applies}, and {loss} applies {out.applies} itself "
                      f"(as torch's and jax's fused losses do): that would be {out.applies} twice. "
                      f"End in the layer that gives the logits, e.g. dense without activation")
    if out.target == "y":
        per_step = loss == "cross_entropy" and len(last.out_shape) == 2
        if not (len(last.out_shape) == 1 or per_step) or last.out_shape[-1] < 2:
            f.fail(where, f"{loss} needs class scores of shape [N] with N >= 2 per example"
                          + (", or [T, V] per step" if loss == "cross_entropy" else "")
                          + f", the last layer gives {list(last.out_shape)}")
    elif loss == "binary_cross_entropy" and len(last.out_shape) != 1:
        f.fail(where, f"{loss} needs outputs of shape [N] per example, the last layer gives "
                      f"{list(last.out_shape)}")


def check_batch(f: _Fields, net: Network, batch: int) -> None:
    for spec in net.network:
        msg = LAYERS[spec.kind].check_batch(spec, batch)
        if msg:
            f.fail(f"layer {spec.index} ({spec.kind})", msg)


def parse_values(f: _Fields, net: Network, batch_hint: int | None) -> dict[str, np.ndarray]:
    """Explicit arrays of ``[case.values]``: X, the targets, parameters, extra inputs."""
    raw = f.get("values", dict, {})
    target = NETWORK_LOSSES[net.loss].target
    params = net.param_shapes()
    inputs = net.input_specs(1)
    allowed = {"X", target, *params, *inputs} | ({"target_mask"} if net.per_step else set())
    # The layer an array belongs to, named in its errors: "layer 2 (batchnorm): ...".
    owner = {k: spec for k, (spec, _, _) in net.param_specs().items()}
    owner.update({k: v[0] for k, v in inputs.items()})
    out: dict[str, np.ndarray] = {}
    for key, val in raw.items():
        fld = f"values.{key}"
        of = f"{owner[key].label()}: " if key in owner else ""
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            if key == "Y" and target == "y":
                hint = f" ({net.loss} takes y = [class indices], not one-hot Y)"
            if key == "target_mask":
                hint = (" (target_mask weights per-step losses: it needs cross_entropy on an N×T×V "
                        "output, with y of N×T)")
            f.fail(fld, f"unknown array{hint}; allowed: {', '.join(sorted(allowed))}")
        if key == "y" and not net.per_step:
            out[key] = _parse_labels(f, fld, val, net.output_shape[0])
            continue
        arr = _numbers(f, fld, val, net.dtype)
        if key in ("y", "target_mask") or (key == "X" and net.vocab):
            out[key] = _ids(f, fld, key, arr, net)
            continue
        if key in params:
            want = params[key]
            if key[0] == "b" and arr.ndim == 1 and len(want) == 2:
                arr = arr[None, :]  # b may be written as a flat row
            if arr.shape != want:
                spec, local = net.param_specs()[key][:2]
                if msg := LAYERS[spec.kind].param_mismatch(spec, local, arr.shape):
                    f.fail(fld, of + msg)
                f.fail(fld, f"{of}shape {'×'.join(map(str, arr.shape))} does not fit its layer: "
                            f"{'×'.join(map(str, want))}")
        else:
            per_example = (net.input if key == "X" else net.output_shape if key == "Y"
                           else inputs[key][2][1:])
            if arr.shape[1:] != tuple(per_example) or arr.ndim != 1 + len(per_example):
                f.fail(fld, f"{of}shape {'×'.join(map(str, arr.shape))} does not fit m×"
                            f"{'×'.join(map(str, per_example))}")
        if key in inputs:
            spec, local = inputs[key][0], inputs[key][1]
            msg = LAYERS[spec.kind].check_input(spec, local, arr)
            if msg:
                f.fail(fld, of + msg)
        if key == "Y" and net.loss == "binary_cross_entropy" and ((arr < 0) | (arr > 1)).any():
            f.fail(fld, "binary_cross_entropy targets must lie in [0, 1]")
        out[key] = arr
    rows = {k: (v.shape[0]) for k, v in out.items() if k not in params}
    batch = batch_hint if batch_hint is not None else rows.get("X")
    for k, n in rows.items():
        if batch is not None and n != batch:
            of = f"{owner[k].label()}: " if k in owner else ""
            f.fail(f"values.{k}", f"{of}has {n} rows, batch is {batch}")
    return out


def _ids(f: _Fields, fld: str, key: str, arr: np.ndarray, net: Network) -> np.ndarray:
    """Token ids (X), per-step class ids (y) or a target mask, checked: shape m×T, integers in
    their range (0..V−1, or 0/1 for the mask)."""
    per_example, hi, what = {"X": (net.input, net.vocab, "token id"),
                             "y": (net.label_shape, net.output_shape[-1], "class id"),
                             "target_mask": (net.label_shape, 2, "target_mask value")}[key]
    if arr.ndim != 1 + len(per_example) or arr.shape[1:] != tuple(per_example):
        f.fail(fld, f"shape {'×'.join(map(str, arr.shape))} does not fit m×{'×'.join(map(str, per_example))}")
    bad = (arr != np.round(arr)) | (arr < 0) | (arr >= hi)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        want = "0 or 1" if key == "target_mask" else f"an integer in 0..{hi - 1}"
        f.fail(fld, f"{what} {_show(arr[idx].item())} at index {idx}: must be {want}")
    return arr.astype(np.int64)


def _numbers(f: _Fields, fld: str, val: Any, dtype: str) -> np.ndarray:
    """A rectangular array of finite numbers, at most MAX_VALUE_DIMS deep, that fits ``dtype``."""
    level = [val]
    for depth in range(MAX_VALUE_DIMS + 1):
        if not all(isinstance(v, list) for v in level):
            break
        level = [x for v in level for x in v]
    else:
        f.fail(fld, f"arrays nested deeper than {MAX_VALUE_DIMS}")
    if not isinstance(val, list):
        f.fail(fld, f"must be an array of numbers, got {_show(val)}")
    for x in level:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or (
                isinstance(x, int) and abs(x) > 1.7976931348623157e308):
            f.fail(fld, f"must be an array of numbers, found {_show(x)}")
    try:
        arr = np.array(val, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        f.fail(fld, "must be a rectangular array of numbers")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        f.fail(fld, f"non-finite value {arr[idx]} at index {idx}")
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(arr.astype(dtype))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        f.fail(fld, f"value {arr[idx]} at index {idx} overflows {dtype}")
    return arr


def draw_arrays(case: Case) -> dict[str, np.ndarray]:
    """The inputs of a network case: one generator seeded with the case seed draws, in float64
    and in this order, X, the targets, then layer by layer its parameters (in the catalog's
    order) and its extra inputs (dropout's mask); explicit values replace their draw after,
    so overriding one array leaves the others' bits unchanged."""
    net, m = case.model, case.batch
    rng = np.random.default_rng(case.seed)
    if net.vocab:
        out: dict[str, np.ndarray] = {"X": rng.integers(0, net.vocab, size=(m, *net.input))}
    else:
        out = {"X": rng.standard_normal((m, *net.input)) * case.input_scale}
    loss = NETWORK_LOSSES[net.loss]
    n_out = net.output_shape
    if loss.target == "y":
        out["y"] = rng.integers(0, n_out[-1], size=(m, *net.label_shape))
    elif net.loss == "binary_cross_entropy":
        out["Y"] = rng.uniform(0.0, 1.0, size=(m, *n_out))
    else:
        out["Y"] = rng.standard_normal((m, *n_out))
    for key, (_, _, param) in net.param_specs().items():
        out[key] = param.draw(rng, param.shape)
    for key, (_, _, shape, draw) in net.input_specs(m).items():
        out[key] = draw(rng, shape)
    out.update({k: v.copy() for k, v in case.values.items()})
    if loss.target == "y":
        out["y"] = np.asarray(out["y"], dtype=np.int64)
        out["Y"] = np.eye(n_out[-1])[out["y"]]
    dt = net.np_dtype
    # Ids (X of tokens, y) stay integers; everything else takes the case dtype (the mask too:
    # it multiplies the per-step losses).
    return {k: (v if k == "y" or (k == "X" and net.vocab) else np.asarray(v, dtype=dt)) for k, v in out.items()}


def memory_parts(net: Network, batch: int, n_backends: int, case_bytes: int,
                 comparison_bytes: int, compiled: int, per_layer: int) -> tuple[int, int, int, int]:
    """(records, arrays, compiled, working) bytes of one network case, as ``cases._memory_parts`` for an
    MLP: P parameters, A the elements of one set of per-layer values, NQ the quantities;
    ``per_layer`` is cases.COMPILED_BYTES_PER_NETWORK_LAYER (why there)."""
    s = net.np_dtype.itemsize
    P = net.n_params
    m = batch
    A = sum(m * math.prod(spec.out_shape) for spec in net.network)
    X, T = m * math.prod(net.input), m * math.prod(net.output_shape)
    Q = max([m * math.prod(spec.out_shape) for spec in net.network] + [P, X])
    NQ = len(net.algorithm_order()) + 1
    pairs = n_backends * (n_backends - 1) // 2
    records = case_bytes + pairs * NQ * comparison_bytes
    arrays = s * (X + 2 * T + P + A) + n_backends * s * (P + 4 * A) + 2 * A
    working = 8 * (12 * P + 14 * A + 2 * X + 2 * T + 16 * Q)
    return records, arrays, compiled + per_layer * net.L, working


# ----------------------------------------------------------------------------- sweeps

# The layer types a sweep composes around its dense layers. The spatial ones (conv2d and the
# pools) make a conv sweep: blocks on a [C, H, W] input, then flatten, then the dense head.
SPATIAL_LAYERS = ("conv2d", "maxpool2d", "avgpool2d")
# And the sequence ones make a sequence sweep: blocks on a [T, D] input (or token ids), then a
# head per step or on last_step / mean_over_time.
SEQUENCE_LAYERS = ("embedding", "rnn", "lstm", "attention", "residual")
SWEEP_LAYERS = ("batchnorm", "layernorm", "dropout", *SPATIAL_LAYERS, *SEQUENCE_LAYERS)
# A catalog sweep's families: each case draws one, by the summed weight of the layers of it that
# `layers` names, then a network of that family. "dense" names the dense family alone (an MLP
# of the catalog's dense layers); the shared layers (norms, dropout) belong to every family and
# weigh towards none.
FAMILIES = {"dense": ("dense",), "conv": SPATIAL_LAYERS, "sequence": SEQUENCE_LAYERS}
SHARED_LAYERS = ("batchnorm", "layernorm", "dropout")
CATALOG_LAYERS = ("dense", *SWEEP_LAYERS)
DEFAULT_SEQUENCE_INPUT = [[1, 6], [2, 8]]  # [T, D]
DEFAULT_VOCAB = [3, 12]
LAYERS_PER_SEQUENCE_BLOCK = 6  # residual(layernorm, dense, relu, dense) or residual(layernorm, attention)
SWEEP_LOSSES = tuple(NETWORK_LOSSES)
MIN_NORMALISED = 4  # features a sweep's layernorm or batchnorm normalises, at least
MAX_KERNEL = 4  # a conv sweep's kernels are 1..4 along each axis (at most the padded input)
MAX_POOL = 3  # and its pooling windows 2..3 (at most the input)
MAX_PADDING = 1
MAX_STRIDE = 2
LAYERS_PER_BLOCK = 4  # conv2d, batchnorm, activation, pool
DEFAULT_BLOCKS = [1, 2]
DEFAULT_FILTERS = [1, 4]
DEFAULT_SPATIAL_INPUT = [[1, 3], [5, 12], [5, 12]]


def _draw(rng: np.random.Generator, lo_hi) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def pick(rng: np.random.Generator, names: list[str], weights: dict[str, float] | None = None) -> str:
    """One of ``names``, each with probability proportional to its weight. Equal weights (or
    none) make one ``integers(0, n)`` call, the draw every sweep made before weights existed,
    so a list and a table of equal weights name the same cases."""
    if weights is None or len({weights[n] for n in names}) <= 1:
        return names[int(rng.integers(0, len(names)))]
    cum = np.cumsum([weights[n] for n in names])
    return names[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(names) - 1)]


def heads_of(D: int, heads: list[int] | None) -> list[int]:
    """The head counts an attention over D features may draw: today's 1, 2 or 4 without a
    ``heads`` range, else the divisors of D in it (each head gets D / heads features)."""
    if heads is None:
        return [h for h in (1, 2, 4) if D % h == 0]
    return [h for h in range(heads[0], min(heads[1], D) + 1) if D % h == 0]


def _draw_width(rng: np.random.Generator, lo_hi, heads: list[int] | None) -> int:
    """A sequence width from ``lo_hi``; with a ``heads`` range, moved up (wrapping round to lo)
    to the first width some head count in it divides, so an attention can follow. The search
    is short: a multiple of heads lo comes every heads lo widths (cases.MAX_HEADS at most)."""
    D = _draw(rng, lo_hi)
    if heads is None:
        return D
    lo, hi = lo_hi
    for d in (*range(D, hi + 1), *range(lo, D)):
        if heads_of(d, heads):
            return d
    raise AssertionError(f"no width in {lo_hi} takes heads {heads}: the loader checks this")


def draw_network(rng: np.random.Generator, depth, width, hidden, losses, extras, dtypes, l2, forms,
                 spatial: dict | None = None, sequence: dict | None = None,
                 weights: dict[str, float] | None = None) -> dict:
    """One random network of a sweep, as the raw table a case file would hold.

    ``depth`` dense layers, the last one the output; each hidden dense is followed, each with
    probability ½ and in this order, by a norm from ``extras``, its activation (fused into the
    dense or as a layer of its own), and dropout. With ``spatial`` (a conv sweep: ``input``,
    ``blocks`` and ``filters`` ranges) the dense head sits on ``_draw_blocks``'s convolutional
    blocks and a flatten. ``weights`` (a sweep's ``layers`` table): where the draw chooses
    between layer types (a batch or a layer norm, a max or an average pool, an rnn, lstm or
    attention block), each is chosen in proportion to its weight. The draw order is fixed: a
    sweep's seed names its cases.
    """
    L = int(rng.integers(depth[0], depth[1] + 1))
    loss = losses[int(rng.integers(0, len(losses)))]
    layers: list[dict] = []
    vocab = 0
    if sequence is not None:
        shape, vocab = _draw_sequence_blocks(rng, sequence, hidden, extras, layers, weights)
        # Logits per step (cross-entropy on N×T×V) or one row per example first.
        if not (loss == "cross_entropy" and rng.integers(0, 2)):
            layers.append({"layer": "last_step" if rng.integers(0, 2) else "mean_over_time"})
    elif spatial is None:
        shape = [int(rng.integers(width[0], width[1] + 1))]
    else:
        shape = [_draw(rng, r) for r in spatial["input"]]
        _draw_blocks(rng, tuple(shape), spatial, hidden, extras, layers, weights)
        layers.append({"layer": "flatten"})
    norms = [e for e in extras if e in ("batchnorm", "layernorm")]
    for _ in range(L - 1):
        units = int(rng.integers(max(width[0], 2), max(width[1], 2) + 1))
        act = hidden[int(rng.integers(0, len(hidden)))]
        fused = bool(rng.integers(0, 2))
        norm = pick(rng, norms, weights) if norms and rng.integers(0, 2) else None
        if norm:
            # Normalising 2 or 3 values pins x̂ near ±1 and passes almost no gradient: all
            # below it is then rounding noise, a degenerate network rather than a check.
            units = max(units, MIN_NORMALISED)
        drop = "dropout" in extras and bool(rng.integers(0, 2))
        rate = round(float(rng.uniform(0.0, 0.5)), 2)
        if fused and not norm:
            layers.append({"layer": "dense", "units": units, "activation": act})
        else:
            layers.append({"layer": "dense", "units": units})
            if norm:
                layers.append({"layer": norm})
            layers.append({"layer": act})
        if drop:
            layers.append({"layer": "dropout", "rate": rate})
    n_out = int(rng.integers(max(width[0], 2), max(width[1], 2) + 1))
    layers.append({"layer": "dense", "units": n_out})
    if loss == "half_sse":
        out = (hidden + ["softmax"])[int(rng.integers(0, len(hidden) + 1))]
        layers[-1]["activation"] = out
    lam = float(rng.uniform(l2[0], l2[1])) if l2[1] > 0 else 0.0
    form = forms[int(rng.integers(0, len(forms)))]
    dtype = dtypes[int(rng.integers(0, len(dtypes)))]
    out = {"input": shape, "network": layers, "loss": loss, "dtype": dtype, "l2": lam, "l2_form": form}
    return {**out, "vocab": vocab} if vocab else out


def _draw_sequence_blocks(rng: np.random.Generator, sequence: dict, hidden, extras, layers: list[dict],
                          weights: dict[str, float] | None = None) -> tuple[list[int], int]:
    """The blocks of a sequence sweep's network, appended to ``layers``; returns the input shape
    and the vocab (0 for real sequences). With ``embedding`` in ``extras`` the input is token
    ids half of the time. Each block is one of ``extras``' rnn (h0 a parameter with probability
    ½), lstm (likewise), attention (heads a divisor of the width, causal with probability ½;
    with residual in ``extras``, a pre-norm residual block around it with probability ½) or,
    with residual, a residual MLP block (layernorm, dense, activation, dense back to the width).
    A residual block starts with a layer norm when ``extras`` has it and the width is at least
    MIN_NORMALISED. With a ``heads`` range in ``sequence``, attention draws its heads from it and
    every width is one some head count in it divides (``_draw_width``)."""
    kinds = [k for k in ("rnn", "lstm", "attention") if k in extras] or ["attention"]
    heads = sequence.get("heads") if "attention" in kinds else None
    T, D = _draw(rng, sequence["input"][0]), _draw_width(rng, sequence["input"][1], heads)
    D0, vocab = D, 0
    if "embedding" in extras and rng.integers(0, 2):
        vocab = _draw(rng, sequence["vocab"])
        layers.append({"layer": "embedding", "dim": D})
    residual = "residual" in extras
    for _ in range(_draw(rng, sequence["blocks"])):
        # pre-norm, where there are enough features to normalise (see MIN_NORMALISED)
        norm = [{"layer": "layernorm"}] if "layernorm" in extras and D >= MIN_NORMALISED else []
        kind = pick(rng, kinds, weights)
        if residual and rng.integers(0, 4) == 0:  # a residual MLP block instead
            act = hidden[int(rng.integers(0, len(hidden)))]
            body = [*norm, {"layer": "dense", "units": 2 * D, "activation": act}, {"layer": "dense", "units": D}]
            layers.append({"layer": "residual", "body": body})
        elif kind == "attention":
            counts = heads_of(D, heads)
            layer = {"layer": "attention", "heads": counts[int(rng.integers(0, len(counts)))],
                     "causal": bool(rng.integers(0, 2))}
            wrap = residual and rng.integers(0, 2)
            layers.append({"layer": "residual", "body": [*norm, layer]} if wrap else layer)
        else:
            layer = {"layer": kind, "hidden": D if residual else _draw_width(rng, sequence["input"][1], heads)}
            if rng.integers(0, 2):
                layer["h0"] = True
            layers.append(layer)
            D = layer["hidden"]
    return ([T] if vocab else [T, D0]), vocab


def _pair_or_int(h: int, w: int) -> int | list[int]:
    return h if h == w else [h, w]


def _draw_blocks(rng: np.random.Generator, shape: tuple[int, int, int], spatial: dict, hidden,
                 extras, layers: list[dict], weights: dict[str, float] | None = None) -> None:
    """The convolutional blocks of a conv sweep's network, appended to ``layers``: each is a
    conv2d (when ``extras`` has it) with its activation, fused or a layer of its own, or after a
    spatial batch norm (probability ½, when ``extras`` has batchnorm and there are at least
    MIN_NORMALISED positions), then with probability ½ (always, without conv2d) a pool of
    ``extras``. Every size is drawn to fit the input it gets, so every network is valid:
    kernel k ≤ H + 2p along each axis (padding at most k − 1), pool window ≤ H. With a
    ``kernel`` range [lo, hi] in ``spatial`` (default 1..MAX_KERNEL), k ≥ lo: the padding is
    raised to MAX_PADDING where lo needs it, and a block whose input is too small for lo even so
    has no conv2d (its pool only, if it draws one)."""
    _, H, W = shape
    conv = "conv2d" in extras
    pools = [e for e in extras if e in ("maxpool2d", "avgpool2d")]
    k_lo, k_hi = spatial.get("kernel", (1, MAX_KERNEL))
    for _ in range(_draw(rng, spatial["blocks"])):
        fits = conv and all(k_lo <= n + 2 * MAX_PADDING for n in (H, W))
        if fits:
            ks, ss, ps = [], [], []
            for n in (H, W):
                p = int(rng.integers(0, MAX_PADDING + 1))
                if k_lo > n + 2 * p:
                    p = MAX_PADDING
                k = int(rng.integers(k_lo, min(k_hi, n + 2 * p) + 1))
                p = min(p, k - 1)  # padding beyond k − 1 only adds outputs made of zeros
                s = int(rng.integers(1, MAX_STRIDE + 1))
                ks.append(k), ss.append(s), ps.append(p)
            F = _draw(rng, spatial["filters"])
            act = hidden[int(rng.integers(0, len(hidden)))]
            fused = bool(rng.integers(0, 2))
            norm = "batchnorm" in extras and bool(rng.integers(0, 2))
            H, W = ((n + 2 * p - k) // s + 1 for n, k, s, p in zip((H, W), ks, ss, ps))
            layer: dict[str, Any] = {"layer": "conv2d", "filters": F, "kernel": _pair_or_int(*ks)}
            if ss != [1, 1]:
                layer["stride"] = _pair_or_int(*ss)
            if ps != [0, 0]:
                layer["padding"] = _pair_or_int(*ps)
            norm = norm and H * W >= MIN_NORMALISED
            if norm:
                layer["bias"] = False  # batch norm subtracts the mean per channel, b with it
                layers += [layer, {"layer": "batchnorm"}, {"layer": act}]
            elif fused:
                layers.append({**layer, "activation": act})
            else:
                layers += [layer, {"layer": act}]
        if pools and H * W > 1 and (not fits or rng.integers(0, 2)):  # a 1×1 window is a copy
            kind = pick(rng, pools, weights)
            size = [int(rng.integers(min(2, n), min(MAX_POOL, n) + 1)) for n in (H, W)]
            stride = [int(rng.integers(1, k + 1)) for k in size]  # below the size: overlapping
            layer = {"layer": kind, "size": _pair_or_int(*size)}
            if stride != size:
                layer["stride"] = _pair_or_int(*stride)
            layers.append(layer)
            H, W = ((n - k) // s + 1 for n, k, s in zip((H, W), size, stride))


def network_of(raw: dict, max_dim: int, max_depth: int, batch: int = 0) -> Network:
    """The Network of a drawn table (``draw_network``), through the same checks as a file's."""
    f = _Fields({"name": "drawn", **raw}, {"name", *raw}, "<sweep>", "drawn")
    return parse_network(f, raw["loss"], raw["dtype"], max_dim, max_depth, batch)
