"""What a newcomer installs: the README's commands, CI running them verbatim, a complete wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_the_readme_opens_with_install_and_play_then_install_and_test() -> None:
    play, test = readme_commands()[:2]
    assert play.endswith("simularity") and "pip install ." in play
    assert "'.[test]'" in test and test.endswith("tools/check")


def test_the_check_script_runs_the_static_checks_before_the_tests() -> None:
    steps = [line for line in (ROOT / "tools" / "check").read_text().splitlines() if line.startswith(('"$bin', "exec"))]
    assert [step.split()[0].split("/")[-1].strip('"') for step in steps] == [
        "lint-imports",
        "ruff",
        "ruff",
        "mypy",
        "exec",
    ]
    assert steps[-1].endswith('-m pytest -n 2 --dist loadfile "$@"')


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_wheel_carries_the_bundled_packs_and_styles(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("simularity_tui-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "simularity_tui/_scenarios/lighthouse/scenario.toml" in names
    assert "simularity_tui/_scenarios/lighthouse/art/mira/smile.png" in names
    assert "simularity_tui/ui/app.tcss" in names
    assert "simularity_tui/models/models.toml" in names  # the model catalogue
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "simularity = simularity_tui.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # Installed from the wheel, away from the source tree, the game finds its packs.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    found = subprocess.run(
        [sys.executable, "-c", "from simularity_tui.scenario import bundled_packs_dir as d; print(d())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == site / "simularity_tui" / "_scenarios"
    assert (Path(found) / "lighthouse" / "scenario.toml").is_file()
