"""The build carries the dataset cards of the top-level `datasets/` folder into the package
(`bench/data/card_files/`), so an installed wheel has them; everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CARDS = Path(__file__).resolve().parent / "datasets"


class BuildWithCards(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "bench" / "data" / "card_files"
        target.mkdir(parents=True, exist_ok=True)
        for card in sorted(CARDS.glob("*.toml")):
            shutil.copy2(card, target / card.name)


setup(cmdclass={"build_py": BuildWithCards})
