"""The page `dvc plots show` writes: its template (.dvc/plots/page.html) holds the vendored chart libraries, so
it needs no network, and .ci/check_page.py, which opens a page in headless Chromium, fails on pages that do not
draw. The chart templates (.dvc/plots/*.json) are checked on made-up results here, for what a reader sees in
each chart; the page of a real `dvc plots show` is checked in test_pipeline.py."""

import configparser
import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, chart_contents, chart_specs, check_page, load_script, needs_chromium, python_environment
from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer
from matplotlib import image
from matplotlib.colors import to_hex
from sklearn import metrics

from fraudflow import figures, operating, strategies, summary
from fraudflow.strategies import NETWORK, colour

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


# The chart templates (.dvc/plots/*.json) on made-up results: `dvc plots show` in a scratch DVC project holding this
# project's dvc.yaml (one file per kind of chart with every strategy's headline numbers, ROC, precision-recall,
# confusion and cost-by-k rows, each with its `order`; a training history per network strategy); the PNG figures drawn
# by fraudflow/figures.py from the same made-up results.
with contextlib.chdir(REPO):  # the strategies this project's params.yaml evaluates, in order: the legends' order
    STRATEGIES = [entry.name for entry in strategies.evaluated()]
    TRAINED = [entry.name for entry in strategies.evaluated() if entry.kind == NETWORK]  # with a training history
