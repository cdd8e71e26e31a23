"""Shared fixtures: a synthetic creditcard-like data set and a scratch project directory."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
CHECK_PAGE = REPO / ".ci" / "check_page.py"
COLUMNS = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
MODEL_COLUMNS = COLUMNS[1:-1]  # what the exported model takes: V1 ... V28, Amount


def make_creditcard(rows: int = 3000, frauds: int = 60, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like creditcard.csv; frauds are shifted on a few features so a model can find them."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(rows, dtype=int)
    labels[rng.choice(rows, frauds, replace=False)] = 1
    features = rng.normal(size=(rows, 28))
    features[labels == 1, :4] += 3.0
    frame = pd.DataFrame(features, columns=COLUMNS[1:29])
    frame.insert(0, "Time", np.sort(rng.uniform(0, 172_800, rows)).round())
    frame["Amount"] = rng.lognormal(3, 1.5, rows).round(2)
    frame["Class"] = labels
    return frame


MERCHANTS = ["grocery", "fuel", "travel", "online", "jewelry", "casino", "pharmacy", "gaming"]
MIXED_DATA = {  # params.yaml's data section for make_mixed's table
    "data__label": "outcome",
    "data__positive": "fraud",
    "data__time": "event_time",
    "data__ids": ["tx_id"],
    "data__drop": ["comment"],
    "data__log": ["amount_usd"],
    "data__categorical": ["merchant", "channel"],
    "data__max_categories": 5,
    "data__missing": "impute",
    "data__columns": None,  # every column without another role
    "data__cost": "amount_usd",  # a missed positive costs its own amount
}


def make_mixed(rows: int = 3000, positives: int = 90, seed: int = 0) -> pd.DataFrame:
    """A table unlike creditcard.csv: text label fraud/legit, an id, a time column under another name, a column
    to drop, two category columns (merchant: 8 levels, more than MIXED_DATA's max_categories), missing values in
    a numeric (x2) and a category column (channel). Positives lean to some merchants and larger amounts."""
    rng = np.random.default_rng(seed)
    positive = np.zeros(rows, dtype=bool)
    positive[rng.choice(rows, positives, replace=False)] = True
    x = rng.normal(size=(rows, 3))
    x[positive, :2] += 2.0
    merchant = rng.choice(MERCHANTS, rows, p=[0.3, 0.25, 0.15, 0.12, 0.08, 0.05, 0.03, 0.02])
    merchant[positive] = rng.choice(["online", "jewelry", "casino"], positive.sum())
    frame = pd.DataFrame(
        {
            "tx_id": [f"t{i:06d}" for i in rng.permutation(rows)],
            "merchant": merchant,
            "amount_usd": (rng.lognormal(3, 1, rows) * np.where(positive, 3, 1)).round(2),
            "x1": x[:, 0],
            "x2": np.where(rng.random(rows) < 0.05, np.nan, x[:, 1]),
            "channel": np.where(rng.random(rows) < 0.03, None, rng.choice(["web", "pos", "app"], rows)),
            "x3": x[:, 2],
            "comment": rng.choice(["ok", "checked", ""], rows),
            "outcome": np.where(positive, "fraud", "legit"),
        }
    )
    frame.insert(3, "event_time", rng.integers(0, 1_000_000, rows))
    return frame


def set_cell(frame, column, row, value):
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def drop_networks(path: Path, *names: str):
    """Leave these network strategies out of params.yaml's `networks` (they then neither train nor count)."""
    params = yaml.safe_load(path.read_text())
    for name in names:
        del params["networks"][name]
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def set_params(path: Path, **updates):
    """Change params in a params.yaml; keys are 'section__key' (double underscore), e.g. download__sha256=''."""
    params = yaml.safe_load(path.read_text())
    for name, value in updates.items():
        section, key = name.split("__")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch directory holding the repository's params.yaml (export.strategy: baseline, the strategy that
    make_members trains), used as the working directory."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", export__strategy="baseline")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAUDFLOW_DATA_MIRROR", raising=False)
    monkeypatch.delenv("CREDITCARD_URL", raising=False)
    return tmp_path


