"""The README's commands run as pasted: modules, flags, config keys and files exist; the
predict command and the Python API example run for real with the shipped model."""

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from tiny_models import REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")
# Paths a README command may name before anything was run (the rest are outputs).
SHIPPED_PREFIXES = ("configs/", "scripts/", "docs/")
_DEFINE = re.compile(r"DEFINE_(\w+)\(\s*[\"'](\w+)[\"']")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the README's ```language blocks, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def commands(text: str) -> list[list[str]]:
    """Every shell command of the ```bash blocks, continuation lines joined, shlex-split."""
    found = []
    for block in fenced_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def _readme() -> str:
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def _defined_flags(module: str) -> set[str]:
    """Flag names a CLI module defines (its own, the shared --config/--set, absl's)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"README names a missing module {module}"
    names = {"help", "helpfull", "helpshort"}
    for path in (spec.origin, os.path.join(REPO_ROOT, "tfdldl", "cli.py")):
        with open(path, encoding="utf-8") as handle:
            for kind, name in _DEFINE.findall(handle.read()):
                names.add(name)
                if kind == "bool":
                    names.add("no" + name)
    return names


def _flags(words: list[str]) -> list[tuple[str, str | None]]:
    """(name, value) of each --flag, value from ``--name=value`` or the next word."""
    pairs = []
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            following = words[i + 1] if i + 1 < len(words) else None
            pairs.append((name, value or (following if following and
                                          not following.startswith("-") else None)))
    return pairs


def test_every_command_names_existing_modules_flags_config_keys_and_files():
    from data_prep.config import load_data_config
    from tfdldl.experiment import load_experiment

    checked = 0
    for words in commands(_readme()):
        for word in words:
            if word.startswith(SHIPPED_PREFIXES):
                assert os.path.exists(os.path.join(REPO_ROOT, word.rstrip("/"))), words
        if words[:2] != ["python", "-m"]:
            continue
        module, flags = words[2], _flags(words)
        unknown = {name for name, _ in flags} - _defined_flags(module)
        assert not unknown, f"{' '.join(words)}: {module} has no flag(s) {sorted(unknown)}"
        config = dict(flags).get("config")
        overrides = [value for name, value in flags if name == "set"]
        if module == "data_prep.build":
            load_data_config(os.path.join(REPO_ROOT, config), overrides)
        elif module == "tfdldl.train":
            load_experiment(os.path.join(REPO_ROOT, config), overrides)
        checked += 1
    assert checked >= 6


def test_the_readme_predict_command_runs_as_pasted():
    words = next(words for words in commands(_readme())
                 if words[:3] == ["python", "-m", "tfdldl.predict"])
    done = subprocess.run([sys.executable] + words[1:], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "model: saved_models/utkface_tinyagenet/" in done.stderr
    assert "1 photo(s), 1 face(s), 0 without a face, 0 error(s)" in done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.rstrip().endswith(".jpg")]
    assert " ok " in row


def test_the_readme_python_example_runs():
    [example] = [block for block in fenced_blocks(_readme(), "python")
                 if "AgeEstimator" in block]
    printed = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(example, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    [line] = printed.getvalue().splitlines()  # one face in the photo
    box, age = re.match(r"\((.*?)\) ([\d.]+) ", line).groups()
    assert len(box.split(",")) == 4 and 0 <= float(age) <= 100


@pytest.mark.parametrize("text, expected", [
    ("```bash\npython -m a --x 1 \\\n  --y=2  # note\n```\n",
     [["python", "-m", "a", "--x", "1", "--y=2"]]),
    ("```python\nprint(1)\n```\n", []),
])
def test_command_extraction(text, expected):
    assert commands(text) == expected