COLOURS = [colour(position) for position in range(len(STRATEGIES))]  # category10, by place among those evaluated
LEGEND = [[strategy, colour(position)] for position, strategy in enumerate(STRATEGIES)]
MEMBERS, EPOCHS = 2, 4
COUNTS = {"tn": 56855, "fp": 8, "fn": 26, "tp": 72}  # baseline's on the real data; the others differ
CELLS = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}  # (actual, predicted)
# then a training history per network strategy
CHARTS = ["headline", "roc", "precision_recall", "confusion", "cost_k", "importance"]
IMPORTANCE_COLUMNS = ["V14", "Amount", "V4"]  # the made-up importance's columns, in their rank's order
RECOMMENDED = STRATEGIES[len(STRATEGIES) // 2]  # neither the first nor the last: the mark must come from the data
COST_FN, COST_FP = 133, 5  # every made-up row's value is COST_FN
HISTORY_TITLES = [
    "Loss (the strategy's own; validation: cross-entropy)",
    "Validation ROC AUC",
    "Validation average precision",
    "Validation recall at 0.5",
]
PNG_FIGURES = ["roc", "prc", "calibration"]  # no confusion.png: it drew the confusion chart again


def made_up_scores(strategy: str, member: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with ties (rounded), so that the curves have points of equal recall and a rate 0; with
    `member`, a member's (the ensemble's plus noise)."""
    rng = np.random.default_rng(STRATEGIES.index(strategy))
    labels = np.r_[np.ones(40), np.zeros(4000)]
    scores = np.round(rng.normal(labels * (2.5 + 0.3 * STRATEGIES.index(strategy)), 1.0), 1)
    if member is not None:
        scores = scores + np.random.default_rng(100 + member).normal(0, 0.5, len(scores))
    return labels, scores


def made_up_costs(strategy: str) -> pd.DataFrame:
    """Cost per 1,000 rows of flagging when p / (1 - p) * COST_FN > k * COST_FP, on a log-spaced grid of k that
    holds the chosen k (chosen = 1): the least cost on a finer grid. Each strategy's odds are 10 times the one's
    before, so each has its own chosen k."""
    labels, scores = made_up_scores(strategy)
    odds = np.exp(scores - 6) * 10.0 ** (STRATEGIES.index(strategy) - 3)

    def cost(k):
        flagged = odds * COST_FN > k[:, None] * COST_FP
        errors = COST_FN * (~flagged & (labels == 1)).sum(1) + COST_FP * (flagged & (labels == 0)).sum(1)
        return 1000 * errors / len(labels)

    fine = np.logspace(-3, 3, 1000)
    chosen = fine[cost(fine).argmin()]
    k = np.unique(np.r_[np.logspace(-3, 3, 121), chosen])
    return pd.DataFrame({"k": k, "cost_per_1000": cost(k), "chosen": (k == chosen).astype(int)})


def made_up_headline(strategy: str) -> list[dict]:
    """The strategy's rows of plots/headline.csv as evaluate writes them (summary.headline_points): its made-up AP
    and its least made-up cost per 1,000 rows, each with an interval, recommended if it is RECOMMENDED."""
    labels, scores = made_up_scores(strategy)
    ap = metrics.average_precision_score(labels, scores)
    cost = made_up_costs(strategy)["cost_per_1000"].min()
    spread = 1 + STRATEGIES.index(strategy) / 10  # intervals of different widths
    result = {
        "average_precision": {"ensemble": ap, "ensemble_lower": ap - 0.04 * spread, "ensemble_upper": ap + 0.03},
        "value_rule": {
            "cost_per_1000": {"ensemble": cost, "ensemble_lower": cost / (1.5 * spread), "ensemble_upper": cost * 1.6}
        },
    }
    return summary.headline_points(result, strategy == RECOMMENDED)


def write_csv(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(data).to_csv(path, index=False)


def plot_rows(frames: dict) -> pd.DataFrame:
    """One chart's data as evaluate writes it (strategy, order, then the strategy's rows), but the strategies' rows
    in reverse order: the colours must come from `order`, not from where the rows stand."""
    parts = [pd.DataFrame(frame).assign(strategy=s, order=STRATEGIES.index(s)) for s, frame in frames.items()]
    table = pd.concat(parts[::-1], ignore_index=True)
    return table[["strategy", "order", *(c for c in table if c not in ("strategy", "order"))]]


def roc_frame(labels, scores) -> pd.DataFrame:
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr})


def prc_frame(labels, scores) -> pd.DataFrame:
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    return pd.DataFrame({"recall": recall, "precision": precision})


def figure_colours(figure) -> list[dict]:
    """Per axes of a matplotlib figure: its legend, [label, colour] per entry, and the colour of every line."""
    return [
        {
            "legend": [
                [text.get_text(), to_hex(handle.get_color())]
                for text, handle in zip(axes.get_legend().get_texts(), axes.get_legend().legend_handles, strict=True)
            ]
            if axes.get_legend()
            else [],
            "lines": [to_hex(line.get_color()) for line in axes.get_lines()],
        }
        for axes in figure.axes
    ]


def draw_figures(folder: Path, scores: dict) -> dict:
    """plots/<figure>.png as evaluate draws them (fraudflow/figures.py), from the made-up scores, strategies in the
    order evaluated; returns the colours of each figure's legend and lines."""
    colours, save = {}, figures.save_figure

    def keep(figure, path):
        colours[Path(path).stem] = figure_colours(figure)
        save(figure, path)

    curves, results, calibration = {}, {}, {}
    for strategy, (labels, ensemble) in scores.items():
        members = [made_up_scores(strategy, member)[1] for member in range(MEMBERS)]
        curves[strategy] = {
            "roc": (roc_frame(labels, ensemble), [roc_frame(labels, m) for m in members]),
            "prc": (prc_frame(labels, ensemble), [prc_frame(labels, m) for m in members]),
        }
        results[strategy] = {
            "roc_auc": {"ensemble": metrics.roc_auc_score(labels, ensemble)},
            "average_precision": {"ensemble": metrics.average_precision_score(labels, ensemble)},
        }
        probability = 1 / (1 + np.exp(-(ensemble - 6)))
        calibration[strategy] = {
            kind: operating.reliability(labels.astype(int), p)
            for kind, p in (("as trained", probability), ("calibrated", probability / 2))
        }
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keep)
        figures.draw_roc({s: c["roc"] for s, c in curves.items()}, results, folder / "roc.png")
        figures.draw_prc({s: c["prc"] for s, c in curves.items()}, results, folder / "prc.png")
        figures.draw_reliability(calibration, folder / "calibration.png")
    return colours


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """`dvc plots show` on made-up results of every strategy: the page, the scores, the confusion counts, the costs,
    the headline table (plots/headline.csv), the PNG figures' folder and the colours of their legends and lines."""
    root = tmp_path_factory.mktemp("made_up")
    env = python_environment()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, env=env, check=True)
    shutil.copytree(PLOTS, root / ".dvc" / "plots", dirs_exist_ok=True)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")  # dvc.yaml reads params (the networks, export's strategy)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    scores = {strategy: made_up_scores(strategy) for strategy in STRATEGIES}
    counts = {
        strategy: {**COUNTS, "tn": COUNTS["tn"] - 100 * number, "fp": COUNTS["fp"] + 100 * number}
        for number, strategy in enumerate(STRATEGIES)
    }
    costs = {strategy: made_up_costs(strategy) for strategy in STRATEGIES}
    plots = root / "plots"
    cells = {
        s: [{"actual": a, "predicted": p, "count": counts[s][key]} for (a, p), key in CELLS.items()] for s in counts
    }
    headline = plot_rows({s: made_up_headline(s) for s in STRATEGIES})
    write_csv(plots / "headline.csv", headline)
    write_csv(plots / "roc.csv", plot_rows({s: roc_frame(*scores[s]) for s in STRATEGIES}))
    write_csv(plots / "prc.csv", plot_rows({s: prc_frame(*scores[s]) for s in STRATEGIES}))
    write_csv(plots / "confusion.csv", plot_rows(cells))
    write_csv(plots / "costk.csv", plot_rows(costs))
    importance = {  # the made-up mean |contribution| of each column: strategy i's are i + 1 times the first's
        s: {"column": IMPORTANCE_COLUMNS, "rank": [1, 2, 3], "importance": [(i + 1) * v for v in (0.9, 0.5, 0.25)]}
        for i, s in enumerate(STRATEGIES)
    }
    write_csv(plots / "importance.csv", plot_rows(importance))
    for number, strategy in enumerate(TRAINED):  # training losses 10, 100, ... times the baseline's
        history = [
            {
                "member": member,
                "epoch": epoch,
                "loss": 0.01 * 10**number / epoch,
                "val_loss": 0.01 / epoch,
                "val_auc": 0.9,
                "val_prc": 0.7,
                "val_precision": 0.8,
                "val_recall": 0.75,
            }
            for member in range(MEMBERS)
            for epoch in range(1, EPOCHS + 1)
        ]
        write_csv(plots / "history" / f"{strategy}.csv", history)
    png_colours = draw_figures(plots, scores)
    subprocess.run(["dvc", "plots", "show"], cwd=root, env=env, check=True, capture_output=True)
    return {
        "page": root / "dvc_plots" / "index.html",
        "scores": scores,
        "counts": counts,
        "costs": costs,
        "headline": headline,
        "importance": importance,
        "plots": plots,
        "figures": png_colours,
    }


