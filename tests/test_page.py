"""The page `dvc plots show` writes: its template (.dvc/plots/page.html) holds the vendored chart libraries, so
it needs no network, and .ci/check_page.py, which opens a page in headless Chromium, fails on pages that do not
draw. The chart templates (.dvc/plots/*.json) are checked on made-up results here, for what a reader sees in
each chart; the page of a real `dvc plots show` is checked in test_pipeline.py."""

import configparser
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
from sklearn import metrics

from fraudflow import figures
from fraudflow.common import STRATEGIES as NETWORK_STRATEGIES

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
# project's dvc.yaml (every strategy's ROC, precision-recall, confusion and cost-by-k files; training histories for
# the network's strategies only).
STRATEGIES = list(figures.COLOURS)  # baseline, weighted, resampled, logistic, gbdt: the legends' order
TRAINED = list(NETWORK_STRATEGIES)  # the strategies with a training history
MEMBERS, EPOCHS = 2, 4
COUNTS = {"tn": 56855, "fp": 8, "fn": 26, "tp": 72}  # baseline's on the real data; the others differ
CELLS = {(0, 0): "tn", (0, 1): "fp", (1, 0): "fn", (1, 1): "tp"}  # (actual, predicted)
CHARTS = ["roc", "precision_recall", "confusion", "cost_k", "training"]
COST_FN, COST_FP = 133, 5  # evaluate's costs in params.yaml: every made-up row's value is COST_FN
HISTORY_TITLES = [
    "Loss (binary cross-entropy)",
    "Validation ROC AUC",
    "Validation average precision",
    "Validation recall at 0.5",
]


