"""Three tables shaped like the public ones users bring, built here (no network): names,
categories, dates, gaps and identifiers, each with a numeric target on its own scale.

- `cars`: 400 rows like the auto-mpg table: a car name per row, a few missing horsepowers,
  a model year, a categorical origin; target `mpg` (around 23).
- `houses`: 600 rows: an integer `id`, a sale date, a neighbourhood with gaps, a yes/no
  column, free-text descriptions, areas with gaps, rows without a price; target `price`
  (hundreds of thousands).
- `shop`: 1,500 rows, semicolon-separated and Latin-1 encoded: a transaction code per row,
  30 store names (more than max_categories), dates written month/day/year, a weekday, a
  promotion flag, temperatures with gaps; target `sales`.

Beside them, `write_messy` writes what a CSV read a piece of rows at a time must read as a
whole-file read does: gaps, text, dates, quoted newlines, and columns whose kind changes in
later rows; and `write_decimal_commas` a `;` file of numbers written with a decimal comma.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def cars(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    makes = ["ford", "chevrolet", "toyota", "datsun", "volkswagen", "peugeot", "honda", "buick"]
    origin_of = {"ford": "usa", "chevrolet": "usa", "buick": "usa", "toyota": "japan", "datsun": "japan"}
    make = rng.choice(makes, n)
    origin = np.array([origin_of.get(m, "europe") for m in make])
    cylinders = rng.choice([4, 6, 8], n, p=[0.5, 0.25, 0.25])
    displacement = cylinders * rng.normal(40, 5, n)
    horsepower = displacement * 0.45 + rng.normal(0, 8, n)
    weight = 1500 + displacement * 7 + rng.normal(0, 200, n)
    year = rng.integers(70, 83, n)
    mpg = 32 - weight / 250 + (year - 70) * 0.7 + (origin != "usa") * 1.5 + rng.normal(0, 2.5, n)
    frame = pd.DataFrame(
        {
            "name": [f"{m} model {i}" for i, m in enumerate(make)],
            "cylinders": cylinders,
            "displacement": displacement.round(1),
            "horsepower": horsepower.round(0),
            "weight": weight.round(0),
            "model_year": year,
            "origin": origin,
            "mpg": mpg.round(1),
        }
    )
    frame.loc[rng.choice(n, 6, replace=False), "horsepower"] = np.nan
    return frame


def houses(rng: np.random.Generator, n: int = 600) -> pd.DataFrame:
    hoods = np.array(["north", "south", "east", "west", "centre", "harbour"])
    premium = dict(zip(hoods, [20_000, -10_000, 0, 5_000, 60_000, 35_000], strict=True))
    hood = rng.choice(hoods, n)
    area = rng.normal(110, 30, n).clip(30)
    garage = rng.random(n) < 0.4
    sold = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 8 * 365, n), unit="D")
    years = (sold - pd.Timestamp("2015-01-01")).days.to_numpy() / 365
    price = (
        50_000
        + area * 2_000
        + np.array([premium[h] for h in hood])
        + garage * 15_000
        + years * 8_000
        + rng.normal(0, 20_000, n)
    )
    frame = pd.DataFrame(
        {
            "id": rng.permutation(np.arange(1000, 1000 + n)),
            "sold_on": sold.strftime("%Y-%m-%d"),
            "neighbourhood": hood.astype(object),
            "area_m2": area.round(1),
            "garage": np.where(garage, "yes", "no"),
            "description": [f"bright home number {i} with {int(a)} m2" for i, a in enumerate(area)],
            "price": price.round(-2),
        }
    )
    frame.loc[rng.choice(n, 15, replace=False), "neighbourhood"] = None
    frame.loc[rng.choice(n, 12, replace=False), "area_m2"] = np.nan
    frame.loc[rng.choice(n, 5, replace=False), "price"] = np.nan
    return frame


def shop(rng: np.random.Generator, n: int = 1500) -> pd.DataFrame:
    stores = np.array([f"Filiale Zürich {i}" if i % 3 == 0 else f"Boutique Nîmes {i}" for i in range(30)])
    effect = rng.normal(0, 30, len(stores))
    store = rng.integers(0, len(stores), n)
    day = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    weekend = day.dayofweek.to_numpy() >= 5
    promo = rng.random(n) < 0.3
    temperature = 12 + 10 * np.sin(2 * np.pi * day.dayofyear.to_numpy() / 365) + rng.normal(0, 3, n)
    sales = 200 + effect[store] + weekend * 40 + promo * 60 + temperature * 2 + rng.normal(0, 15, n)
    frame = pd.DataFrame(
        {
            "transaction": [f"T{i:06d}" for i in rng.permutation(n)],
            "store": stores[store],
            "day": day.strftime("%m/%d/%Y"),
            "weekday": day.day_name(),
            "promotion": promo,
            "temperature": temperature.round(1),
            "sales": sales.round(2),
        }
    )
    frame.loc[rng.choice(n, 40, replace=False), "temperature"] = np.nan
    return frame


TABLES = {"cars": ("mpg", ","), "houses": ("price", ","), "shop": ("sales", ";")}


def write_table(name: str, folder: Path, seed: int = 0) -> tuple[Path, str]:
    """The table `name` written as a user's CSV; returns (path, target column)."""
    target, sep = TABLES[name]
    frame = globals()[name](np.random.default_rng(seed))
    path = folder / f"{name}.csv"
    encoding = "latin-1" if name == "shop" else "utf-8"
    frame.to_csv(path, index=False, sep=sep, encoding=encoding)
    return path, target


