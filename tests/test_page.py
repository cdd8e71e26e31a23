"""The page `dvc plots show` writes: its template (.dvc/plots/page.html) holds the vendored chart libraries, so
it needs no network, and .ci/check_page.py, which opens a page in headless Chromium, fails on pages that do not
draw. The page of a real `dvc plots show` is checked in test_pipeline.py."""

import configparser
import json
import re

from conftest import REPO, check_page, load_script, needs_chromium
from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer

PLOTS = REPO / ".dvc" / "plots"
TEMPLATE = PLOTS / "page.html"
make_page = load_script(PLOTS / "make_page.py")

SPEC = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"x": 0, "y": 0}, {"x": 1, "y": 0.8}, {"x": 2, "y": 1}]},
    "mark": "line",
    "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}},
}


def test_dvc_config_names_the_page_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    # relative to .dvc/, as DVC resolves it
    assert (REPO / ".dvc" / config["plots"]["html_template"]).resolve() == TEMPLATE


def test_page_template_is_made_from_the_vendored_libraries():
    assert TEMPLATE.read_text(encoding="utf-8") == make_page.render(), "run python .dvc/plots/make_page.py"
    for name, version, _, _ in make_page.LIBRARIES:
        assert f"/* {name} {version} */" in TEMPLATE.read_text(encoding="utf-8")
        assert (make_page.VENDOR / f"{name}.LICENSE").read_text().startswith("Copyright (c)")
    # the versions are the ones dvc-render's default page loads
    for name, version, _, _ in make_page.LIBRARIES:
        assert f'https://cdn.jsdelivr.net/npm/{name}@{version}"' in VegaRenderer.SCRIPTS


def test_page_template_loads_nothing_and_is_filled_once():
    page = TEMPLATE.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1  # DVC replaces every occurrence
    assert "{scripts}" not in page  # else DVC would add its CDN script tags
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", page, flags=re.DOTALL)  # the libraries out
    assert markup.count("<script") == 3
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", markup)


def chart(name: str, spec: dict, style: str = "") -> str:
    """A chart div as dvc-render writes it (VegaRenderer.DIV), optionally styled."""
    div = VegaRenderer.DIV.format(id=name, partial=json.dumps(spec))
    return div.replace(f'<div id = "{name}">', f'<div id = "{name}" style="{style}">') if style else div


def write_page(tmp_path, template: str, body: str):
    page = tmp_path / "index.html"
    page.write_text(template.replace("{refresh_tag}", "").replace("{scripts}", "").replace("{plot_divs}", body))
    return page


@needs_chromium
def test_check_page_passes_a_drawn_chart_and_writes_a_screenshot(tmp_path):
    page = write_page(tmp_path, TEMPLATE.read_text(encoding="utf-8"), chart("good", SPEC))
    result = check_page(page, tmp_path / "shots" / "page.png")
    assert result.returncode == 0
    assert "chart #good: canvas" in result.stdout and "1 charts and 0 images checked: ok" in result.stdout
    assert (tmp_path / "shots" / "page.png").read_bytes().startswith(b"\x89PNG")


@needs_chromium
def test_check_page_fails_on_charts_that_draw_nothing_and_missing_images(tmp_path):
    body = "\n".join(
        [
            chart("good", SPEC),
            chart("broken", {**SPEC, "mark": "no-such-mark"}),
            chart("hidden", SPEC, style="display: none"),
            '<img src="static/missing.png">',
        ]
    )
    result = check_page(write_page(tmp_path, TEMPLATE.read_text(encoding="utf-8"), body), timeout=20)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "FAIL chart #broken: drew nothing (no svg or canvas)" in fails
    assert "FAIL chart #hidden: its canvas is 0x0" in fails
    assert "FAIL image static/missing.png: not loaded" in fails
    assert any(line.startswith("FAIL uncaught exception:") for line in fails)  # vega-embed's, for #broken
    assert not any("#good" in line for line in fails)


@needs_chromium
def test_check_page_fails_on_a_page_that_needs_the_network(tmp_path):
    # dvc-render's default page: the libraries come from a CDN
    page = write_page(tmp_path, PAGE_HTML.replace("{scripts}", VegaRenderer.SCRIPTS), chart("good", SPEC))
    result = check_page(page, timeout=20)
    assert result.returncode == 1
    assert "FAIL network request attempted: https://cdn.jsdelivr.net/npm/vega@5.20.2" in result.stdout
    assert "FAIL chart #good: drew nothing (no svg or canvas)" in result.stdout