@pytest.fixture(scope="module")
def drawn(made_up):
    return chart_contents(made_up["page"])


def texts(chart: dict, role: str) -> list[str]:
    return [text for text_role, text in chart["texts"] if text_role == role]


def test_templates_name_no_strategy_and_colour_them_by_their_order():
    """Every chart colours a strategy by its place among those evaluated (the data's `order` column), in category10
    as the PNG figures (fraudflow.strategies.colour), and no template lists the strategies; a history chart (one
    strategy's) colours its members."""
    colours, sorts = {}, {}

    def scales(node, template):
        if isinstance(node, dict):
            if node.get("field") in ("strategy", "member") and "scale" in node:
                colours.setdefault(template, []).append((node["field"], node["scale"], node.get("sort")))
            if node.get("field") == "strategy" and "sort" in node:
                sorts.setdefault(template, []).append(node["sort"])
            for value in node.values():
                scales(value, template)
        elif isinstance(node, list):
            for value in node:
                scales(value, template)

    def values(node) -> list[str]:  # every text value a template holds (its keys aside)
        if isinstance(node, dict):
            return [text for value in node.values() for text in values(value)]
        if isinstance(node, list):
            return [text for value in node for text in values(value)]
        return [node] if isinstance(node, str) else []

    templates = {path.stem: json.loads(path.read_text()) for path in PLOTS.glob("*.json")}
    for name, template in templates.items():
        scales(template, name)
        drawn_parts = values({k: v for k, v in template.items() if k != "description"})
        for strategy in strategies.REGISTRY:
            named = [v for v in drawn_parts if v == strategy or f"'{strategy}'" in v or f'"{strategy}"' in v]
            assert not named, (name, strategy, named)
    assert set(colours) == {"headline", "roc_log", "precision_recall_steps", "cost_k", "history"}
    rank = {"calculate": "toNumber(datum.order)", "as": "strategy_rank"}
    for name, template_scales in colours.items():
        for field, scale, sort in template_scales:
            assert scale == {"scheme": "category10"}, name
            if name == "history":
                assert field == "member", name
            else:
                assert field == "strategy" and sort == {"field": "strategy_rank", "op": "min"}, name
                assert rank in templates[name]["transform"], name
    # the confusion matrices stand in the same order: their panels keyed by the zero-padded order, headed by the name
    column = templates["confusion_counts"]["facet"]["column"]
    assert (column["field"], column["header"]["labelExpr"]) == ("strategy_key", "slice(datum.label, 4)")
    assert "confusion_counts" not in sorts and rank in templates["confusion_counts"]["transform"]
    assert colour(len(strategies.PALETTE)) == colour(0)  # more strategies than colours: they repeat


