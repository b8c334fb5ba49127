"""Generate the seed files of the example project ``project/`` (deterministic, idempotent).

Run ``python scripts/generate_example_data.py``; it rewrites ``project/raw/*.csv`` and
``project/raw/agency_types.yml`` with the same bytes every time (``random.Random(2024)``).
All names, counts and contacts are synthetic.

The story (for the README)
--------------------------
``crime_stats`` is the pipeline behind a small crime-statistics API in the spirit of the
FBI Crime Data Explorer. Police agencies report to a normalized database: agencies point
at a type, a city and a state; offenses arrive as monthly counts per agency and offense;
offender ages arrive incident by incident. Some agencies report only a few months in a
year, some skip whole years, some have not switched to the incident-based system at all.
The API wants denormalized, ready-to-serve tables, and an annual total is only honest
when it counts agencies that reported all twelve months. That "after load" pile of SQL is
what dbluigi runs: each file below is one table, built aside, patched, checked and swapped.

Seeds (``raw/``, loaded as tables ``raw.<stem>``)
  states.csv            12 states with abbreviation, name and census region.
  cities.csv            60 cities with their state and population.
  agency_types.yml      the six agency types (City, County, University or College, ...).
  agencies.csv          300 agencies: 9-character ORI, name, type, city (empty for
                        state-wide agencies), state, NIBRS start date (empty when the
                        agency never switched) and a contact person (personal data).
  agency_staffing.csv   sworn officers and civilians per agency and year, 2015-2023.
  offense_monthly.csv   offense counts per agency, year, month and offense code
                        (ASLT, BURG, HOM, LARC, MVT, ROBB), with gaps.
  offender_ages.csv     one row per incident with the offender's age (empty = unknown).

Models
  staging.agencies                 one row per agency, the normalized tables joined back
                                   together; contacts are kept (staging is internal).
    staging/agencies.patch.sql     completes bare county names ("Adams" becomes
                                   "Adams County Police Department") in the new table.
    staging/agencies.check.sql     gates the swap on the naming rule and the ORI format.
  reporting.agency_reporting       months reported per agency and year, and whether all
                                   twelve were reported.
  api.cde_agencies                 the agency endpoint: one row per agency with its
                                   latest staffing and its participation history, without
                                   personal contact data.
  api.offense_annual               offenses per state, year and offense, counted only
                                   from agencies that reported all twelve months.
  api.offender_age_histogram       offenders per state, year, offense and age bucket
                                   (under 18, 18-24, ..., 55+, unknown).
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

RAW = Path(__file__).resolve().parent.parent / "project" / "raw"
YEARS = range(2015, 2024)
OFFENSES = ("ASLT", "BURG", "HOM", "LARC", "MVT", "ROBB")
# Monthly offenses per 100,000 people served; homicide is rare, larceny is everywhere.
MONTHLY_RATE = {"ASLT": 22.0, "BURG": 30.0, "HOM": 0.45, "LARC": 140.0, "MVT": 20.0, "ROBB": 7.0}
# Share of offender-age incidents by offense (ages are only collected for a sample).
AGE_OFFENSE_WEIGHTS = {"ASLT": 40, "BURG": 12, "HOM": 3, "LARC": 25, "MVT": 8, "ROBB": 12}

# fmt: off
STATES = [
    # (abbr, name, region, [(city, population), ...], [county, ...], [tribal agency, ...])
    ("AZ", "Arizona", "West",
     [("Phoenix", 1608139), ("Tucson", 542629), ("Mesa", 504258), ("Flagstaff", 76831),
      ("Yuma", 95548)],
     ["Maricopa", "Pima", "Coconino", "Yuma", "Mohave", "Pinal"],
     ["Navajo Nation Police", "Tohono O'odham Police Department"]),
    ("CA", "California", "West",
     [("Sacramento", 524943), ("Fresno", 542107), ("Oakland", 440646), ("Redding", 93611),
      ("Eureka", 26512)],
     ["Alameda", "Fresno", "Humboldt", "Shasta", "Kern", "Placer", "Tulare"],
     []),
    ("CO", "Colorado", "West",
     [("Denver", 715522), ("Aurora", 386261), ("Boulder", 108250), ("Pueblo", 111876),
      ("Greeley", 108795)],
     ["Adams", "Arapahoe", "Boulder", "Pueblo", "Weld", "Larimer"],
     ["Southern Ute Police Department"]),
    ("GA", "Georgia", "South",
     [("Atlanta", 498715), ("Savannah", 147780), ("Macon", 157346), ("Athens", 127315),
      ("Valdosta", 55378)],
     ["Fulton", "Chatham", "Bibb", "Clarke", "Lowndes", "Cobb", "Gwinnett"],
     []),
    ("IL", "Illinois", "Midwest",
     [("Springfield", 114394), ("Peoria", 113150), ("Rockford", 148655), ("Joliet", 150362),
      ("Champaign", 88302)],
     ["Sangamon", "Peoria", "Winnebago", "Will", "Champaign", "McLean"],
     []),
    ("MD", "Maryland", "South",
     [("Baltimore", 585708), ("Annapolis", 40812), ("Frederick", 78171),
      ("Hagerstown", 43527), ("Salisbury", 33050)],
     ["Prince George's", "Anne Arundel", "Frederick", "Washington", "Wicomico", "Baltimore"],
     []),
    ("MN", "Minnesota", "Midwest",
     [("Minneapolis", 429954), ("Saint Paul", 311527), ("Duluth", 86697),
      ("Rochester", 121395), ("Bemidji", 15232)],
     ["Hennepin", "Ramsey", "St. Louis", "Olmsted", "Beltrami", "Dakota"],
     ["Red Lake Police Department"]),
    ("NY", "New York", "Northeast",
     [("Albany", 99224), ("Buffalo", 278349), ("Rochester", 211328), ("Syracuse", 148620),
      ("Ithaca", 32108)],
     ["Albany", "Erie", "Monroe", "Onondaga", "Tompkins", "Suffolk", "Nassau"],
     []),
    ("OH", "Ohio", "Midwest",
     [("Columbus", 905748), ("Cleveland", 372624), ("Cincinnati", 309317), ("Toledo", 270871),
      ("Athens", 23849)],
     ["Franklin", "Cuyahoga", "Hamilton", "Lucas", "Athens", "Summit", "Montgomery"],
     []),
    ("OK", "Oklahoma", "South",
     [("Oklahoma City", 681054), ("Tulsa", 413066), ("Norman", 128026), ("Lawton", 90381),
      ("Tahlequah", 16745)],
     ["Oklahoma", "Tulsa", "Cleveland", "Comanche", "Cherokee", "Canadian"],
     ["Cherokee Nation Marshal Service", "Muscogee (Creek) Nation Lighthorse Police"]),
    ("PA", "Pennsylvania", "Northeast",
     [("Harrisburg", 50099), ("Pittsburgh", 302971), ("Erie", 94831), ("Allentown", 125845),
      ("Scranton", 76328)],
     ["Dauphin", "Allegheny", "Erie", "Lehigh", "Lackawanna", "Centre", "Bucks"],
     []),
    ("TX", "Texas", "South",
     [("Austin", 961855), ("El Paso", 678815), ("Lubbock", 257141), ("Waco", 138486),
      ("Amarillo", 200393)],
     ["Travis", "El Paso", "Lubbock", "McLennan", "Potter", "Harris", "Bexar"],
     []),
]
# fmt: on

AGENCY_TYPES = [
    (1, "City"),
    (2, "County"),
    (3, "University or College"),
    (4, "State Police"),
    (5, "Tribal"),
    (6, "Other State Agency"),
]

STATE_POLICE = {
    "AZ": "Arizona Department of Public Safety",
    "CA": "California Highway Patrol",
    "CO": "Colorado State Patrol",
    "GA": "Georgia State Patrol",
    "IL": "Illinois State Police",
    "MD": "Maryland State Police",
    "MN": "Minnesota State Patrol",
    "NY": "New York State Police",
    "OH": "Ohio State Highway Patrol",
    "OK": "Oklahoma Highway Patrol",
    "PA": "Pennsylvania State Police",
    "TX": "Texas Department of Public Safety",
}
OTHER_STATE = [
    "{state} Department of Natural Resources",
    "{state} Capitol Police",
    "{state} Attorney General, Criminal Investigations Division",
]
UNIVERSITY = [
    "University of {place} Police Department",
    "{place} State University Police",
    "{place} Community College, Campus Police",
]
CITY_SUFFIX = ["Police Department", "Police Department", "Police Department", "Police"]
COUNTY_SUFFIX = ["County Sheriff's Office", "County Sheriff's Office", "County Police Department"]

FIRST_NAMES = [
    "James",
    "Maria",
    "Robert",
    "Linda",
    "Michael",
    "Patricia",
    "David",
    "Jennifer",
    "Carlos",
    "Aisha",
    "Wei",
    "Fatima",
    "Daniel",
    "Grace",
    "Joseph",
    "Nkechi",
    "Thomas",
    "Rosa",
    "Kevin",
    "Megan",
    "Luis",
    "Hannah",
    "Samuel",
    "Priya",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Garcia",
    "O'Brien",
    "Nguyen",
    "Williams",
    "Brown",
    "Martinez",
    "D'Angelo",
    "Jones",
    "Miller",
    "Davis",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Okafor",
    "White",
    "Harris",
]


def write_csv(name: str, header: list[str], rows: list[list[object]]) -> int:
    """Write one seed as comma-separated CSV with a header row; ``None`` becomes empty."""
    with (RAW / name).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return len(rows)


def write_agency_types() -> int:
    """Write the YAML lookup by hand so its header comments come first."""
    lines = [
        "# description: Agency types as reported to the UCR program",
        "# check: unique(agency_type_id)",
        "# check: not_null(agency_type_id, agency_type_name)",
    ]
    lines += [f"- {{agency_type_id: {i}, agency_type_name: {name}}}" for i, name in AGENCY_TYPES]
    (RAW / "agency_types.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(AGENCY_TYPES)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def main() -> None:
    rng = random.Random(2024)
    RAW.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    states, cities = [], []
    for state_id, (abbr, name, region, state_cities, _, _) in enumerate(STATES, start=1):
        states.append([state_id, abbr, name, region])
        for city_name, population in state_cities:
            cities.append([len(cities) + 1, state_id, city_name, population])
    counts["states.csv"] = write_csv(
        "states.csv", ["state_id", "state_abbr", "state_name", "region"], states
    )
    counts["cities.csv"] = write_csv(
        "cities.csv", ["city_id", "state_id", "city_name", "population"], cities
    )
    counts["agency_types.yml"] = write_agency_types()

    # Agencies: (type_id, raw name, city_id or None, state_id, people served).
    planned: list[tuple[int, str, int | None, int, int]] = []
    for state_id, (abbr, name, _, _, counties, tribal) in enumerate(STATES, start=1):
        state_cities = [c for c in cities if c[1] == state_id]
        state_pop = sum(c[3] for c in state_cities)
        planned.append((4, STATE_POLICE[abbr], None, state_id, state_pop // 8))
        for template in OTHER_STATE[: 1 + rng.randrange(len(OTHER_STATE))]:
            planned.append((6, template.format(state=name), None, state_id, state_pop // 40))
        for tribe in tribal:
            city = rng.choice(state_cities)
            planned.append((5, tribe, city[0], state_id, rng.randrange(8000, 60000)))
        for county in counties:
            city = rng.choice(state_cities)
            style = rng.random()
            # A third of county agencies report a bare place name; the patch completes it.
            raw_name = county if style < 0.35 else f"{county} {rng.choice(COUNTY_SUFFIX)}"
            planned.append((2, raw_name, city[0], state_id, rng.randrange(40000, 400000)))
        for city in rng.sample(state_cities, 2):
            template = rng.choice(UNIVERSITY)
            planned.append(
                (3, template.format(place=city[2]), city[0], state_id, rng.randrange(15000, 60000))
            )
    # The rest are city police, spread over cities weighted by the square root of their
    # population; a city's second and later departments are numbered districts.
    city_weights = [math.sqrt(c[3]) for c in cities]
    used: dict[int, int] = {}
    while len(planned) < 300:
        city = rng.choices(cities, weights=city_weights)[0]
        used[city[0]] = used.get(city[0], 0) + 1
        n = used[city[0]]
        suffix = rng.choice(CITY_SUFFIX)
        raw_name = f"{city[2]} {suffix}" if n == 1 else f"{city[2]} District {n} {suffix}"
        served = city[3] // (1 + 2 * n) if n > 1 else city[3] // 2
        planned.append((1, raw_name, city[0], city[1], served))

    abbr_of = {s[0]: s[1] for s in states}
    agencies, profiles = [], []
    for agency_id, (type_id, raw_name, city_id, state_id, served) in enumerate(planned, start=1):
        ori = f"{abbr_of[state_id]}{agency_id:05d}{rng.randrange(100):02d}"
        roll = rng.random()
        if roll < 0.04:
            nibrs_start = None  # never switched: no incident-based reports
        elif roll < 0.65:
            nibrs_start = f"{rng.randrange(1995, 2015)}-{rng.randrange(1, 13):02d}-01"
        else:
            nibrs_start = f"{rng.randrange(2015, 2023)}-{rng.randrange(1, 13):02d}-01"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email_user = (first[0] + last).lower().replace("'", "")
        agencies.append(
            [
                agency_id,
                ori,
                raw_name,
                type_id,
                city_id,
                state_id,
                nibrs_start,
                f"{first} {last}",
                f"{email_user}@{ori.lower()}.example.org",
                f"({rng.randrange(201, 990)}) 555-01{rng.randrange(100):02d}",
            ]
        )
        profiles.append((agency_id, served, nibrs_start))
    counts["agencies.csv"] = write_csv(
        "agencies.csv",
        [
            "agency_id",
            "ori",
            "agency_name",
            "agency_type_id",
            "city_id",
            "state_id",
            "nibrs_start_date",
            "contact_name",
            "contact_email",
            "contact_phone",
        ],
        agencies,
    )

    staffing = []
    for agency_id, served, _ in profiles:
        officers = max(3, round(served / 1000 * rng.uniform(1.4, 2.8)))
        # Some agencies stopped filing staffing a few years ago, some skip a year.
        last_year = 2023 if rng.random() < 0.85 else rng.randrange(2017, 2023)
        for year in YEARS:
            if year > last_year or rng.random() < 0.05:
                continue
            officers = max(3, round(officers * rng.uniform(0.95, 1.06)))
            civilians = round(officers * rng.uniform(0.15, 0.45))
            staffing.append([agency_id, year, officers, civilians])
    counts["agency_staffing.csv"] = write_csv(
        "agency_staffing.csv", ["agency_id", "data_year", "officers", "civilians"], staffing
    )

    monthly, reported_years = [], []
    for agency_id, served, nibrs_start in profiles:
        if nibrs_start is None:
            continue
        first_year = max(YEARS.start, int(nibrs_start[:4]))
        scale = served / 100000 * rng.uniform(0.5, 1.8)
        for year in range(first_year, YEARS.stop):
            # 2021 is the transition year in which many agencies went missing.
            if rng.random() < (0.3 if year == 2021 else 0.07):
                continue
            if rng.random() < 0.18:
                months = sorted(rng.sample(range(1, 13), rng.randrange(1, 12)))
            else:
                months = list(range(1, 13))
            reported_years.append((agency_id, year, scale))
            for month in months:
                for offense in OFFENSES:
                    count = poisson(rng, MONTHLY_RATE[offense] * scale)
                    monthly.append([agency_id, year, month, offense, count])
    counts["offense_monthly.csv"] = write_csv(
        "offense_monthly.csv",
        ["agency_id", "data_year", "month_num", "offense_code", "offense_count"],
        monthly,
    )

    ages = []
    year_weights = [math.sqrt(scale) + 0.05 for _, _, scale in reported_years]
    picks = rng.choices(reported_years, weights=year_weights, k=50000)
    offense_codes, offense_weights = zip(*AGE_OFFENSE_WEIGHTS.items(), strict=True)
    incident_id = 1000000
    for agency_id, year, _ in sorted(picks, key=lambda p: (p[1], p[0])):
        incident_id += rng.randrange(1, 40)
        offense = rng.choices(offense_codes, weights=offense_weights)[0]
        if rng.random() < 0.05:
            age = None  # unknown offender
        elif rng.random() < 0.11:
            age = rng.randrange(10, 18)
        else:
            age = min(85, 18 + int(rng.lognormvariate(2.4, 0.75)))
        ages.append([incident_id, agency_id, year, offense, age])
    counts["offender_ages.csv"] = write_csv(
        "offender_ages.csv",
        ["incident_id", "agency_id", "data_year", "offense_code", "offender_age"],
        ages,
    )

    for name, n in counts.items():
        size = (RAW / name).stat().st_size
        print(f"{name:22} {n:>7} rows {size:>9} bytes")


if __name__ == "__main__":
    main()
