"""The page `dvc plots show` writes: its template (.dvc/plots/page.html) holds the vendored chart libraries, so
it needs no network."""

import configparser
import re

from conftest import REPO, load_script
from dvc_render.vega import VegaRenderer

PLOTS = REPO / ".dvc" / "plots"
TEMPLATE = PLOTS / "page.html"
make_page = load_script(PLOTS / "make_page.py")


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