def history_charts() -> list[str]:
    """The ids of the training history charts, one per network strategy, as dvc plots show names a directory's."""
    return [f"plots_history_{strategy}_csv" for strategy in sorted(TRAINED)]


@needs_chromium
def test_page_of_made_up_results_draws_every_chart_in_reading_order(made_up, tmp_path):
    assert list(chart_specs(made_up["page"])) == CHARTS + history_charts()  # the headline numbers first
    html = made_up["page"].read_text()
    images = re.findall(r'<img src="static/([^"]+)"', html)
    assert images == [f"workspace_plots_{figure}.png" for figure in sorted(PNG_FIGURES)]  # no confusion.png
    assert html.index(f'id = "{history_charts()[-1]}"') < html.index(images[0])  # images last
    result = check_page(made_up["page"], tmp_path / "page.png")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_chromium
def test_curves_are_named_and_coloured_by_strategy_in_the_order_evaluated(drawn):
    for chart in ("roc", "precision_recall", "cost_k"):
        assert drawn[chart]["legend"] == LEGEND, chart
        assert sorted(line["stroke"] for line in drawn[chart]["lines"]) == sorted(COLOURS), chart
    for chart in history_charts():  # one strategy's: a colour per member, then the line styles
        members = [[str(member), colour(member)] for member in range(MEMBERS)]
        assert drawn[chart]["legend"][:MEMBERS] == members, chart
        assert [label for label, _ in drawn[chart]["legend"][MEMBERS:]] == ["training", "validation"], chart


# Evaluated in a page like conftest's CHART_CONTENTS_JS: every item of every non-group mark of each chart, in page
# coordinates (its groups' offsets added), with the properties that say how it is drawn.
SCENE_JS = r"""async (specs) => {
  const charts = {};
  for (const [id, spec] of Object.entries(specs)) {
    const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), {renderer: 'none'});
    await view.runAsync();
    const items = [];
    const walk = (mark, dx, dy) => {
      for (const item of mark.items || []) {
        if (mark.marktype === 'group') {
          (item.items || []).forEach(child => walk(child, dx + (item.x || 0), dy + (item.y || 0)));
        } else {
          items.push({type: mark.marktype, role: mark.role, x: dx + (item.x || 0), y: dy + (item.y || 0),
                      x2: item.x2 === undefined ? null : dx + item.x2, height: item.height || 0,
                      fill: item.fill || null, stroke: item.stroke || null, strokeWidth: item.strokeWidth || null,
                      size: item.size || null, opacity: item.opacity === undefined ? 1 : item.opacity,
                      fontWeight: item.fontWeight || null, text: item.text === undefined ? null : String(item.text)});
        }
      }
    };
    walk(view.scenegraph().root, 0, 0);
    view.finalize();
    charts[id] = items;
  }
  return charts;
}"""


