"""Convolutional networks in case files: their bad-input rules, the output-shape formula of the
shipped cases, and the seeded sweep that composes random conv networks.

Every bad conv input is one line naming file, case, layer and field, through ``load_file`` and
through the CLI (exit 2, no traceback, nothing written): the CLI's ``main`` on each in one
interpreter, and ``python -m harness`` itself on two. Then the shapes of
cases/networks.toml against Ho = ⌊(H + 2p − k)/s⌋ + 1 and against torch's own, and last the
conv sweep: seeded, every drawn network valid, three of them agreeing (manual and torch only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_network_cases import _assert_one_line, assert_input_error

from harness import network_cases as nc
from harness.cases import load_file
from harness.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "cases" / "networks.toml"
SPATIAL = ("conv2d", "maxpool2d", "avgpool2d")


def case_text(network: str, *, input: str = "[2, 6, 6]", values: str = "", batch: int = 2) -> str:
    lines = ["[[case]]", 'name = "net"', f"input = {input}", 'loss = "cross_entropy"',
             f"batch = {batch}", f"network = [{network}]"]
    if values:
        lines += ["[case.values]", values]
    return "\n".join(lines) + "\n"


def conv(**attrs) -> str:
    return "{" + ", ".join(['layer = "conv2d"'] + [f"{k} = {v}" for k, v in attrs.items()]) + "}"


HEAD = '{layer = "flatten"}, {layer = "dense", units = 3}'
MAXPOOL = '{layer = "maxpool2d", size = %s}'


def _w1(f: int, c: int, k: int) -> str:
    """An explicit F×C×k×k kernel, W1 = [[[[0.1, ...], ...], ...], ...]."""
    row = "[" + ", ".join(["0.1"] * k) + "]"
    plane = "[" + ", ".join([row] * k) + "]"
    return "[" + ", ".join(["[" + ", ".join([plane] * c) + "]"] * f) + "]"


# (id, case text, field, layer named in the line, words the message holds)
BAD = [
    ("kernel-larger-than-padded-input", case_text(f"{conv(filters=2, kernel=5, padding=0)}, {HEAD}", input="[1, 4, 6]"),
     "layer 1 (conv2d).kernel", "layer 1 (conv2d)", ["5×5", "larger than the input", "4×6"]),
    ("kernel-larger-despite-padding", case_text(f"{conv(filters=2, kernel='[7, 3]', padding=1)}, {HEAD}", input="[1, 4, 6]"),
     "layer 1 (conv2d).kernel", "layer 1 (conv2d)", ["7×3", "6×8", "padding 1×1"]),
    ("stride-0", case_text(f"{conv(filters=2, kernel=3, stride=0)}, {HEAD}"),
     "layer 1 (conv2d).stride", "layer 1 (conv2d)", ["positive", "got 0"]),
    ("stride-0-in-one-direction", case_text(f"{conv(filters=2, kernel=3, stride='[1, 0]')}, {HEAD}"),
     "layer 1 (conv2d).stride", "layer 1 (conv2d)", ["positive in both directions", "[1, 0]"]),
    ("pool-size-0", case_text(f"{conv(filters=2, kernel=3)}, {MAXPOOL % 0}, {HEAD}"),
     "layer 2 (maxpool2d).size", "layer 2 (maxpool2d)", ["positive", "got 0"]),
    ("avgpool-size-0", case_text(f'{{layer = "avgpool2d", size = [2, 0]}}, {HEAD}'),
     "layer 1 (avgpool2d).size", "layer 1 (avgpool2d)", ["positive", "[2, 0]"]),
    ("padding-negative", case_text(f"{conv(filters=2, kernel=3, padding=-1)}, {HEAD}"),
     "layer 1 (conv2d).padding", "layer 1 (conv2d)", ["non-negative", "-1"]),
    ("filters-0", case_text(f"{conv(filters=0, kernel=3)}, {HEAD}"),
     "layer 1 (conv2d).filters", "layer 1 (conv2d)", ["positive", "got 0"]),
    ("kernel-3-elements", case_text(f"{conv(filters=2, kernel='[3, 3, 3]')}, {HEAD}"),
     "layer 1 (conv2d).kernel", "layer 1 (conv2d)", ["pair [h, w]", "[3, 3, 3]"]),
    ("conv-on-a-vector", case_text(f"{conv(filters=2, kernel=3)}, {HEAD}", input="[16]"),
     "layer 1 (conv2d)", "layer 1 (conv2d)", ["[C, H, W]", "[16]"]),
    ("conv-after-flatten", case_text(f'{{layer = "flatten"}}, {conv(filters=2, kernel=1)}, {HEAD}'),
     "layer 2 (conv2d)", "layer 2 (conv2d)", ["[C, H, W]", "[72]", "before any flatten"]),
    ("pool-on-a-sequence", case_text(f"{MAXPOOL % 2}, {HEAD}", input="[4, 5]"),
     "layer 1 (maxpool2d)", "layer 1 (maxpool2d)", ["[C, H, W]", "[4, 5]"]),
    ("layernorm-on-CxHxW", case_text(f'{conv(filters=2, kernel=3)}, {{layer = "layernorm"}}, {HEAD}'),
     "layer 2 (layernorm)", "layer 2 (layernorm)", ["[2, 4, 4]", "batchnorm", "flatten"]),
    ("dense-without-flatten", case_text(f'{conv(filters=2, kernel=3)}, {{layer = "relu"}}, {{layer = "dense", units = 3}}'),
     "layer 3 (dense)", "layer 3 (dense)", ["[2, 4, 4]", "add", "flatten"]),
    ("W1-wrong-channels", case_text(f"{conv(filters=2, kernel=3)}, {HEAD}", input="[3, 5, 5]", values=f"W1 = {_w1(2, 1, 3)}"),
     "values.W1", "layer 1 (conv2d)", ["input channel", "1", "3", "filters×C×kh×kw"]),
    ("maxpool-larger-than-input", case_text(f"{conv(filters=2, kernel=3)}, {MAXPOOL % '[2, 5]'}, {HEAD}"),
     "layer 2 (maxpool2d).size", "layer 2 (maxpool2d)", ["2×5", "larger than the input 4×4"]),
]


@pytest.mark.parametrize("text, field, layer, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_conv_input_is_one_input_error(text, field, layer, words, tmp_path):
    assert_input_error(tmp_path, text, field, layer, words)


# One interpreter runs the CLI's ``main`` on every bad file in turn (starting one per file costs
# a second of imports each); two files also go through ``python -m harness`` itself.
DRIVER = """
import contextlib, io, json, sys, traceback
from harness.cli import main
out = []
for path, dest in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["run", path, "--out", dest])
        except BaseException:  # what `python -m harness` would show as a traceback
            traceback.print_exc(file=err)
            code = -1
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def _run_main_on_each(jobs: list[tuple[Path, Path]]) -> list[tuple[int, str]]:
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([[str(a), str(b)] for a, b in jobs])],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


