"""Fail if the metrics files in the work tree differ from the committed ones.

Floats must match within 1e-6, everything else (counts, verdicts, missing intervals) exactly. Used by .ci/run after a fresh real-data run.
"""

import json
import math
import subprocess
import sys

TOLERANCE = 1e-6


def flatten(data, prefix=""):
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def differences(path: str) -> list[str]:
    committed = flatten(
        json.loads(subprocess.run(["git", "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout)
    )
    with open(path) as file:
        fresh = flatten(json.load(file))
    problems = [f"{path}: {key} is missing in one of them" for key in committed.keys() ^ fresh.keys()]
    for key in committed.keys() & fresh.keys():
        old, new = committed[key], fresh[key]
        exact = not (isinstance(old, float) or isinstance(new, float))
        if (old != new) if exact else not math.isclose(old, new, rel_tol=0, abs_tol=TOLERANCE):
            problems.append(f"{path}: {key} committed {old}, fresh run {new}")
    return problems


def main():
    # A git pathspec * also matches "/": this lists the metrics files of every subfolder.
    paths = subprocess.run(
        ["git", "ls-files", "metrics/*.json"], capture_output=True, text=True, check=True
    ).stdout.split()
    problems = [problem for path in paths for problem in differences(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"compared {len(paths)} committed metrics files with the fresh run: {len(problems)} differences")
    sys.exit(1 if problems or not paths else 0)


if __name__ == "__main__":
    main()