def python_environment() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH, the repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    env.pop("FRAUDFLOW_DATA_MIRROR", None)
    env.pop("CREDITCARD_URL", None)
    return env


def run_data_stages(rows: int = 3000, frauds: int = 60):
    """Write a synthetic raw CSV in the working directory (and data/raw.json, as download would) and run clean,
    split and scale on it."""
    from fraudflow.common import RAW_CSV, RAW_RECORD, write_json
    from fraudflow.inputs import fingerprint
    from stages import clean, scale, split

    RAW_CSV.parent.mkdir(parents=True, exist_ok=True)
    make_creditcard(rows, frauds).to_csv(RAW_CSV, index=False)
    write_json(RAW_RECORD, {"sha256": fingerprint(RAW_CSV)})
    for stage in (clean, split, scale):
        stage.main()


PROJECT_FILES = ["stages", "fraudflow", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"]
FAST_PARAMS = {  # small, fast training for the pipeline tests
    "download__sha256": "",
    "train__batch_size": 256,
    "train__members": 2,
    "train__patience": 2,
    "networks__baseline": {"epochs": 3},
    "networks__weighted": {"epochs": 3},
    "networks__resampled": {"epochs": 3, "steps_per_epoch": 5},
    "networks__focal": {"epochs": 3, "gamma": 2.0, "alpha": None},
    "train_gbdt__max_trees": 30,
    "train_gbdt__patience": 5,
    "evaluate__bootstrap_resamples": 200,
    "export__strategy": "baseline",  # the tests' reference; test_pipeline exports every strategy too
}


def project_repo(root: Path, table: pd.DataFrame, **params) -> "Runner":
    """A git + DVC repo in root/project with the project, FAST_PARAMS and `params` ('section__key'), and
    download.url pointing at `table` written as a CSV."""
    work = root / "project"
    work.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / name)
    source_csv = root / "table.csv"
    table.to_csv(source_csv, index=False)
    set_params(work / "params.yaml", **{**FAST_PARAMS, "download__url": str(source_csv), **params})
    runner = Runner(work, python_environment())
    runner.run("git", "init", "-q")
    runner.run("dvc", "init", "-q")
    shutil.copytree(REPO / ".dvc" / "plots", work / ".dvc" / "plots")  # the project's plot and page templates
    shutil.copy(REPO / ".dvc" / "config", work / ".dvc" / "config")  # analytics off, plots.html_template
    runner.commit("project")
    return runner


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory) -> tuple["Runner", str]:
    """make_creditcard's table through `dvc repro` (every stage), and repro's output: made once per test run, by the
    first process that needs it (pytest-xdist's processes share their base folder's parent), while the others wait.
    Change nothing in it: copy it (copy_project) to change it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root, log = shared / "reproduced", shared / "reproduced" / "repro.log"
    with FileLock(shared / "reproduced.lock"):
        if not log.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a process that failed to make it left
            root.mkdir()
            log.write_text(project_repo(root, make_creditcard(rows=3000, frauds=60)).run("dvc", "repro"))
    return Runner(root / "project", python_environment()), log.read_text()


def copy_project(runner: "Runner", root: Path) -> "Runner":
    """A copy of a project repo (its git history, DVC cache and workspace) in root/project; download.url still names
    the original's table."""
    shutil.copytree(runner.cwd, root / "project", symlinks=True)
    return Runner(root / "project", runner.env)


class Runner:
    def __init__(self, cwd, env):
        self.cwd, self.env = cwd, env

    def run(self, *command) -> str:
        result = subprocess.run(command, cwd=self.cwd, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def commit(self, message: str):
        self.run("git", "add", "-A")
        self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message)

    def changed_stages(self, *targets) -> set[str]:
        return set(json.loads(self.run("dvc", "status", "--json", *targets)))


def load_script(path: Path):
    """Import a script that is not in a package (e.g. .ci/check_page.py) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_chromium = pytest.mark.skipif(
    load_script(CHECK_PAGE).find_chromium() is None,
    reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it), "
    "so the plots page is not opened in a browser",
)


def check_page(page: Path, screenshot: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run .ci/check_page.py on a page (headless Chromium, networking disabled); its output in .stdout."""
    command = [sys.executable, str(CHECK_PAGE), str(page), *([str(screenshot)] if screenshot else [])]
    result = subprocess.run([*command, "--timeout", str(timeout)], capture_output=True, text=True, timeout=300)
    print(result.stdout, result.stderr)  # shown by pytest -rP or on failure
    return result