def scene(page: Path) -> dict:
    """Every drawn item of every chart on the page (SCENE_JS), by chart id."""
    return chart_contents(page, SCENE_JS)


def headline_panels(items: list[dict]) -> list[dict]:
    """The panels of a headline chart, row by row, left to right: each found by its x axis (a horizontal
    axis-domain rule under the panel), with its visible dots, interval rules, shaded bands and texts (the labels
    right of the panel included), each list top to bottom."""
    height = 30 * len(STRATEGIES)  # the template's row step
    axes = sorted(
        (item for item in items if item["role"] == "axis-domain" and item["x2"]), key=lambda a: (a["y"], a["x"])
    )
    panels = []
    for axis in axes:
        left, right, bottom = axis["x"] - 1, axis["x2"] + 1, axis["y"]

        def inside(item, left=left, right=right, bottom=bottom):
            return left <= item["x"] <= right and bottom - height - 1 <= item["y"] <= bottom

        marks = [item for item in items if item["role"] == "mark" and inside(item)]
        panels.append(
            {
                "left": axis["x"],
                "right": axis["x2"],
                "dots": sorted((m for m in marks if m["type"] == "symbol" and m["opacity"] > 0), key=lambda m: m["y"]),
                "rules": sorted((m for m in marks if m["type"] == "rule"), key=lambda m: m["y"]),
                "bands": [m for m in marks if m["type"] == "rect"],
                "texts": sorted((m for m in marks if m["type"] == "text"), key=lambda m: m["y"]),
            }
        )
    return panels


def check_headline_panel(panel: dict, rows: pd.DataFrame, recommended: str):
    """One headline panel against its metric's rows of plots/headline.csv (a row per strategy): a dot at the value
    and a rule over the interval, in the strategy's colour, on the strategy's row in the order evaluated, all on one
    linear scale of its own; the label right of the panel on the same row; the recommended strategy's row shaded,
    its dot and rule larger, its label bold and followed by 'recommended', and no other's."""
    rows = rows.set_index("strategy").loc[STRATEGIES]  # the order evaluated: top to bottom
    dots, rules, texts = panel["dots"], panel["rules"], panel["texts"]
    assert len(dots) == len(rules) == len(texts) == len(STRATEGIES)
    assert [dot["fill"] for dot in dots] == [rule["stroke"] for rule in rules] == COLOURS
    assert [dot["y"] for dot in dots] == [rule["y"] for rule in rules] == [text["y"] for text in texts]
    # x = a * value + b, for every value, lower and upper end: the metric's own scale, its intervals across the panel
    values = np.r_[rows["value"], rows["lower"], rows["upper"]]
    pixels = np.r_[[dot["x"] for dot in dots], [rule["x"] for rule in rules], [rule["x2"] for rule in rules]]
    slope, offset = np.polyfit(values, pixels, 1)
    assert slope > 0 and np.abs(slope * values + offset - pixels).max() < 0.5
    assert pixels.max() - pixels.min() > (panel["right"] - panel["left"]) / 2
    assert pixels.min() >= panel["left"] - 0.5 and pixels.max() <= panel["right"] + 0.5
    # the labels, beside the rows, right of the panel
    assert all(text["x"] == pytest.approx(panel["right"], abs=1) for text in texts)
    place = STRATEGIES.index(recommended)
    for number, (strategy, row) in enumerate(rows.iterrows()):
        text = texts[number]
        if strategy == recommended:
            assert text["text"].startswith(row["label"]) and text["text"].endswith("recommended"), text
            assert text["fontWeight"] == "bold"
        else:
            assert text["text"] == row["label"] and text["fontWeight"] in (None, "normal"), text
    others = [number for number in range(len(STRATEGIES)) if number != place]
    assert dots[place]["size"] > max(dots[number]["size"] for number in others)
    assert rules[place]["strokeWidth"] > max(rules[number]["strokeWidth"] for number in others)
    (band,) = panel["bands"]  # the recommended row shaded, across the panel
    assert band["y"] < dots[place]["y"] < band["y"] + band["height"]
    assert (band["x"], band["x2"]) == (pytest.approx(panel["left"], abs=1), pytest.approx(panel["right"], abs=1))


