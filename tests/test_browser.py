"""report.html as a person sees it: headless Chromium loads it offline, with no console errors,
and shows the verdict, the heatmap and the tables. The screenshot is kept beside the report
in pytest's temporary folder (the path is printed with -s), never in the checkout."""

import re
import shutil
import subprocess

import pytest

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`; .ci/run installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def _chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report"
    casefile = tmp_path_factory.mktemp("cases") / "cases.toml"
    casefile.write_text('[[case]]\nname = "tanh-3-layer"\nlayers = [5, 7, 6, 4]\nactivations = "tanh"\n'
                        'loss = "cross_entropy"\nbatch = 8\n\n[[case]]\nname = "bce-f32"\nlayers = [4, 3]\n'
                        'activations = ["sigmoid"]\nloss = "binary_cross_entropy"\nbatch = 2\n'
                        'dtype = "float32"\n')
    assert run_cli("run", casefile, "--out", out).returncode == 0
    return out / "report.html"


def test_page_loads_offline_and_shows_everything(report, tmp_path):
    proc = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Verdict: all agree" in dom
    assert re.search(r'<img alt="agreement heatmap" src="data:image/png;base64,[A-Za-z0-9+/]{1000}', dom)
    assert dom.count("<table") >= 4  # summary, two case tables, environment
    assert "tanh-3-layer" in dom and "Environment" in dom
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_screenshot_for_a_person(report, tmp_path):
    shot = report.with_name("report.png")
    shot.unlink(missing_ok=True)
    proc = _chromium(tmp_path, "--window-size=1280,1800", f"--screenshot={shot}", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:4] == b"\x89PNG" and len(data) > 20_000  # a rendered page, not a blank one
    print(f"screenshot: {shot}")