# Evaluated in a page that holds vega, vega-lite and vega-embed (any page dvc plots show writes): draws each spec
# headless and returns what a reader would see in it: every text (chart, panel and axis titles, legend and axis
# labels, text marks) with its role, every legend entry (label, colour of its symbol), every line (colour,
# interpolation, dash, points in pixels), every visible point of a point mark (fill, x, y in pixels) and every rule
# (x, y, x2, y2 in pixels, dash).
CHART_CONTENTS_JS = r"""async (specs) => {
  const charts = {};
  for (const [id, spec] of Object.entries(specs)) {
    const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), {renderer: 'none'});
    await view.runAsync();
    const texts = [], legend = [], lines = [], dots = [], rules = [];
    const walk = (mark) => {
      for (const item of mark.items || []) {
        if (mark.marktype === 'text' && item.text !== undefined && item.text !== '') {
          texts.push([mark.role, String(item.text)]);
        }
        const symbols = (item.items || []).find(m => m.role === 'legend-symbol');
        const labels = (item.items || []).find(m => m.role === 'legend-label');
        if (symbols && labels) labels.items.forEach((label, i) => legend.push([label.text, symbols.items[i].stroke]));
        (item.items || []).forEach(walk);
      }
      if (mark.marktype === 'line' && mark.items.length) {
        const first = mark.items[0];
        lines.push({stroke: first.stroke, interpolate: first.interpolate || 'linear', dash: first.strokeDash || null,
                    points: mark.items.map(point => [point.x, point.y])});
      }
      if (mark.marktype === 'symbol' && mark.role === 'mark') {
        mark.items.filter(item => item.opacity !== 0)  // the invisible points under tooltips left out
          .forEach(item => dots.push({fill: item.fill, x: item.x, y: item.y}));
      }
      if (mark.marktype === 'rule' && mark.role === 'mark') {
        mark.items.forEach(item => rules.push({x: item.x, y: item.y, x2: item.x2, y2: item.y2,
                                               dash: item.strokeDash || null}));
      }
    };
    walk(view.scenegraph().root);
    view.finalize();
    charts[id] = {texts, legend, lines, dots, rules};
  }
  return charts;
}"""


def chart_specs(page: Path) -> dict:
    """The vega-lite spec of every chart on a page dvc plots show wrote, by chart id, in page order."""
    found = re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#([^']+)'", page.read_text(), re.DOTALL)
    return {chart_id: json.loads(spec) for spec, chart_id in found}


def chart_contents(page: Path, script: str | None = None) -> dict:
    """What every chart on the page draws (what `script` returns, by default CHART_CONTENTS_JS), by chart id:
    headless Chromium, no network."""
    check_page_module = load_script(CHECK_PAGE)
    browser = check_page_module.Browser(check_page_module.find_chromium(), timeout=60)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        expression = f"({script or CHART_CONTENTS_JS})({json.dumps(chart_specs(page))})"
        for _ in range(100):  # the libraries are in the page's head: wait until they are loaded
            reply = browser.send(
                "Runtime.evaluate",
                {"expression": "typeof vegaEmbed", "returnByValue": True},
                session,
            )
            if reply.get("result", {}).get("value") == "function":
                break
            browser.pump(0.1)
        reply = browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session
        )
    finally:
        browser.close()
    if "exceptionDetails" in reply:
        raise AssertionError(f"drawing the charts failed: {reply['exceptionDetails']}")
    return reply["result"]["value"]


CHOSEN_THRESHOLD = 0.4  # what make_members writes as evaluate's chosen threshold
CHOSEN_K = 4.0  # and as its k of the rule p / (1 - p) * Amount > k * cost_false_positive


def load_scaled(split: str):
    """Features and labels of one scaled split in the working directory, whole."""
    from fraudflow.scaled import features_file, load_labels

    return np.load(features_file(split)), load_labels(split)


