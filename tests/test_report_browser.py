"""A report rendered in headless Chromium: screenshot, every image decoded, no console errors.

Skips cleanly when Chromium is not installed and cannot be installed (root + apt-get).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from bayesbio.report import (
    write_report,
)

from report_helpers import fit_bad_run, parse, synthetic_lv


@pytest.fixture(scope="module")
def bad_run():
    return fit_bad_run()


_CHROMIUM: list = []


def _find_chromium() -> str | None:
    """Headless Chromium: on PATH, else one attempt at `apt-get install chromium` (root only)."""
    if _CHROMIUM:
        return _CHROMIUM[0]
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if (
        found is None
        and os.environ.get("BAYESBIO_NO_BROWSER_INSTALL") != "1"
        and shutil.which("apt-get")
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
    ):
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    _CHROMIUM.append(found)
    return found


_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  var d = document.createElement("div");
  d.id = "img-check"; d.setAttribute("data-total", imgs.length); d.setAttribute("data-broken", broken);
  document.body.appendChild(d);
  console.log("bayesbio-probe-console");
});
</script>"""


def _chromium_args(binary, profile):
    return [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


@pytest.mark.parametrize("which", ["bad", "lv"])
def test_report_renders_in_headless_chromium(which, request, tmp_path_factory):
    binary = _find_chromium()
    if binary is None:
        pytest.skip("headless Chromium not available (install the Debian package 'chromium')")
    out = tmp_path_factory.mktemp(f"browser_{which}")
    idata = request.getfixturevalue("bad_run") if which == "bad" else synthetic_lv()
    report = write_report(idata, out / "report.html")
    n_images = len(parse(report.read_text(encoding="utf-8")).images)

    # 1. screenshot of the report as it is
    shot = out / "screenshot.png"
    proc = subprocess.run(
        _chromium_args(binary, out / "profile1")
        + [f"--screenshot={shot}", "--window-size=1280,4000", report.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not shot.is_file():
        pytest.skip(f"Chromium could not take a screenshot here (rc={proc.returncode}): {proc.stderr[-500:]}")
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    non_white = np.mean(np.any(rgb < 235, axis=-1))
    bluish = np.mean((rgb[..., 2] > rgb[..., 0] + 40) & (rgb[..., 2] > 120))  # plot colour C0 is blue
    assert non_white > 0.03 and bluish > 0.002, (non_white, bluish)
    print(f"\nscreenshot: {shot}")

    # 2. a copy with a load-time probe (the report itself has no JavaScript): every image decoded,
    #    and the console capture works (the probe's own message must be seen, nothing else)
    probe = out / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    proc = subprocess.run(
        _chromium_args(binary, out / "profile2") + ["--dump-dom", probe.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    m = re.search(r'<div id="img-check" data-total="(\d+)" data-broken="(\d+)">', proc.stdout)
    assert m, proc.stdout[-500:]
    assert int(m.group(1)) == n_images > 0 and int(m.group(2)) == 0
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert any("bayesbio-probe-console" in ln for ln in console), "console capture did not work"
    assert all("bayesbio-probe-console" in ln for ln in console), console