# ============================================================================ sweep settings

def sweep_text(**settings) -> str:
    base = {"name": '"cs"', "count": 2, "seed": 1, "layers": '["conv2d", "maxpool2d"]'}
    base.update(settings)
    return "[[sweep]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


# (id, sweep text, field, words)
BAD_SWEEPS = [
    ("input-2-entries", sweep_text(input="[[1, 2], [4, 8]]"), "input", ["[C, H, W]", "2 entries"]),
    ("input-size-0", sweep_text(input="[1, [0, 8], [4, 8]]"), "input[1]", ["H", "1 <= lo <= hi", "[0, 8]"]),
    ("input-range-reversed", sweep_text(input="[1, [4, 8], [8, 4]]"), "input[2]", ["W", "[8, 4]"]),
    ("input-not-a-number", sweep_text(input='["3", 8, 8]'), "input[0]", ["C", "'3'"]),
    ("input-without-conv-layers", sweep_text(layers='["batchnorm"]', input="[1, 8, 8]"),
     "input", ["conv sweep", "conv2d, maxpool2d or avgpool2d"]),
    ("input-in-an-mlp-sweep", sweep_text(layers=None, input="[1, 8, 8]"),
     "input", ["conv sweep", "conv2d, maxpool2d or avgpool2d"]),
    ("blocks-without-conv-layers", sweep_text(layers='["dropout"]', blocks="[1, 2]"), "blocks", ["conv sweep"]),
    ("filters-without-conv2d", sweep_text(layers='["maxpool2d"]', filters="[1, 2]"), "filters", ["no conv2d"]),
    ("blocks-0", sweep_text(blocks="[0, 2]"), "blocks", ["1 <= lo <= hi", "[0, 2]"]),
    ("blocks-too-many", sweep_text(blocks="[1, 500]"), "blocks", ["at most 1000 layers", "[1, 500]"]),
    ("filters-0", sweep_text(filters="[0, 3]"), "filters", ["1 <= lo <= hi", "[0, 3]"]),
    ("input-scale-in-a-network-sweep", sweep_text(input_scale="[1e3, 1e6]"), "input_scale",
     ["network sweep", "scale 1", "MLP sweep"]),
    ("unknown-layer", sweep_text(layers='["conv2", "maxpool2d"]'), "layers[0]",
     ["unknown name 'conv2'", "did you mean 'conv2d'"]),
]
CLI_SWEEPS = {"input-size-0", "input-without-conv-layers"}