@pytest.fixture(scope="module")
def headline_scene(made_up):
    return scene(made_up["page"])["headline"]


@needs_chromium
def test_headline_draws_each_metric_per_strategy_with_its_interval_and_marks_the_recommended_one(
    made_up, headline_scene, drawn
):
    table = made_up["headline"]
    metric_names = list(dict.fromkeys(table["metric"]))
    assert metric_names == ["average precision", "cost per 1,000 test rows (value rule)"]
    panels = headline_panels(headline_scene)
    assert len(panels) == len(metric_names)  # a panel per metric, side by side in the file's order
    assert [panel["left"] for panel in panels] == sorted(panel["left"] for panel in panels)
    headers = [item for item in headline_scene if item["text"] in metric_names]
    assert [header["text"] for header in sorted(headers, key=lambda h: h["x"])] == metric_names
    for panel, metric in zip(panels, metric_names, strict=True):
        check_headline_panel(panel, table[table["metric"] == metric], RECOMMENDED)
    # each strategy in the colour the other charts give it
    assert [[s, dot["fill"]] for s, dot in zip(STRATEGIES, panels[0]["dots"], strict=True)] == drawn["roc"]["legend"]
    titles = [item["text"] for item in headline_scene if item["role"] == "title-subtitle"]
    assert titles and "recommended" in titles[0]


@needs_chromium
def test_headline_of_two_revisions_draws_a_row_of_panels_each_with_its_own_recommendation_on_shared_scales(
    made_up, tmp_path
):
    """dvc plots diff: the data of every revision in one chart, with its rev; a row of panels per revision, the
    panels of a metric on one scale (one above the other), each revision's recommendation marked in its row."""
    spec = chart_specs(made_up["page"])["headline"]
    workspace = pd.DataFrame(spec["data"]["values"])
    head = workspace.assign(rev="HEAD", recommended=(workspace["strategy"] == STRATEGIES[0]).astype(int).astype(str))
    changed = head["strategy"] == STRATEGIES[-1]  # HEAD's last strategy: lower values, wider intervals
    for column in ("value", "lower", "upper"):
        head.loc[changed, column] = (head.loc[changed, column].astype(float) * 0.7).astype(str)
    head.loc[changed, "label"] = "HEAD's"
    spec["data"]["values"] = pd.concat([head, workspace]).to_dict("records")
    page = write_page(tmp_path, TEMPLATE.read_text(encoding="utf-8"), chart("headline", spec))
    result = check_page(page, tmp_path / "diff.png")
    assert result.returncode == 0, result.stdout + result.stderr
    items = scene(page)["headline"]
    assert {"HEAD", "workspace"} <= {item["text"] for item in items}  # the rows' headers
    panels = headline_panels(items)
    assert len(panels) == 4
    for row, (revision, recommended) in enumerate((("HEAD", STRATEGIES[0]), ("workspace", RECOMMENDED))):
        rows = pd.DataFrame(spec["data"]["values"]).astype({"value": float, "lower": float, "upper": float})
        rows = rows[rows["rev"] == revision]
        for panel, metric in zip(panels[2 * row : 2 * row + 2], dict.fromkeys(rows["metric"]), strict=True):
            check_headline_panel(panel, rows[rows["metric"] == metric], recommended)
    for top, bottom in zip(panels[:2], panels[2:], strict=True):  # a metric's panels, one above the other
        assert (top["left"], top["right"]) == (bottom["left"], bottom["right"])
        # the strategies unchanged are drawn at the same x in both revisions: one scale
        assert [dot["x"] for dot in top["dots"][:-1]] == pytest.approx([dot["x"] for dot in bottom["dots"][:-1]])
        assert top["dots"][-1]["x"] < bottom["dots"][-1]["x"]