def make_members(strategy: str = "baseline", count: int = 3):
    """What the train stage writes for a strategy, from small models trained briefly on the scaled data in the
    working directory: models/<strategy>/member_<i>.keras and data/predictions/<strategy>.parquet (the members'
    probabilities on the val and test splits, computed from the saved files as train computes them); and the rule
    file evaluate would write for it, with CHOSEN_THRESHOLD and CHOSEN_K as chosen on validation."""
    import keras

    from fraudflow.common import MODELS_DIR, PREDICTIONS_DIR, save_keras
    from fraudflow.members import member_predictor, stack

    features, labels = load_scaled("train")
    paths = [MODELS_DIR / strategy / f"member_{i}.keras" for i in range(count)]
    for seed, path in enumerate(paths):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(features.shape[1],)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(features, labels, batch_size=256, epochs=2, verbose=0)
        save_keras(model, path)
    members = [keras.saving.load_model(path) for path in paths]
    predict = member_predictor(stack(members, {"hidden_units": 16, "dropout": 0.5, "seed": 0}))
    parts = []
    for split in ("val", "test"):
        split_features, split_labels = load_scaled(split)
        probabilities = predict(split_features)
        columns = {f"member_{i}": probabilities[:, i] for i in range(count)}
        parts.append(pd.DataFrame({"split": split, "label": split_labels, **columns}))
    PREDICTIONS_DIR.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(PREDICTIONS_DIR / f"{strategy}.parquet", index=False)
    write_rule(strategy)


def write_rule(strategy: str):
    """models/rules/<strategy>.json as evaluate writes it (its rule_card), with CHOSEN_THRESHOLD and CHOSEN_K as
    chosen on validation, the strategy's calibration, params.yaml's data.cost and its validation predictions'
    profile."""
    from fraudflow.common import RULES_DIR, write_json
    from fraudflow.monitoring import score_profile
    from fraudflow.operating import prior_shift
    from fraudflow.predictions import MemberColumns
    from fraudflow.scaled import load_labels, negative_rate
    from fraudflow.schema import read_schema
    from fraudflow.strategies import REGISTRY
    from stages import evaluate

    shift = prior_shift(REGISTRY[strategy].balanced_odds, load_labels("train"), negative_rate())
    chosen = {"chosen": {"threshold": {"ensemble": CHOSEN_THRESHOLD}}, "value_rule": {"k": {"ensemble": CHOSEN_K}}}
    settings = {"cost_false_positive": 5, "cost_false_negative": 100}
    if REGISTRY[strategy].predictions.exists():
        validation = MemberColumns(strategy, "val", shift).read_all().calibrated.value()
    else:  # no predictions (export fails before it reads the profile): made-up probabilities
        validation = np.linspace(0.001, 0.999, 999)
    card = evaluate.rule_card(strategy, chosen, shift, settings, read_schema().cost, 50.0, score_profile(validation))
    write_json(RULES_DIR / f"{strategy}.json", card)


def raw_test_rows() -> pd.DataFrame:
    """The raw CSV rows of the test split in the working directory, in the split's order (the file's)."""
    from fraudflow.raw_rows import raw_rows

    return raw_rows("test")


def model_feed(frame: pd.DataFrame, card: dict | None = None) -> dict:
    """Rows of a raw table as the exported model's named inputs (export/model.json says which)."""
    from fraudflow.common import EXPORT_DIR

    card = card or json.loads((EXPORT_DIR / "model.json").read_text())
    feed = {}
    for entry in card["inputs"]:
        column = frame[entry["column"]]
        values = column.to_numpy(np.float64) if entry["type"] == "number" else column.astype(str).to_numpy(object)
        feed[entry["input"]] = values.reshape(-1, 1)
    return feed


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory):
    """A project directory, made once per test process: the data stages run on synthetic data, three baseline
    members and the export stage run on them (models/export). Use it through `exported`, and change nothing in it."""
    from stages import export

    root = tmp_path_factory.mktemp("exported")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    set_params(root / "params.yaml", export__strategy="baseline")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run_data_stages()
        make_members("baseline")
        export.main()
    return root


@pytest.fixture
def exported(exported_dir, monkeypatch):
    """The working directory is `exported_dir`."""
    monkeypatch.chdir(exported_dir)
    return exported_dir