@pytest.mark.parametrize("text, field, words", [b[1:] for b in BAD_SWEEPS], ids=[b[0] for b in BAD_SWEEPS])
def test_bad_sweep_setting_is_one_input_error(text, field, words, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_file(path)
    err = info.value
    assert (err.file, err.case, err.field) == (str(path), "cs", field), str(err)
    _assert_one_line(str(err), path, field, None, words, case="cs")


def _check_exit_2(code: int, stderr: str, path, out, id_, field, layer, words, case) -> None:
    assert code == 2, (id_, code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, (id_, stderr)
    _assert_one_line(lines[0], path, field, layer, words, case=case)
    assert not out.exists(), id_


def test_bad_conv_input_exits_2_with_one_line(tmp_path):
    """Every conv rule and two sweep rules through the CLI's main: exit 2, one line."""
    jobs, expect = [], []
    for i, (id_, text, field, layer, words) in enumerate(BAD):
        expect.append((id_, field, layer, words, "net"))
        jobs.append((tmp_path / f"bad{i}.toml", tmp_path / f"out{i}"))
        jobs[-1][0].write_text(text)
    for id_, text, field, words in BAD_SWEEPS:
        if id_ in CLI_SWEEPS:
            expect.append((id_, field, None, words, "cs"))
            jobs.append((tmp_path / f"{id_}.toml", tmp_path / f"out-{id_}"))
            jobs[-1][0].write_text(text)
    results = _run_main_on_each(jobs)
    assert len(results) == len(jobs)
    for (path, out), (id_, field, layer, words, case), (code, stderr) in zip(jobs, expect, results):
        _check_exit_2(code, stderr, path, out, id_, field, layer, words, case)


@pytest.mark.parametrize("id_", ["W1-wrong-channels", "dense-without-flatten"])
def test_bad_conv_input_exits_2_from_python_m_harness(id_, tmp_path):
    (text, field, layer, words), = [b[1:] for b in BAD if b[0] == id_]
    path, out = tmp_path / "bad.toml", tmp_path / "out"
    path.write_text(text)
    proc = run_cli("run", path, "--out", out)
    _check_exit_2(proc.returncode, proc.stderr, path, out, id_, field, layer, words, "net")


def test_every_rule_of_the_issue_is_covered():
    ids = {b[0] for b in BAD}
    assert len(ids) == len(BAD) and CLI_SWEEPS <= {b[0] for b in BAD_SWEEPS}
    for rule in ("kernel-larger-than-padded-input", "stride-0", "pool-size-0", "padding-negative",
                 "filters-0", "kernel-3-elements", "conv-on-a-vector", "dense-without-flatten",
                 "W1-wrong-channels", "maxpool-larger-than-input"):
        assert rule in ids, rule


# ============================================================================ shapes

def _geometry(spec) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """kernel, stride, padding of a conv or pool spec, read from its attributes (not conv.py's)."""
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    if spec.kind == "conv2d":
        return pair(spec["kernel"]), pair(spec["stride"]), pair(spec["padding"])
    k = pair(spec["size"])
    return k, (k if spec["stride"] is None else pair(spec["stride"])), (0, 0)


def _expected(spec) -> tuple[int, int, int]:
    (kh, kw), (sh, sw), (ph, pw) = _geometry(spec)
    C, H, W = spec.in_shape
    channels = spec["filters"] if spec.kind == "conv2d" else C
    return (channels, math.floor((H + 2 * ph - kh) / sh) + 1, math.floor((W + 2 * pw - kw) / sw) + 1)


def _spatial_specs(cases):
    return [(c.name, s) for c in cases for s in getattr(c.model, "network", ()) if s.kind in SPATIAL]


@pytest.fixture(scope="module")
def shipped():
    return load_file(NETWORKS)


def test_default_conv_cases_cover_the_issue(shipped):
    specs = [s for _, s in _spatial_specs(c for c in shipped if not c.name.startswith("conv-sweep"))]
    convs = [s for s in specs if s.kind == "conv2d"]
    geo = [_geometry(s) for s in convs]
    assert {s for _, (s, _), _ in geo} >= {1, 2} and {p for _, _, (p, _) in geo} >= {0, 1}
    assert any(kh != kw for (kh, kw), _, _ in geo) and any(k == (1, 1) for k, _, _ in geo)
    channels = {s.in_shape[0] for s in convs}
    assert 1 in channels and max(channels) > 1
    pools = [s for s in specs if s.kind != "conv2d"]
    assert {s.kind for s in pools} == {"maxpool2d", "avgpool2d"}
    for kind in ("maxpool2d", "avgpool2d"):
        mine = [(s, _geometry(s)) for s in pools if s.kind == kind]
        assert any(st[0] < k[0] or st[1] < k[1] for s, (k, st, _) in mine), f"{kind}: no overlap"
        assert any((s.in_shape[1] - k[0]) % st[0] or (s.in_shape[2] - k[1]) % st[1]
                   for s, (k, st, _) in mine), f"{kind}: the floor never drops anything"
    nets = {c.name: c.model for c in shipped}
    assert any(s.kind == "batchnorm" and len(s.in_shape) == 3 for n in nets.values()
               for s in getattr(n, "network", ()))
    lenet = [s.kind for s in nets["lenet"].network]
    assert lenet == ["conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d", "flatten", "dense"]
    assert nets["lenet"].dtype == "float64" and nets["lenet-f32"].dtype == "float32"
    assert nets["lenet-f32"].network == nets["lenet"].network


def test_output_shapes_match_the_formula_and_torch(shipped):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    specs = _spatial_specs(shipped)
    assert len(specs) >= 10
    for name, spec in specs:
        assert spec.out_shape == _expected(spec), (name, spec.index, spec.out_shape)
        (k, s, p) = _geometry(spec)
        x = torch.zeros((1, *spec.in_shape), dtype=torch.float64)
        if spec.kind == "conv2d":
            w = torch.zeros((spec["filters"], spec.in_shape[0], *k), dtype=torch.float64)
            y = F.conv2d(x, w, stride=s, padding=p)
        elif spec.kind == "maxpool2d":
            y = F.max_pool2d(x, k, s)
        else:
            y = F.avg_pool2d(x, k, s)
        assert tuple(y.shape[1:]) == spec.out_shape, (name, spec.index, tuple(y.shape), spec.out_shape)


# ============================================================================ the conv sweep

SWEEP = """
[[sweep]]
name = "cs"
count = 12
seed = {seed}
input = [[1, 3], [3, 9], [3, 9]]
layers = ["conv2d", "maxpool2d", "avgpool2d", "batchnorm", "dropout"]
depth = [1, 2]
width = [2, 5]
batch = [2, 4]
dtypes = ["float32", "float64"]
"""


def _sweep(tmp_path, seed: int, name: str):
    path = tmp_path / name
    path.write_text(SWEEP.format(seed=seed))
    return load_file(path)


def test_the_sweep_follows_its_seed(tmp_path):
    a, b = _sweep(tmp_path, 5, "a.toml"), _sweep(tmp_path, 5, "b.toml")
    c = _sweep(tmp_path, 6, "c.toml")
    assert [(x.name, x.model, x.batch, x.seed) for x in a] == [(x.name, x.model, x.batch, x.seed) for x in b]
    assert [x.model for x in a] != [x.model for x in c]
    arrays_a, arrays_b = a[0].arrays(), b[0].arrays()
    assert all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    assert all(isinstance(x.model.network[0].in_shape, tuple) and len(x.model.input) == 3 for x in a)


def test_dense_sweeps_draw_what_they_drew_before(shipped):
    """The conv blocks are drawn only by a conv sweep: catalog-sweep's names still mean the
    networks they meant (its first two, as drawn before conv sweeps existed)."""
    got = {c.name: c.model.describe() for c in shipped if c.name.startswith("catalog-sweep")}
    assert got["catalog-sweep-000"] == ("[2] dense7 relu dense9 layernorm gelu dense4 layernorm tanh "
                                        "dropout(0.32) dense7 cross_entropy l2=0.0515154(half_mean) float64")
    assert len(got) == 8 and not any("conv" in d or "pool" in d for d in got.values())


def _check_drawn(raw: dict) -> None:
    """Every conv and pool fits its input (by the formula, independently of the catalog), a
    flatten precedes the first dense, and the table builds into a Network."""
    net = nc.network_of(raw, 10**6, 1000)
    shape = tuple(raw["input"])
    flat = False
    for spec in net.network:
        assert spec.in_shape == shape
        if spec.kind in SPATIAL:
            assert not flat and len(shape) == 3
            (kh, kw), _, (ph, pw) = _geometry(spec)
            assert kh <= shape[1] + 2 * ph and kw <= shape[2] + 2 * pw, (spec.describe(), shape)
            assert spec.out_shape == _expected(spec)
            if spec.kind == "conv2d":
                assert ph < kh and pw < kw
        flat = flat or spec.kind == "flatten"
        if spec.kind == "dense":
            assert flat and len(shape) == 1
        shape = spec.out_shape


def test_every_drawn_conv_network_is_valid():
    """Many draws straight from the generator, over settings that stress the fit: inputs down
    to 1×1, one axis thin, many blocks, pools alone; every one builds and fits."""
    kinds, features = set(), set()
    settings = [
        ({"input": [[1, 3], [1, 4], [1, 4]], "blocks": [1, 4], "filters": [1, 3]}, list(nc.SWEEP_LAYERS)),
        ({"input": [[1, 1], [1, 1], [5, 9]], "blocks": [1, 3], "filters": [1, 2]}, ["conv2d", "avgpool2d"]),
        ({"input": [[2, 2], [6, 12], [6, 12]], "blocks": [2, 3], "filters": [1, 4]},
         ["conv2d", "maxpool2d", "avgpool2d", "batchnorm"]),
        ({"input": [[1, 2], [2, 7], [2, 7]], "blocks": [1, 3], "filters": [1, 1]}, ["maxpool2d", "avgpool2d"]),
    ]
    acts = ["relu", "tanh", "identity"]
    for spatial, extras in settings:
        rng = np.random.default_rng(11)
        for _ in range(150):
            raw = nc.draw_network(rng, [1, 3], [2, 6], acts, list(nc.SWEEP_LOSSES), extras,
                                  ["float64"], [0.0, 0.1], ["half"], spatial)
            _check_drawn(raw)
            for layer in raw["network"]:
                kinds.add(layer["layer"])
                if layer["layer"] == "conv2d":
                    features |= {f"{k}-{v != 1 and v != 0}" for k, v in layer.items() if k in ("stride", "padding")}
                    features.add("rect" if isinstance(layer["kernel"], list) else "square")
                    features.add("1x1" if layer["kernel"] == 1 else "kxk")
                elif layer["layer"] in SPATIAL:
                    features.add("overlap" if "stride" in layer else "tiled")
    assert set(SPATIAL) | {"batchnorm", "flatten", "dropout", "dense"} <= kinds
    assert {"stride-True", "padding-True", "rect", "square", "1x1", "kxk", "overlap", "tiled"} <= features


def test_three_swept_conv_networks_agree():
    from harness.backends import get
    from harness.runner import run_case

    swept = [c for c in load_file(NETWORKS) if c.name.startswith("conv-sweep")]
    assert 6 <= len(swept) <= 8
    assert all(any(s.kind in SPATIAL for s in c.model.network) for c in swept)
    backends = [get("manual"), get("torch")]
    for case in swept[:3]:
        result = run_case(case, backends)
        assert not result.errors, [e.message for e in result.errors]
        assert result.comparisons and all(c.passed for c in result.comparisons), \
            [c.message() for c in result.comparisons if not c.passed][:4]
        assert {q for c in result.comparisons for q in [c.quantity]} >= set(case.model.quantities())


def test_a_padded_strided_conv_that_crashed_xla_runs_in_the_jax_arm(tmp_path):
    """XLA 0.10.2 aborts the process (a CHECK failure in its algebraic simplifier, exit 134)
    compiling dx of a conv given its padding, for 4 images of 3×4×4, one 2×3 filter, stride
    (2, 1), padding (1, 0): catalog-534 of the shipped catalog sweep (this network, less its
    dropout) ended a serial run there.
    The jax arm pads first and gives the conv none (catalog/conv.py); here the case runs and
    agrees (in a process of its own: an abort would end only that)."""
    path = tmp_path / "xla.toml"
    path.write_text('''[[case]]
name = "xla-simplifier"
input = [1, 7, 4]
batch = 4
loss = "cross_entropy"
dtype = "float64"
network = [
  {layer = "conv2d", filters = 3, kernel = [1, 3], stride = [2, 1], padding = [0, 1], bias = false},
  {layer = "batchnorm"}, {layer = "identity"},
  {layer = "conv2d", filters = 1, kernel = [2, 3], stride = [2, 1], padding = [1, 0]},
  {layer = "gelu_tanh"}, {layer = "avgpool2d", size = 2, stride = [2, 1]}, {layer = "flatten"},
  {layer = "dense", units = 5}, {layer = "batchnorm"}, {layer = "gelu_tanh"}, {layer = "dense", units = 4},
]
''')
    proc = run_cli("run", path, "--backends", "manual,jax", "--quiet", "--out", tmp_path / "o")
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "ALL AGREE" in proc.stdout