def test_png_figures_colour_each_strategy_as_the_charts_do(made_up):
    """The figures evaluate draws give the strategy at place i among those evaluated colour(i), as the charts of
    the page do: in their legends, on every line (its members' and its ensemble's), and in the PNG's pixels."""
    found = made_up["figures"]
    for figure in ("roc", "prc"):
        (axes,) = found[figure]
        assert [[label.split(" (")[0], c] for label, c in axes["legend"]] == LEGEND, figure
        assert axes["lines"] == [c for c in COLOURS for _ in range(MEMBERS + 1)], figure  # members, then ensemble
    for axes in found["calibration"]:
        assert axes["lines"] == ["#000000", *COLOURS]  # the diagonal, then a line per strategy
    assert found["calibration"][1]["legend"] == [["perfect calibration", "#000000"], *LEGEND]
    for figure in PNG_FIGURES:
        pixels = image.imread(made_up["plots"] / f"{figure}.png")[..., :3]
        assert set(COLOURS) <= {to_hex(rgb) for rgb in np.unique(pixels.reshape(-1, 3), axis=0)}, figure


@needs_chromium
def test_roc_draws_false_positive_rates_on_a_log_axis_with_zero_at_its_left_end(made_up, drawn):
    roc = drawn["roc"]
    assert texts(roc, "axis-title")[-1] == "False positive rate (log scale; 0 drawn at 0.001 %)"
    assert texts(roc, "axis-label")[-6:] == ["0.001%", "0.01%", "0.1%", "1%", "10%", "100%"]
    for line in roc["lines"]:
        strategy = STRATEGIES[COLOURS.index(line["stroke"])]
        fpr, _, _ = metrics.roc_curve(*made_up["scores"][strategy])
        assert len(line["points"]) == len(fpr)  # every point drawn, none lost to the log scale
        assert all(isinstance(x, (int, float)) and isinstance(y, (int, float)) for x, y in line["points"])
        assert [x for x, _ in line["points"][: (fpr == 0).sum()]] == [0] * (fpr == 0).sum()


@needs_chromium
def test_precision_recall_steps_enclose_the_average_precision(made_up, drawn):
    width, height = 400, 320  # the template's plot size: recall 0..1 across, precision 0..1 up
    for line in drawn["precision_recall"]["lines"]:
        strategy = STRATEGIES[COLOURS.index(line["stroke"])]
        labels, scores = made_up["scores"][strategy]
        assert line["interpolate"] == "step-before"
        recall = np.array([x / width for x, _ in line["points"]])
        precision = np.array([1 - y / height for _, y in line["points"]])
        levels = len(np.unique(metrics.precision_recall_curve(labels, scores)[1]))
        assert len(recall) == levels, f"{strategy}'s colour, {line['stroke']}: a point per recall level"
        # step-before holds each point's precision over the recall interval that ends at it: AP's sum
        area = np.sum(np.diff(recall) * precision[1:])
        assert area == pytest.approx(metrics.average_precision_score(labels, scores), abs=1e-9), strategy


@needs_chromium
def test_confusion_matrices_print_every_count_and_share_under_their_strategy(made_up, drawn):
    confusion = drawn["confusion"]
    assert texts(confusion, "title-text")[: len(STRATEGIES)] == STRATEGIES  # one matrix per strategy, in order
    cells = texts(confusion, "mark")
    assert len(cells) == 4 * len(STRATEGIES)
    for strategy, counts in made_up["counts"].items():
        for count in counts.values():
            assert any(cell.startswith(f"{count:,}\n") for cell in cells), (strategy, count)
    # the first matrix (leftmost, under the first title) is the first strategy's, though its rows come last in the
    # file; shares of the actual class, never 0.0 % or 100.0 % for 8 false alarms among 56,863
    assert cells[:4] == ["56,855\n99.98%", "8\n0.014%", "26\n26.5%", "72\n73.5%"]