def write_messy(path: Path, n: int = 70_000, seed: int = 1) -> str:
    """A CSV of `n` rows (more than pandas converts at a time in a whole read of its 9 columns:
    `tables.csv_piece_rows`) whose columns change kind in later rows: an integer column with a
    gap near the end, numbers that turn to text in the last fifth, true/false values with a
    late gap, text after half the rows of gaps; beside gaps, categories, dates and quoted
    fields with commas, quotes and newlines. Returns its target column."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n).round(4).astype(object)
    x1[rng.random(n) < 0.05] = ""
    cat = np.array(["red", "green", "blue", "teal"], object)[rng.integers(0, 4, n)]
    cat[rng.random(n) < 0.03] = "?"
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    date = day.strftime("%Y-%m-%d").to_numpy(object)
    date[rng.random(n) < 0.02] = ""
    int_gap = np.arange(n).astype(object) % 97
    int_gap[n - 7] = ""
    later_text = (np.arange(n) % 13 * 1.5).astype(object)  # 0.0, 1.5, 3.0 ...: "3" in a number piece
    later_text[-(n // 5) :] = np.array(["grp1", "grp2", "3.0"], object)[np.arange(n // 5) % 3]
    flag = np.where(rng.random(n) < 0.5, "True", "False").astype(object)
    flag[n - 11] = ""
    early_gaps = np.array(["lo", "hi"], object)[rng.integers(0, 2, n)]
    early_gaps[: n // 2] = ""
    notes = np.array(["plain", "has, comma", "two\nlines", 'say "hi"'], object)[rng.integers(0, 4, n)]
    y = (rng.normal(size=n) * 3 + 1).round(3).astype(object)
    y[rng.random(n) < 0.01] = ""
    columns = {"x1": x1, "cat": cat, "date": date, "int_gap": int_gap, "later_text": later_text}
    columns |= {"flag": flag, "early_gaps": early_gaps, "notes": notes, "y": y}
    pd.DataFrame(columns).to_csv(path, index=False)
    return "y"


def write_decimal_commas(path: Path, n: int = 300_000, seed: int = 2) -> str:
    """A `;` CSV of `n` rows (more than pandas converts at a time in a whole read of its 4
    columns) written as a spreadsheet in most European locales saves it: a price whose first
    half are whole numbers with dots between the thousands (read as integers) and the rest have
    a decimal comma, sizes with a decimal comma and gaps, a code that is not a number. Returns
    its target column."""
    rng = np.random.default_rng(seed)
    price = np.array([f"{v:.2f}".replace(".", ",") for v in rng.integers(0, 100_000, n) / 100], object)
    price[: n // 2] = [f"{1 + i % 9}.{i % 1000:03d}.000" for i in range(n // 2)]
    size = np.array([f"{v:.1f}".replace(".", ",") for v in rng.random(n) * 10], object)
    size[rng.random(n) < 0.02] = ""
    code = np.array(["1,5a", "2", "3"], object)[rng.integers(0, 3, n)]
    frame = pd.DataFrame({"price": price, "size": size, "code": code, "y": rng.normal(size=n).round(3)})
    frame.to_csv(path, index=False, sep=";")
    return "y"