def made_up_scores(strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with ties (rounded), so that the curves have points of equal recall and a rate 0."""
    rng = np.random.default_rng(STRATEGIES.index(strategy))
    labels = np.r_[np.ones(40), np.zeros(4000)]
    scores = np.round(rng.normal(labels * (1.5 + 0.5 * STRATEGIES.index(strategy)), 1.0), 1)
    return labels, scores


def made_up_costs(strategy: str) -> pd.DataFrame:
    """Cost per 1,000 rows of flagging when p / (1 - p) * COST_FN > k * COST_FP, on a log-spaced grid of k that
    holds the chosen k (chosen = 1): the least cost on a finer grid. Each strategy's odds are 10 times the one's
    before, so each has its own chosen k."""
    labels, scores = made_up_scores(strategy)
    odds = np.exp(scores - 4) * 10.0 ** (STRATEGIES.index(strategy) - 2)

    def cost(k):
        flagged = odds * COST_FN > k[:, None] * COST_FP
        errors = COST_FN * (~flagged & (labels == 1)).sum(1) + COST_FP * (flagged & (labels == 0)).sum(1)
        return 1000 * errors / len(labels)

    fine = np.logspace(-3, 3, 1000)
    chosen = fine[cost(fine).argmin()]
    k = np.unique(np.r_[np.logspace(-3, 3, 121), chosen])
    return pd.DataFrame({"k": k, "cost_per_1000": cost(k), "chosen": (k == chosen).astype(int)})


def write_csv(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(data).to_csv(path, index=False)


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """`dvc plots show` on made-up results of every strategy: the page, the scores and the confusion counts."""
    root = tmp_path_factory.mktemp("made_up")
    env = python_environment()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, env=env, check=True)
    shutil.copytree(PLOTS, root / ".dvc" / "plots", dirs_exist_ok=True)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")  # dvc.yaml reads params (export's strategy)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    scores = {strategy: made_up_scores(strategy) for strategy in STRATEGIES}
    counts = {
        strategy: {**COUNTS, "tn": COUNTS["tn"] - 100 * number, "fp": COUNTS["fp"] + 100 * number}
        for number, strategy in enumerate(STRATEGIES)
    }
    costs = {strategy: made_up_costs(strategy) for strategy in STRATEGIES}
    plots = root / "plots"
    for strategy, (labels, score) in scores.items():
        fpr, tpr, _ = metrics.roc_curve(labels, score)
        write_csv(plots / "roc" / f"{strategy}.csv", {"fpr": fpr, "tpr": tpr})
        precision, recall, _ = metrics.precision_recall_curve(labels, score)
        write_csv(plots / "prc" / f"{strategy}.csv", {"recall": recall, "precision": precision})
        cells = [{"actual": a, "predicted": p, "count": counts[strategy][key]} for (a, p), key in CELLS.items()]
        write_csv(plots / "confusion" / f"{strategy}.csv", cells)
        write_csv(plots / "costk" / f"{strategy}.csv", costs[strategy])
    for number, strategy in enumerate(TRAINED):  # training losses 10 and 100 times the baseline's
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
    for figure in ("roc", "prc", "confusion"):
        figures.plt.imsave(plots / f"{figure}.png", np.zeros((4, 4)))
    subprocess.run(["dvc", "plots", "show"], cwd=root, env=env, check=True, capture_output=True)
    return {"page": root / "dvc_plots" / "index.html", "scores": scores, "counts": counts, "costs": costs}


@pytest.fixture(scope="module")
def drawn(made_up):
    return chart_contents(made_up["page"])


def texts(chart: dict, role: str) -> list[str]:
    return [text for text_role, text in chart["texts"] if text_role == role]


def test_templates_colour_each_strategy_as_the_figures_do():
    scales = {}

    def strategy_scales(node, template):
        if isinstance(node, dict):
            if node.get("field") == "strategy" and "scale" in node:
                scales.setdefault(template, []).append(node["scale"])
            for value in node.values():
                strategy_scales(value, template)
        elif isinstance(node, list):
            for value in node:
                strategy_scales(value, template)

    for template in PLOTS.glob("*.json"):
        strategy_scales(json.loads(template.read_text()), template.stem)
    assert set(scales) == {"roc_log", "precision_recall_steps", "cost_k", "history"}
    for template, template_scales in scales.items():
        for scale in template_scales:
            assert scale["domain"] == (TRAINED if template == "history" else STRATEGIES), template
            assert scale["range"][: len(scale["domain"])] == [figures.COLOURS[s] for s in scale["domain"]], template


@needs_chromium
def test_page_of_made_up_results_draws_every_chart_in_reading_order(made_up, tmp_path):
    assert list(chart_specs(made_up["page"])) == CHARTS
    html = made_up["page"].read_text()
    assert html.index('id = "training"') < html.index("plots_confusion.png")  # dvc-render puts images last
    result = check_page(made_up["page"], tmp_path / "page.png")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_chromium
def test_curves_are_named_and_coloured_by_strategy(drawn):
    for chart in ("roc", "precision_recall", "cost_k"):
        assert drawn[chart]["legend"] == [[strategy, colour] for strategy, colour in figures.COLOURS.items()]
        assert sorted(line["stroke"] for line in drawn[chart]["lines"]) == sorted(figures.COLOURS.values())
    assert drawn["training"]["legend"][: len(TRAINED)] == [[s, figures.COLOURS[s]] for s in TRAINED]
    assert [label for label, _ in drawn["training"]["legend"][len(TRAINED) :]] == ["training", "validation"]


@needs_chromium
def test_roc_draws_false_positive_rates_on_a_log_axis_with_zero_at_its_left_end(made_up, drawn):
    roc = drawn["roc"]
    assert texts(roc, "axis-title")[-1] == "False positive rate (log scale; 0 drawn at 0.001 %)"
    assert texts(roc, "axis-label")[-6:] == ["0.001%", "0.01%", "0.1%", "1%", "10%", "100%"]
    for line in roc["lines"]:
        strategy = STRATEGIES[list(figures.COLOURS.values()).index(line["stroke"])]
        fpr, _, _ = metrics.roc_curve(*made_up["scores"][strategy])
        assert len(line["points"]) == len(fpr)  # every point drawn, none lost to the log scale
        assert all(isinstance(x, (int, float)) and isinstance(y, (int, float)) for x, y in line["points"])
        assert [x for x, _ in line["points"][: (fpr == 0).sum()]] == [0] * (fpr == 0).sum()


@needs_chromium
def test_precision_recall_steps_enclose_the_average_precision(made_up, drawn):
    width, height = 400, 320  # the template's plot size: recall 0..1 across, precision 0..1 up
    for line in drawn["precision_recall"]["lines"]:
        strategy = STRATEGIES[list(figures.COLOURS.values()).index(line["stroke"])]
        labels, scores = made_up["scores"][strategy]
        assert line["interpolate"] == "step-before"
        recall = np.array([x / width for x, _ in line["points"]])
        precision = np.array([1 - y / height for _, y in line["points"]])
        assert len(recall) == len(np.unique(metrics.precision_recall_curve(labels, scores)[1]))  # one per level
        # step-before holds each point's precision over the recall interval that ends at it: AP's sum
        area = np.sum(np.diff(recall) * precision[1:])
        assert area == pytest.approx(metrics.average_precision_score(labels, scores), abs=1e-9)


@needs_chromium
def test_confusion_matrices_print_every_count_and_share_under_their_strategy(made_up, drawn):
    confusion = drawn["confusion"]
    assert texts(confusion, "title-text")[: len(STRATEGIES)] == STRATEGIES  # one matrix per strategy, titled
    cells = texts(confusion, "mark")
    assert len(cells) == 4 * len(STRATEGIES)
    for strategy, counts in made_up["counts"].items():
        for count in counts.values():
            assert any(cell.startswith(f"{count:,}\n") for cell in cells), (strategy, count)
    # shares of the actual class; never 0.0 % or 100.0 % for 8 false alarms among 56,863
    assert cells[:4] == ["56,855\n99.98%", "8\n0.014%", "26\n26.5%", "72\n73.5%"]


@needs_chromium
def test_cost_k_draws_each_cost_curve_on_a_log_k_axis_with_its_chosen_k_and_the_bayes_rule(made_up, drawn):
    cost_k = drawn["cost_k"]
    assert texts(cost_k, "axis-title")[-1] == "k (log scale)"
    assert texts(cost_k, "axis-label")[-7:] == ["0.001", "0.01", "0.1", "1", "10", "100", "1,000"]

    def x_of(k):  # the template's plot is 400 pixels wide; the made-up grid of k spans 1e-3 to 1e3
        return 400 * (np.log10(k) + 3) / 6

    colours = list(figures.COLOURS.values())
    lines = {STRATEGIES[colours.index(line["stroke"])]: line for line in cost_k["lines"]}
    dots = {STRATEGIES[colours.index(dot["fill"])]: dot for dot in cost_k["dots"]}
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
def test_training_history_has_a_titled_panel_per_metric_and_the_loss_on_a_log_scale(drawn):
    training = drawn["training"]
    titles = texts(training, "title-text")
    assert [title for title in titles if title in HISTORY_TITLES] == HISTORY_TITLES
    assert "loss (log scale)" in texts(training, "axis-title")
    lines = training["lines"]
    assert len(lines) == len(TRAINED) * MEMBERS * (2 + 3)  # a line per member: training and validation loss, 3 metrics
    loss = [line for line in lines if line["dash"] is not None]
    assert len(loss) == len(TRAINED) * MEMBERS * 2
    assert sorted(map(tuple, (line["dash"] for line in loss))) == [(1, 0)] * 6 + [(4, 3)] * 6