@needs_chromium
def test_cost_k_draws_each_cost_curve_on_a_log_k_axis_with_its_chosen_k_and_the_bayes_rule(made_up, drawn):
    cost_k = drawn["cost_k"]
    assert texts(cost_k, "axis-title")[-1] == "k (log scale)"
    assert texts(cost_k, "axis-label")[-7:] == ["0.001", "0.01", "0.1", "1", "10", "100", "1,000"]

    def x_of(k):  # the template's plot is 400 pixels wide; the made-up grid of k spans 1e-3 to 1e3
        return 400 * (np.log10(k) + 3) / 6

    lines = {STRATEGIES[COLOURS.index(line["stroke"])]: line for line in cost_k["lines"]}
    dots = {STRATEGIES[COLOURS.index(dot["fill"])]: dot for dot in cost_k["dots"]}
    assert len(lines) == len(cost_k["lines"]) == len(dots) == len(cost_k["dots"]) == len(STRATEGIES)
    for strategy, costs in made_up["costs"].items():
        line, dot = lines[strategy], dots[strategy]
        assert line["interpolate"] == "step-after"  # the cost holds from each k to the next
        assert [x for x, _ in line["points"]] == pytest.approx(list(x_of(costs["k"])), abs=1)  # every row, log k
        chosen = costs.loc[costs["chosen"] == 1, "k"].item()
        assert dot["x"] == pytest.approx(x_of(chosen), abs=1)
        assert [dot["x"], dot["y"]] in line["points"]  # on its strategy's curve
    assert [(rule["x"], rule["y"], rule["y2"]) for rule in cost_k["rules"]] == [(x_of(1), 0, 320)]  # k = 1, full height
    assert cost_k["rules"][0]["dash"] and "k = 1 (Bayes rule)" in texts(cost_k, "mark")


@needs_chromium
def test_importance_prints_each_strategys_value_per_column_in_rank_order_in_cells_of_their_colour(made_up):
    items = scene(made_up["page"])["importance"]
    cells = [item for item in items if item["role"] == "mark" and item["type"] == "rect"]
    values = [item for item in items if item["role"] == "mark" and item["type"] == "text"]
    assert len(cells) == len(values) == len(STRATEGIES) * len(IMPORTANCE_COLUMNS)
    labels = [item for item in items if item["role"] == "axis-label"]
    across = sorted((item for item in labels if item["text"] in STRATEGIES), key=lambda item: item["x"])
    down = sorted((item for item in labels if item["text"] in IMPORTANCE_COLUMNS), key=lambda item: item["y"])
    assert [item["text"] for item in across] == STRATEGIES  # strategies across the top, in the order evaluated
    assert [item["text"] for item in down] == IMPORTANCE_COLUMNS  # columns down the side, by rank
    assert len({item["y"] for item in across}) == 1 and max(item["y"] for item in across) < min(c["y"] for c in cells)
    by_place = sorted(values, key=lambda item: (item["y"], item["x"]))  # row by row, left to right
    expected = [made_up["importance"][s]["importance"][row] for row in range(3) for s in STRATEGIES]
    assert [float(item["text"]) for item in by_place] == pytest.approx(expected, abs=0.005)
    darkest = min(cells, key=lambda item: sum(float(v) for v in re.findall(r"[\d.]+", item["fill"])[:3]))  # rgb()
    assert (darkest["x"], darkest["y"]) == (max(c["x"] for c in cells), min(c["y"] for c in cells))  # the largest


@needs_chromium
def test_training_history_has_a_chart_per_strategy_with_a_titled_panel_per_metric_and_the_loss_on_a_log_scale(drawn):
    for strategy, chart in zip(sorted(TRAINED), history_charts(), strict=True):
        training = drawn[chart]
        titles = texts(training, "title-text")
        assert [title for title in titles if title in HISTORY_TITLES] == HISTORY_TITLES
        assert f"Training history: plots/history/{strategy}.csv" in titles
        assert "loss (log scale)" in texts(training, "axis-title")
        lines = training["lines"]
        assert len(lines) == MEMBERS * (2 + 3)  # a line per member: training and validation loss, 3 metrics
        assert sorted(line["stroke"] for line in lines) == sorted(colour(m) for m in range(MEMBERS) for _ in range(5))
        loss = [line for line in lines if line["dash"] is not None]
        assert len(loss) == MEMBERS * 2
        assert sorted(map(tuple, (line["dash"] for line in loss))) == [(1, 0)] * MEMBERS + [(4, 3)] * MEMBERS
